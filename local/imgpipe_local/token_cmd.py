"""`imgpipe token`: the demo user's access token from a running `make dev`, for curl.

TOKEN=$(.venv/bin/imgpipe token)
curl -X POST http://127.0.0.1:3000/avatars/key_upload -H "Authorization: Bearer $TOKEN" …
"""

from __future__ import annotations

import argparse

from imgpipe_local.client import DEFAULT_DEV_URL, Client, StepFailed, Target, dev_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="imgpipe token", description=__doc__.splitlines()[0])
    parser.add_argument("--dev", default=DEFAULT_DEV_URL, metavar="WEB_URL", help="the dev stack's web page")
    parser.add_argument("--id-token", action="store_true", help="print the ID token instead")
    args = parser.parse_args(argv)
    config = dev_config(args.dev)
    target = Target(config["apiUrl"], config["cdnUrl"], config["cognitoEndpoint"], config["clientId"])
    user = config["demoUser"]
    try:
        tokens = Client(target).sign_in(user["username"], user["password"])
    except StepFailed as failure:
        raise SystemExit(f"imgpipe token: {failure.message}") from None
    print(tokens["IdToken" if args.id_token else "AccessToken"])
    return 0

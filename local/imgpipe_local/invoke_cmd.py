"""`imgpipe invoke <FunctionLogicalId> -e events/<file>.json`: the Docker-free `sam local invoke`.

The function is loaded from template.yaml (Handler, CodeUri, layers, environment with the
template's intrinsics resolved) and invoked once in this process; the result is printed as
JSON on stdout, the function's logs go to stderr. Where its AWS calls go:

  (default)    a moto server started for this one call, holding the template's buckets,
               queues and a Cognito pool (empty: good for functions that need no data)
  --dev [URL]  the moto server of a running `imgpipe dev` (its web page URL, default
               http://127.0.0.1:8000): the function sees what the dev stack holds
  --aws        real AWS with your credentials, account and region (stack name --stack-name)

--env-vars takes SAM's file format: {"<LogicalId>": {"VAR": "value"}, "Parameters": {...}}.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import traceback
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3

from imgpipe_local import template
from imgpipe_local.motoserver import MotoServer, create_cognito, enrich_s3_events, provision
from imgpipe_local.runtime import FunctionRunner, aws_environment
from imgpipe_local.stack import DEMO_PASSWORD, DEMO_USERNAME, ROOT, running_stacks

DEFAULT_DEV_URL = "http://127.0.0.1:8000"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imgpipe invoke", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "function", help="logical id of the function in the template, e.g. PresignUploadFunction"
    )
    parser.add_argument("-e", "--event", default="-", help="event JSON file ('-' = stdin, the default)")
    parser.add_argument("--env-vars", "-n", help="JSON file of environment overrides (SAM's format)")
    parser.add_argument("--template", "-t", default=str(ROOT / "template.yaml"))
    parser.add_argument(
        "--parameter-overrides",
        nargs="*",
        default=[],
        metavar="NAME=VALUE",
        help="template parameters, e.g. Renditions=256x256:cover",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--dev", nargs="?", const=DEFAULT_DEV_URL, metavar="WEB_URL", help="use a running imgpipe dev"
    )
    where.add_argument("--aws", action="store_true", help="use real AWS with your credentials")
    parser.add_argument(
        "--stack-name", default=template.STACK_NAME, help="stack name for --aws (default imgpipe)"
    )
    return parser


def _read_event(source: str) -> Any:
    text = sys.stdin.read() if source == "-" else Path(source).read_text()
    return json.loads(text)


def _env_overrides(path: str | None, logical_id: str) -> dict[str, str]:
    if not path:
        return {}
    data = json.loads(Path(path).read_text())
    return {**data.get("Parameters", {}), **data.get(logical_id, {})}


@contextmanager
def _embedded_moto(template_path: Path, parameters: dict[str, str]) -> Iterator[tuple[dict[str, str], str]]:
    """A moto server for this one call, with the template's resources; yields (parameters, endpoint)."""
    moto = MotoServer("127.0.0.1", 0)
    enrich_s3_events()
    moto.start()
    if not running_stacks():
        moto.reset()  # moto's state is process-wide; start empty unless a stack is using it
    try:
        region = template.REGION
        pool = create_cognito(
            moto.client("cognito-idp", region), moto.url, region, DEMO_USERNAME, DEMO_PASSWORD
        )
        resolved = {
            "UserPoolId": pool.user_pool_id,
            "UserPoolClientId": pool.client_id,
            "JwksUrl": pool.jwks_url,
            # Required by the template (no default); only CORS uses it, and an invoke has no browser.
            "AllowedOrigins": DEFAULT_DEV_URL,
            **parameters,
        }
        loaded = template.load(template_path, resolved, queue_url_base=moto.url)
        provision(loaded, moto.client("s3", region), moto.client("sqs", region), region)
        yield resolved, moto.url
    finally:
        moto.stop()


def _dev_stack(web_url: str, parameters: dict[str, str]) -> tuple[dict[str, str], str, str, str]:
    with urllib.request.urlopen(f"{web_url.rstrip('/')}/config.json", timeout=5) as response:  # noqa: S310 - a local dev URL
        config = json.load(response)
    moto_url = config["cognitoEndpoint"]
    resolved = {
        "UserPoolId": config["userPoolId"],
        "UserPoolClientId": config["clientId"],
        "JwksUrl": f"{moto_url}/{config['userPoolId']}/.well-known/jwks.json",
        "AllowedOrigins": web_url.rstrip("/"),
        **parameters,
    }
    return resolved, moto_url, config["apiUrl"], config["cdnUrl"]


def invoke(
    logical_id: str,
    event: Any,
    *,
    template_path: Path,
    parameters: Mapping[str, str],
    environment: Mapping[str, str],
    endpoint_url: str | None,
    api_url: str = "",
    cdn_url: str = "",
    queue_url_base: str = "",
    base_environment: Mapping[str, str] | None = None,
) -> Any:
    loaded = template.load(
        template_path, parameters, api_url=api_url, cdn_url=cdn_url, queue_url_base=queue_url_base
    )
    if logical_id not in loaded.functions:
        known = ", ".join(sorted(loaded.functions))
        raise SystemExit(f"no function {logical_id} in {template_path} (functions: {known})")
    function = loaded.functions[logical_id]
    function = replace(function, environment={**function.environment, **environment})
    base = aws_environment(endpoint_url) if base_environment is None else base_environment
    # Logs (Powertools writes to stdout) go to stderr, so stdout holds only the result.
    with contextlib.redirect_stdout(sys.stderr):
        return FunctionRunner(function, base).invoke(event)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)
    event = _read_event(args.event)
    parameters = dict(item.split("=", 1) for item in args.parameter_overrides)
    environment = _env_overrides(args.env_vars, args.function)
    template_path = Path(args.template).resolve()
    try:
        if args.aws:
            session = boto3.session.Session()
            parameters = {
                "AWS::AccountId": session.client("sts").get_caller_identity()["Account"],
                "AWS::Region": session.region_name or template.REGION,
                "AWS::StackName": args.stack_name,
                "AllowedOrigins": DEFAULT_DEV_URL,  # required by the template; only CORS uses it
                **parameters,
            }
            # Your own credentials and region, untouched; only X-Ray is off (no daemon here).
            result = invoke(
                args.function,
                event,
                template_path=template_path,
                parameters=parameters,
                environment=environment,
                endpoint_url=None,
                base_environment={"POWERTOOLS_TRACE_DISABLED": "true"},
            )
        elif args.dev:
            resolved, moto_url, api_url, cdn_url = _dev_stack(args.dev, parameters)
            result = invoke(
                args.function,
                event,
                template_path=template_path,
                parameters=resolved,
                environment=environment,
                endpoint_url=moto_url,
                api_url=api_url,
                cdn_url=cdn_url,
                queue_url_base=moto_url,
            )
        else:
            with _embedded_moto(template_path, parameters) as (resolved, moto_url):
                result = invoke(
                    args.function,
                    event,
                    template_path=template_path,
                    parameters=resolved,
                    environment=environment,
                    endpoint_url=moto_url,
                    queue_url_base=moto_url,
                )
    except Exception as error:  # noqa: BLE001 - any function error is reported, as Lambda does
        # The shape Lambda reports a function error in.
        print(
            json.dumps(
                {
                    "errorMessage": str(error),
                    "errorType": type(error).__name__,
                    "stackTrace": traceback.format_exception(error),
                },
                indent=2,
            )
        )
        return 1
    print(json.dumps(result, indent=2, default=str))
    return 0

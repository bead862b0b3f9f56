"""`imgpipe invoke <FunctionLogicalId> -e events/<file>.json`: the Docker-free `sam local invoke`.

The function is loaded from template.yaml (Handler, CodeUri, layers, environment with the
template's intrinsics resolved) and invoked once in a worker process, as the local stack runs
it (Timeout, MemorySize); the result is printed as JSON on stdout, the function's logs go to
stderr. Where its AWS calls go:

  (default)    a local stack started for this one call, holding the template's buckets,
               queues and a Cognito pool (empty: good for functions that need no data)
  --dev [URL]  the moto server of a running `imgpipe dev` (its web page URL, default
               http://127.0.0.1:8000): the function sees what the dev stack holds
  --aws        real AWS with your credentials, account and region (stack name --stack-name)

--env-vars takes SAM's file format: {"<LogicalId>": {"VAR": "value"}, "Parameters": {...}}.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3

from imgpipe_local import template
from imgpipe_local.cfn import REGION, STACK_NAME
from imgpipe_local.client import DEFAULT_DEV_URL, dev_config
from imgpipe_local.stack import ROOT, LocalStack
from imgpipe_local.workers import FunctionError, Runtime, aws_environment


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
    parser.add_argument("--stack-name", default=STACK_NAME, help="stack name for --aws (default imgpipe)")
    return parser


def invoke(function: template.Function, event: Any, base_environment: Mapping[str, str]) -> Any:
    # The function's logs (Powertools writes to stdout) go to stderr: stdout holds only the result.
    runtime = Runtime({function.logical_id: function}, base_environment, output=sys.stderr)
    try:
        return runtime.invoke(function.logical_id, event)
    finally:
        runtime.stop()


def _function(
    loaded: template.LocalTemplate, logical_id: str, path: Path, env_file: str | None
) -> template.Function:
    if logical_id not in loaded.functions:
        known = ", ".join(sorted(loaded.functions))
        raise SystemExit(f"no function {logical_id} in {path} (functions: {known})")
    function = loaded.functions[logical_id]
    overrides = json.loads(Path(env_file).read_text()) if env_file else {}
    environment = {**function.environment, **overrides.get("Parameters", {}), **overrides.get(logical_id, {})}
    return replace(function, environment=environment)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)
    event = json.loads(sys.stdin.read() if args.event == "-" else Path(args.event).read_text())
    parameters = dict(item.split("=", 1) for item in args.parameter_overrides)
    path = Path(args.template).resolve()
    try:
        if args.aws:
            session = boto3.session.Session()
            parameters = {
                "AWS::AccountId": session.client("sts").get_caller_identity()["Account"],
                "AWS::Region": session.region_name or REGION,
                "AWS::StackName": args.stack_name,
                "AllowedOrigins": DEFAULT_DEV_URL,  # required by the template; only CORS uses it
                **parameters,
            }
            function = _function(template.load(path, parameters), args.function, path, args.env_vars)
            # Your own credentials and region, untouched; only X-Ray is off (no daemon here).
            result = invoke(function, event, {**os.environ, "POWERTOOLS_TRACE_DISABLED": "true"})
        elif args.dev:
            config = dev_config(args.dev)
            moto_url = config["cognitoEndpoint"]
            parameters = {
                "UserPoolId": config["userPoolId"],
                "UserPoolClientId": config["clientId"],
                "JwksUrl": f"{moto_url}/{config['userPoolId']}/.well-known/jwks.json",
                "AllowedOrigins": args.dev.rstrip("/"),
                **parameters,
            }
            urls = {"api_url": config["apiUrl"], "cdn_url": config["cdnUrl"], "queue_url_base": moto_url}
            function = _function(template.load(path, parameters, **urls), args.function, path, args.env_vars)
            result = invoke(function, event, aws_environment(moto_url))
        else:
            with LocalStack(root=path.parent, template=path.name, ports=0, parameters=parameters) as stack:
                assert stack.template is not None
                function = _function(stack.template, args.function, path, args.env_vars)
                result = invoke(function, event, aws_environment(stack.moto_url))
    except FunctionError as error:
        print(json.dumps(error.payload, indent=2))  # the shape Lambda reports a function error in
        return 1
    print(json.dumps(result, indent=2, default=str))
    return 0

"""`imgpipe dev` (`make dev`): the whole stack on 127.0.0.1 until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from types import FrameType

from imgpipe_local.httpserver import PortInUse
from imgpipe_local.stack import ROOT, LocalStack, Ports


def _parser() -> argparse.ArgumentParser:
    defaults = Ports()
    parser = argparse.ArgumentParser(prog="imgpipe dev", description=__doc__)
    parser.add_argument("--root", default=str(ROOT), help="project folder holding template.yaml")
    parser.add_argument("--template", default="template.yaml")
    for name in ("moto", "api", "cdn", "web"):
        default = getattr(defaults, name)
        parser.add_argument(f"--{name}-port", type=int, default=default, help="0 = any free port")
    parser.add_argument(
        "--aws-latency-ms",
        type=float,
        default=0,
        metavar="N",
        help="every AWS call the functions make waits N ms first, as in Lambda (e.g. 30)",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="log every moto and server request")
    parser.add_argument(
        "--parameter",
        "-p",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a template parameter (e.g. -p OutputFormats=jpeg,webp,avif)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(message)s")
    if not args.verbose:
        # boto3 inside the handlers announces where it found credentials on every cold start.
        logging.getLogger("botocore").setLevel(logging.WARNING)
    parameters = dict(item.split("=", 1) for item in args.parameter)
    stopping = threading.Event()

    def stop(signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    started = time.perf_counter()
    ports = Ports(args.moto_port, args.api_port, args.cdn_port, args.web_port)
    stack = LocalStack(
        root=args.root,
        ports=ports,
        template=args.template,
        parameters=parameters,
        aws_latency_ms=args.aws_latency_ms,
    )
    try:
        stack.start()
    except PortInUse as busy:
        print(
            f"imgpipe dev: port {busy.port} ({busy.name}) is already in use by another program"
            f" (another `make dev`?). Stop it, or choose another port: make dev ARGS='--{busy.name}-port N'"
            " (0 = any free port).",
            file=sys.stderr,
        )
        return 1
    try:
        user = stack.demo_user
        latency = (
            f"+{args.aws_latency_ms:g} ms per AWS call" if args.aws_latency_ms else "no added AWS latency"
        )
        print(
            f"""
imgpipe local stack ready in {time.perf_counter() - started:.1f} s: open {stack.web_url} and sign in

  web page   {stack.web_url}
  demo user  {user.username} / {user.password}   (.venv/bin/imgpipe token prints its access token)
  API        {stack.api_url}   (POST {stack.outputs.get("KeyUploadUrl", stack.api_url)})
  CDN        {stack.cdn_url}
  moto       {stack.moto_url}   (S3, SQS, Cognito; AWS_ENDPOINT_URL={stack.moto_url})
  user pool  {stack.web_config["userPoolId"]}  client {stack.web_config["clientId"]}
  functions  worker processes per function, warm, Timeout and MemorySize enforced; {latency}

Edit functions/ or layers/ and the next request runs the new code. Ctrl-C to stop.
""",
            flush=True,
        )
        # A bounded wait, again and again: Python runs signal handlers only in the main thread and
        # only between bytecodes, and an untimed wait never returns when the kernel hands SIGINT to
        # one of the servers' threads instead (seen under load: Ctrl-C did nothing).
        while not stopping.wait(0.2):
            pass
        print("stopping…", flush=True)
    finally:
        stack.stop()
    return 0

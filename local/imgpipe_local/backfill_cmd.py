"""`imgpipe backfill`: re-render stored avatars after a change of the rendition spec.

Where the work happens:

  imgpipe backfill                              the running `make dev` stack (--dev: its web page's
                                                URL, default http://127.0.0.1:8000): this machine
                                                sends each original to the stack's BackfillFunction
                                                through its Lambda API, --workers at once
  imgpipe backfill --stack-name S               deployed stack S: the same, through AWS Lambda with
                                                your credentials
  imgpipe backfill --aws --stack-name S         deployed stack S: an S3 Batch Operations job does it

Every path sends BackfillFunction the event S3 Batch Operations sends (schema 2.0, one task per
original) and reads its per-task answers; the function re-renders an avatar only when avatar.json
says another spec made it, through the processor's own ordering rule. Run it again after an
interruption: avatars already done answer `current` after one GET.

--dry-run lists the avatars that would change (one machine) or only counts the originals and
prices the job (--aws). Exit status: 0 when nothing failed (refused re-renders are listed, not
failures), 1 when a task failed, 2 when a job was not confirmed, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from types import FrameType
from typing import Any, TextIO

import boto3
from botocore.config import Config

from imgpipe import backfill
from imgpipe.spec import AvatarSpec
from imgpipe_local import backfill_job
from imgpipe_local.backfill_job import JobStatus, StackRefs
from imgpipe_local.backfill_run import FunctionFailed, Invoke, Progress, Runner, Tally, list_originals
from imgpipe_local.client import DEFAULT_DEV_URL, dev_config
from imgpipe_local.motoserver import FAKE_ACCESS_KEY, FAKE_SECRET_KEY

DEFAULT_WORKERS = 4
NAMED_AT_MOST = 50
# Lambda's longest Timeout (15 min) and a margin: a slow invocation must end by the function's
# own timeout, never by the client's read timeout, which botocore would retry (a second run).
INVOKE_READ_TIMEOUT = 960
log = logging.getLogger("imgpipe_local")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imgpipe backfill", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--dev", default=DEFAULT_DEV_URL, metavar="WEB_URL", help="the running local stack's web page"
    )
    where.add_argument("--stack-name", help="a deployed stack (default: the running local stack)")
    parser.add_argument("--aws", action="store_true", help="run it as an S3 Batch Operations job")
    parser.add_argument("--dry-run", action="store_true", help="change nothing: list (or, with --aws, count)")
    parser.add_argument(
        "--workers", type=int, default=DEFAULT_WORKERS, help="originals in flight (one machine)"
    )
    parser.add_argument("--yes", action="store_true", help="--aws: start the job without asking")
    parser.add_argument("--inventory", action="store_true", help="--aws: the newest S3 Inventory as manifest")
    parser.add_argument("--job-id", help="--aws: follow an existing job and read its report")
    parser.add_argument("--no-wait", action="store_true", help="--aws: return once the job is started")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
    if args.workers < 1:
        raise SystemExit("--workers must be at least 1")
    if args.aws and not args.stack_name:
        raise SystemExit("--aws needs --stack-name")
    if args.stack_name is None:
        session, endpoints, outputs = _local_stack(args.dev)
    else:
        session, endpoints = boto3.session.Session(), {}
        outputs = backfill_job.stack_outputs(session.client("cloudformation"), args.stack_name)
    refs = StackRefs.from_outputs(outputs)
    s3 = session.client("s3", endpoint_url=endpoints.get("s3"))
    lambda_client = session.client(
        "lambda", endpoint_url=endpoints.get("lambda"), config=invoke_config(args.workers)
    )
    spec = deployed_spec(lambda_client, refs.function_name)
    if args.aws:
        return run_job(args, refs, s3=s3, s3control=session.client("s3control"), spec=spec)
    with stop_on_sigint() as stop:
        return run_here(
            args,
            s3=s3,
            bucket=refs.uploads_bucket,
            invoke=lambda_invoker(lambda_client, refs.function_name),
            spec=spec,
            stop=stop,
        )


def _local_stack(web_url: str) -> tuple[boto3.session.Session, dict[str, str], dict[str, str]]:
    """A running `make dev` stack, found as `imgpipe token` finds it (its config.json): its moto
    server for S3, its Lambda API for the functions, its outputs for the names."""
    config = dev_config(web_url)
    if "lambdaEndpoint" not in config:
        raise SystemExit(f"the stack at {web_url} has no Lambda API: restart `make dev` with this version")
    # moto takes any credentials; explicit ones keep a profile of yours out of it.
    session = boto3.session.Session(
        aws_access_key_id=FAKE_ACCESS_KEY, aws_secret_access_key=FAKE_SECRET_KEY, region_name=config["region"]
    )
    endpoints = {"s3": config["cognitoEndpoint"], "lambda": config["lambdaEndpoint"]}
    return session, endpoints, dict(config["outputs"])


def invoke_config(workers: int) -> Config:
    return Config(
        max_pool_connections=max(10, workers),
        read_timeout=INVOKE_READ_TIMEOUT,
        # Throttled invocations (a reserved concurrency below --workers) are retried with backoff.
        retries={"mode": "standard", "max_attempts": 5},
    )


@contextlib.contextmanager
def stop_on_sigint() -> Iterator[threading.Event]:
    """Ctrl-C sets the event instead of raising wherever the main thread is: the run takes no new
    original, waits for the answers of those in flight and reports. A second Ctrl-C quits at once:
    the tasks in flight still finish in the function (each avatar is done or untouched), unreported."""
    stop = threading.Event()
    previous = signal.getsignal(signal.SIGINT)

    def second(_signum: int, _frame: FrameType | None) -> None:
        print("\nquit: the avatars in flight finish in the function; run the command again", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)  # the worker threads would be joined at exit, each waiting for its answer

    def first(_signum: int, _frame: FrameType | None) -> None:
        stop.set()
        signal.signal(signal.SIGINT, second)
        print("\nstopping: waiting for the avatars in flight (Ctrl-C again to quit now)", file=sys.stderr)

    signal.signal(signal.SIGINT, first)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


# ---------------------------------------------------------------- one machine


def lambda_invoker(lambda_client: Any, function_name: str) -> Invoke:
    """Invoke the deployed function synchronously, as Batch Operations does."""

    def invoke(event: dict[str, Any]) -> Mapping[str, Any]:
        response = lambda_client.invoke(
            FunctionName=function_name, InvocationType="RequestResponse", Payload=json.dumps(event).encode()
        )
        payload = json.loads(response["Payload"].read() or b"null")
        if response.get("FunctionError"):
            raise FunctionFailed(f"{payload.get('errorType')}: {payload.get('errorMessage')}")
        result: Mapping[str, Any] = payload
        return result

    return invoke


def deployed_spec(lambda_client: Any, function_name: str) -> AvatarSpec:
    """The spec the deployed function renders (its environment, as the stack set it)."""
    configuration = lambda_client.get_function_configuration(FunctionName=function_name)
    return AvatarSpec.from_environ(configuration.get("Environment", {}).get("Variables", {}))


def run_here(
    args: argparse.Namespace,
    *,
    s3: Any,
    bucket: str,
    invoke: Invoke,
    spec: AvatarSpec,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    stop: threading.Event | None = None,
) -> int:
    """List the originals and drive one task per original through `invoke`; print a summary."""
    digest = spec.digest()
    print(f"spec {digest}: {spec.canonical()}", file=err)
    originals = list(list_originals(s3, bucket))
    mode = "check" if args.dry_run else "apply"
    runner = Runner(
        invoke, bucket, {backfill.ARG_SPEC: digest, backfill.ARG_MODE: mode}, workers=args.workers
    )
    tally = runner.run(originals, progress=Progress(err, len(originals)), stop=stop)
    print_summary(tally, len(originals), dry_run=args.dry_run, out=out)
    if tally.interrupted:
        print("interrupted: run the same command again to finish (done avatars are skipped)", file=err)
        return 130
    return 1 if tally.failed else 0


def print_summary(tally: Tally, total: int, *, dry_run: bool, out: TextIO) -> None:
    counts = tally.counts
    elapsed = time.monotonic() - tally.started
    if dry_run:
        print(
            f"{counts['stale']} would be re-rendered, {counts['current']} already current, "
            f"{counts['skipped']} skipped, {counts['rejected']} refused before, {counts['failed']} failed "
            f"({tally.done} of {total} originals checked in {elapsed:.1f} s)",
            file=out,
        )
    else:
        print(
            f"{counts['rerendered']} re-rendered, {counts['current']} already current, "
            f"{counts['skipped']} skipped, {counts['rejected']} rejected, {counts['failed']} failed "
            f"({tally.done} of {total} originals in {elapsed:.1f} s)",
            file=out,
        )
    shown = tally.named if dry_run else [(k, a) for k, a in tally.named if a.outcome != "stale"]
    for key, answer in shown[:NAMED_AT_MOST] if not dry_run else shown:
        print(f"  {answer.outcome:<8} {key}  {answer.detail}", file=out)
    if not dry_run and len(shown) > NAMED_AT_MOST:
        print(f"  ... and {len(shown) - NAMED_AT_MOST} more", file=out)


# ---------------------------------------------------------------- S3 Batch Operations


def run_job(
    args: argparse.Namespace,
    refs: StackRefs,
    *,
    s3: Any,
    s3control: Any,
    spec: AvatarSpec,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    ask: Any = input,
    sleep: Any = time.sleep,
) -> int:
    digest = spec.digest()
    account = refs.account_id
    if args.job_id:
        return follow_job(s3, s3control, refs, args.job_id, out=out, err=err, sleep=sleep)
    print(f"spec {digest}: {spec.canonical()}", file=err)
    inventory = None
    if args.inventory:
        inventory = backfill_job.inventory_manifest(s3, refs)
        if inventory is None:
            raise SystemExit("no inventory of the uploads bucket yet: deploy with BackfillInventory, or list")
        originals: list[str] | None = None
        print(f"manifest: the inventory s3://{inventory.bucket}/{inventory.key}", file=err)
    else:
        originals = list(list_originals(s3, refs.uploads_bucket))
        print(f"{len(originals)} current originals in {refs.uploads_bucket}", file=err)
    if args.dry_run:
        if originals is not None:
            _print_costs(len(originals), out)
        print("dry run: no manifest written, no job created", file=out)
        return 0
    manifest = inventory or backfill_job.write_manifest(s3, refs, originals or [])
    job_id = backfill_job.create_job(s3control, refs, manifest, spec_digest=digest)
    print(f"job {job_id} created; Batch Operations is reading its manifest", file=err)
    status = backfill_job.wait_for(
        s3control, account, job_id, lambda s: s.status == backfill_job.AWAITING_CONFIRMATION, sleep=sleep
    )
    if status.status != backfill_job.AWAITING_CONFIRMATION:
        print(f"job {job_id} is {status.status}: {'; '.join(status.failure_reasons)}", file=out)
        return 1
    _print_costs(status.total, out)
    if not args.yes:
        if not sys.stdin.isatty() and ask is input:
            backfill_job.cancel(s3control, account, job_id)
            print(f"job {job_id} cancelled: confirmation required (pass --yes)", file=out)
            return 2
        if ask(f"start job {job_id} over {status.total} originals? [y/N] ").strip().lower() not in (
            "y",
            "yes",
        ):
            backfill_job.cancel(s3control, account, job_id)
            print(f"job {job_id} cancelled", file=out)
            return 2
    backfill_job.confirm(s3control, account, job_id)
    print(
        f"job {job_id} started; follow it with: imgpipe backfill --aws --stack-name S --job-id {job_id}",
        file=err,
    )
    if args.no_wait:
        return 0
    return follow_job(s3, s3control, refs, job_id, out=out, err=err, sleep=sleep)


def follow_job(
    s3: Any,
    s3control: Any,
    refs: StackRefs,
    job_id: str,
    *,
    out: TextIO,
    err: TextIO,
    sleep: Any = time.sleep,
) -> int:
    started = time.monotonic()

    def show(status: JobStatus) -> None:
        rate = status.done / max(status.elapsed_seconds, 1)
        left = status.total - status.done
        eta = f"{int(left / rate) // 60}:{int(left / rate) % 60:02d}" if rate and left else "-"
        print(
            f"{status.status}: {status.done:,}/{status.total:,} tasks ({status.succeeded:,} succeeded, "
            f"{status.failed:,} failed)  {rate:.1f}/s  ETA {eta}",
            file=err,
        )

    status = backfill_job.wait_for(
        s3control, refs.account_id, job_id, lambda _: False, on_status=show, sleep=sleep
    )
    tally = Tally(started=started)
    for key, answer in backfill_job.report_rows(s3, refs.backfill_bucket, job_id):
        tally.add(key, answer)
    print(f"job {job_id} {status.status}", file=out)
    print_summary(tally, status.total, dry_run=False, out=out)
    return 1 if tally.failed or status.status != "Complete" else 0


def _print_costs(tasks: int, out: TextIO) -> None:
    worst = backfill_job.estimate(tasks, stale=tasks)
    print(
        f"projected cost if every avatar is stale: ${sum(worst.values()):.2f} "
        f"({', '.join(f'{name} ${usd:.2f}' for name, usd in worst.items())})",
        file=out,
    )

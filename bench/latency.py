"""S3 latency model: the processor's handler time when every S3 request costs N ms, as in Lambda.

Against moto an S3 request answers in about a millisecond; in Lambda it costs tens. This bench
runs the real handler (functions/process_image/app.py, its S3 client and its thread pool) on a
12 MP camera JPEG against a moto server over HTTP, with `imgpipe_local.latency.delay_calls`
making every request wait N ms in the thread that sends it (so concurrent requests overlap, as
they do against S3), and reports the median handler wall time at each N and the effective number
of sequential round trips, (t_N - t_0) / N. Two cases, the common path:

- first upload: a user with no avatar.json yet;
- re-upload: a user whose avatar exists, uploading a different picture.

    .venv/bin/python bench/latency.py                         # this tree
    .venv/bin/python bench/latency.py --baseline-ref main     # and another commit, interleaved

Each tree's handler runs in a child process of its own (`--worker`), driven round-robin with the
other's, one request at a time, so machine noise falls on both alike. `bench/run.py` calls this
after its processing table; results go to bench/results/latency-<timestamp>.json and latency.md.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import logging
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CACHE = ROOT / ".imgpipe-local" / "bench-images"
RESULTS = BENCH / "results"

DELAYS_MS = (0, 25, 50)
CASES = ("first", "reupload")
ITERATIONS = 9
TARGET_ROUND_TRIPS = 5  # issue 7: <= 5 sequential S3 round trips on the common path
REGION = "us-east-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


# ---------------------------------------------------------------- the worker: one tree's handler


class _Context:
    function_name = "bench"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id = "00000000-0000-0000-0000-000000000000"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def _cpu_seconds() -> float:
    """This process's CPU time and its reaped children's (imaging decodes in a forked child)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _load_handler(tree: Path) -> Any:
    """The tree's process_image handler, importing the tree's own imgpipe package."""
    # Ahead of the editable install's finder (a meta-path hook that runs after sys.path).
    sys.path.insert(0, str(tree / "layers" / "shared"))
    code = tree / "functions" / "process_image"
    spec = importlib.util.spec_from_file_location("imgpipe_bench_process_image", code / "app.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    sys.path.insert(0, str(code))
    spec.loader.exec_module(module)
    return module


def _event(bucket: str, key: str, put: dict[str, Any], size: int, sequencer: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": REGION,
                "eventTime": datetime.now(UTC).isoformat(),
                "eventName": "ObjectCreated:Post",
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                    "object": {
                        "key": key,
                        "size": size,
                        "eTag": put["ETag"].strip('"'),
                        "versionId": put["VersionId"],
                        "sequencer": sequencer,
                    },
                },
            }
        ]
    }


def worker(tree: Path, endpoint: str, images: list[Path], protocol: TextIO) -> None:
    """Answer `run CASE MS` lines with one timed handler invocation each."""
    prefix = f"bench-{uuid.uuid4().hex[:10]}"
    uploads, assets = f"{prefix}-uploads", f"{prefix}-assets"
    os.environ.update(
        CREDENTIALS,
        AWS_DEFAULT_REGION=REGION,
        AWS_ENDPOINT_URL=endpoint,
        UPLOADS_BUCKET=uploads,
        ASSETS_BUCKET=assets,
        POWERTOOLS_SERVICE_NAME="imgpipe",
        POWERTOOLS_METRICS_NAMESPACE="imgpipe",
        POWERTOOLS_LOG_LEVEL="WARNING",
        POWERTOOLS_TRACE_DISABLED="true",
    )
    import boto3

    from imgpipe_local.latency import delay_calls

    setup = boto3.client("s3")
    setup.create_bucket(Bucket=uploads)
    setup.create_bucket(Bucket=assets)
    setup.put_bucket_versioning(Bucket=uploads, VersioningConfiguration={"Status": "Enabled"})
    app = _load_handler(tree)
    requests: list[str] = []
    app.s3.meta.events.register("before-send.s3", lambda **kw: requests.append(kw["request"].method))
    pictures = [path.read_bytes() for path in images]
    sequencer = iter(range(1, 1 << 62))
    returning_user = f"bench-returning-{prefix}"
    uploads_done = 0

    def invoke(user: str) -> tuple[dict[str, Any], float, float]:
        nonlocal uploads_done
        data = pictures[uploads_done % len(pictures)]
        uploads_done += 1
        key = f"avatars/{user}/original"
        put = setup.put_object(
            Bucket=uploads,
            Key=key,
            Body=data,
            ContentType="image/jpeg",
            Metadata={"upload-id": uuid.uuid4().hex},
        )
        event = _event(uploads, key, put, len(data), f"{next(sequencer):020X}")
        requests.clear()
        cpu0, t0 = _cpu_seconds(), time.perf_counter()
        result = app.lambda_handler(event, _Context())
        return result, (time.perf_counter() - t0) * 1000, (_cpu_seconds() - cpu0) * 1000

    invoke(returning_user)  # the returning user's first avatar, and a warm-up
    print(json.dumps({"ready": {"tree": str(tree)}}), file=protocol, flush=True)
    for line in sys.stdin:
        command = line.split()
        if command == ["quit"]:
            break
        _, case, ms = command
        delay_calls(app.s3.meta.events, float(ms))
        user = f"bench-{uuid.uuid4().hex}" if case == "first" else returning_user
        result, wall_ms, cpu_ms = invoke(user)
        delay_calls(app.s3.meta.events, 0)
        [outcome] = result["outcomes"]
        answer = {"ms": wall_ms, "cpu_ms": cpu_ms, "requests": len(requests), "status": outcome["status"]}
        print(json.dumps(answer), file=protocol, flush=True)


# ---------------------------------------------------------------- the parent


@dataclass
class Series:
    ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    requests: list[int] = field(default_factory=list)
    statuses: set[str] = field(default_factory=set)


class Worker:
    def __init__(self, name: str, tree: Path, endpoint: str, images: list[Path]) -> None:
        self.name = name
        argv = [sys.executable, __file__, "--worker", str(tree), "--endpoint", endpoint]
        argv += [arg for path in images for arg in ("--image", str(path))]
        self.stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True
        )
        self.ready = self._read()["ready"]

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            self.stderr.seek(0)
            raise SystemExit(f"latency: worker {self.name} exited:\n{self.stderr.read()[-3000:]}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def run(self, case: str, ms: int) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"run {case} {ms}\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None and self.proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()


def export_tree(ref: str, into: Path) -> Path:
    """The processor's code at git `ref` (layers/shared and functions/process_image only)."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", ref, "layers/shared", "functions/process_image"],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def commit_of(ref: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", ref], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def round_trips(series: dict[int, Series]) -> dict[int, float]:
    """(t_N - t_0) / N, as the median over iterations of each iteration's own difference: the
    runs of one iteration are seconds apart, so a change in the machine's load between
    iterations cancels out."""
    base = series[0].ms
    return {
        ms: statistics.median((t - t0) / ms for t, t0 in zip(s.ms, base, strict=True))
        for ms, s in series.items()
        if ms
    }


def round_trips_fastest(series: dict[int, Series]) -> dict[int, float]:
    """(t_N - t_0) / N from each delay's fastest run: other users' load only ever adds time, so
    on a busy machine the minimum is the steadiest estimate of the run's own cost."""
    base = min(series[0].ms)
    return {ms: (min(s.ms) - base) / ms for ms, s in series.items() if ms}


def markdown(run: dict[str, Any]) -> str:
    delays = run["delays_ms"]
    lines = [
        f"# S3 latency model — {run['started']}",
        "",
        "The process_image handler on a 12 MP camera JPEG (4.3 MB) against a moto server over HTTP, "
        "every S3 request delayed by N ms in its own thread. Median handler wall time at each N, and "
        f"the effective sequential round trips (t_N - t_0) / N (target ≤ {TARGET_ROUND_TRIPS}).",
        "",
        "| code | case | "
        + " | ".join(f"{ms} ms/call" for ms in delays)
        + " | round trips | (fastest runs) | S3 requests |",
        "|---|---|" + "---:|" * len(delays) + "---:|---:|---:|",
    ]
    for tree in run["trees"]:
        for case in CASES:
            result = tree["cases"][case]
            cells = [f"{result['median_ms'][str(ms)]:,.0f} ms" for ms in delays]
            trips = " / ".join(f"{result['round_trips'][str(ms)]:.1f}" for ms in delays if ms)
            fastest = " / ".join(f"{result['round_trips_fastest'][str(ms)]:.1f}" for ms in delays if ms)
            label = "first upload" if case == "first" else "re-upload"
            lines.append(
                f"| {tree['name']} | {label} | "
                + " | ".join(cells)
                + f" | {trips} | {fastest} | {result['requests']} |"
            )
    lines += [
        "",
        f"Round trips are given at {', '.join(str(ms) for ms in delays if ms)} ms: the median of each "
        "iteration's own difference, and from each delay's fastest run (load only adds time). "
        f"{run['iterations']} iterations per cell, trees and delays interleaved; "
        f"load average before {run['load_before']}, after {run['load_after']}; {run['duration_s']:.0f} s.",
    ]
    return "\n".join(lines) + "\n"


def measure(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(BENCH))
    import images
    from moto.server import ThreadedMotoServer

    # moto's werkzeug server logs every request.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    pictures = [
        images.ensure(images.Spec("jpeg-12mp", 4032, 3024, "jpeg"), CACHE),
        # A second picture, so every re-upload changes the avatar's version.
        images.ensure(images.Spec("jpeg-12mp-b", 4032, 3024, "jpeg"), CACHE),
    ]
    trees: list[tuple[str, Path]] = [(f"this tree ({commit_of('HEAD')})", ROOT)]
    scratch = Path(tempfile.mkdtemp(prefix="imgpipe-latency-"))
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    workers: list[Worker] = []
    started = datetime.now(UTC)
    t0 = time.monotonic()
    load_before = [round(x, 2) for x in os.getloadavg()]
    try:
        if args.baseline_ref:
            baseline = export_tree(args.baseline_ref, scratch / "baseline")
            trees.insert(0, (f"{args.baseline_ref} ({commit_of(args.baseline_ref)})", baseline))
        for name, tree in trees:
            workers.append(Worker(name, tree, f"http://{host}:{port}", pictures))
        series = {w.name: {case: {ms: Series() for ms in args.delays} for case in CASES} for w in workers}
        iterations = 1 if args.quick else args.iterations
        print(f"latency: {len(workers)} tree(s), {iterations} iterations …", file=sys.stderr, flush=True)
        for i in range(iterations):
            for j, case in enumerate(CASES):
                for k, ms in enumerate(args.delays):
                    # Rotate who goes first so neither tree always runs right after the other.
                    shift = (i + j + k) % len(workers)
                    for w in workers[shift:] + workers[:shift]:
                        answer = w.run(case, ms)
                        s = series[w.name][case][ms]
                        s.ms.append(answer["ms"])
                        s.cpu_ms.append(answer["cpu_ms"])
                        s.requests.append(answer["requests"])
                        s.statuses.add(answer["status"])
    finally:
        for w in workers:
            w.close()
        server.stop()
        shutil.rmtree(scratch)
    run: dict[str, Any] = {
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "delays_ms": list(args.delays),
        "iterations": iterations,
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "duration_s": time.monotonic() - t0,
        "trees": [
            {
                "name": name,
                "cases": {
                    case: {
                        "median_ms": {str(ms): statistics.median(s.ms) for ms, s in by_ms.items()},
                        "median_cpu_ms": {str(ms): statistics.median(s.cpu_ms) for ms, s in by_ms.items()},
                        "samples_ms": {str(ms): [round(x, 1) for x in s.ms] for ms, s in by_ms.items()},
                        "round_trips": {str(ms): rt for ms, rt in round_trips(by_ms).items()},
                        "round_trips_fastest": {str(ms): rt for ms, rt in round_trips_fastest(by_ms).items()},
                        "requests": statistics.median(r for s in by_ms.values() for r in s.requests),
                        "statuses": sorted({st for s in by_ms.values() for st in s.statuses}),
                    }
                    for case, by_ms in series[name].items()
                },
            }
            for name, _ in trees
        ],
    }
    problems = [
        f"{name} {case}: {sorted(s.statuses)}"
        for name, by_case in series.items()
        for case, by_ms in by_case.items()
        for s in by_ms.values()
        if s.statuses != {"processed"}
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"latency-{stamp}.json").write_text(json.dumps(run, indent=2) + "\n")
    summary = markdown(run)
    (RESULTS / "latency.md").write_text(summary)
    print(summary)
    for problem in problems:
        print(f"latency: not every upload was processed: {problem}", file=sys.stderr)
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iterations", type=int, default=ITERATIONS, help="samples per (tree, case, delay)")
    parser.add_argument("--quick", action="store_true", help="1 iteration: is everything wired?")
    parser.add_argument(
        "--delays",
        type=lambda s: tuple(int(x) for x in s.split(",")),
        default=DELAYS_MS,
        help="ms list, 0 first",
    )
    parser.add_argument("--baseline-ref", help="also measure the processor at this git ref, interleaved")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--image", type=Path, action="append", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        # The handler's logs and metrics go to stdout; the protocol keeps a descriptor of its own.
        protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w")
        sys.stdout = sys.stderr
        worker(args.worker, args.endpoint, args.image, protocol)
        return 0
    if args.delays[0] != 0:
        parser.error("--delays must start with 0 (the round trips are measured against it)")
    return measure(args)


if __name__ == "__main__":
    sys.exit(main())

"""Time per 1,000 avatars of a backfill on this machine (issue 10's note).

Default: against the local stack, as `imgpipe backfill` runs against `make dev`. N users each get a
1,920x1,440 JPEG original (2.8 MP), processed by the stack's processor; then every round deploys
a new spec to the stack (`LocalStack.update`: four renditions and a JPEG quality of its own, so
each round re-renders everything with the same work) with the round's AWS latency (ABBA order
over --latency), warms the BackfillFunction's workers with a dry run, and times the real command
(`imgpipe backfill --dev URL --workers W`, a process of its own) re-rendering everything, then
running again (everything current). CPU is the whole process tree's: this process (the stack's
servers), the command, moto, every worker and its decoding children.

    .venv/bin/python bench/backfill.py [--n 200] [--workers 4] [--latency 0,30] [--rounds 4]
    .venv/bin/python bench/backfill.py --in-process [--n 200] [--workers 2]

--in-process: the earlier measurement, BackfillFunction's handler in this process against moto
in-process (no worker processes, no HTTP).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RENDITIONS = "512x512:cover,256x256:cover,128x128:cover,64x64:cover"


def photo(i: int) -> bytes:
    from PIL import Image

    image = Image.linear_gradient("L").resize((1920, 1440)).convert("RGB")
    image.putpixel((i % 1920, 0), (i % 256, 0, 0))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def say(line: str) -> None:
    print(line, file=sys.__stdout__, flush=True)


# Where the stack's CPU goes, by the command line of each process of the tree.
PARTS = {
    "imgpipe_local.lambda_worker": "functions",
    "imgpipe_local.motoserver": "moto",
    "backfill": "command",
}


def tree_cpu() -> dict[str, float]:
    """CPU seconds used so far by this process (the stack's servers; `stack`), its reaped children
    (`exited`) and every live descendant, by part (each with the children it reaped: the
    workers' decoding children)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    used = defaultdict(float, stack=own.ru_utime + own.ru_stime, exited=kids.ru_utime + kids.ru_stime)
    parents: dict[int, int] = {}
    times: dict[int, tuple[float, str]] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # exited meanwhile
        parents[int(entry.name)] = int(fields[1])
        part = next((name for key, name in PARTS.items() if key in cmdline), "other")
        times[int(entry.name)] = (sum(int(value) for value in fields[11:15]) / tick, part)
    for pid, (seconds, part) in times.items():
        ancestor = parents.get(pid)
        while ancestor and ancestor != os.getpid():
            ancestor = parents.get(ancestor)
        if ancestor == os.getpid():
            used[part] += seconds
    return used


def show(parts: dict[str, float], n: int) -> str:
    return ", ".join(f"{part} {seconds / n * 1000:.1f}" for part, seconds in sorted(parts.items()) if seconds)


def used_since(before: dict[str, float]) -> dict[str, float]:
    after = tree_cpu()
    return {part: after[part] - before.get(part, 0.0) for part in after}


def local_stack(n: int, workers: int, latencies: list[float], rounds: int) -> None:
    from imgpipe import keys
    from imgpipe_local.stack import LocalStack

    command = [str(Path(sys.executable).with_name("imgpipe")), "backfill", "--workers", str(workers)]
    summary = re.compile(r"(\d+) re-rendered, (\d+) already current, \d+ skipped, \d+ rejected, (\d+) failed")
    results: dict[tuple[str, float], list[tuple[float, dict[str, float]]]] = defaultdict(list)
    order = [latencies[i % len(latencies)] for i in range(len(latencies))]
    order += order[::-1]  # ABBA: drift on the shared machine falls on both alike
    # The functions' logs (Powertools JSON, one line per task) go where `make dev` prints them.
    with (
        open(os.devnull, "w") as devnull,
        contextlib.redirect_stdout(devnull),
        LocalStack(root=ROOT, ports=0) as stack,
    ):
        assert stack.runtime is not None
        s3, bucket = stack.client("s3"), stack.outputs["UploadsBucketName"]
        started = time.perf_counter()
        for i in range(n):
            s3.put_object(
                Bucket=bucket,
                Key=keys.upload_key(f"{i:08d}-0000-4000-8000-000000000000"),
                Body=photo(i),
                ContentType="image/jpeg",
                Metadata={"upload-id": f"u{i}"},
            )
        stack.wait_idle(timeout=600)
        say(f"{n} avatars made by the processor in {time.perf_counter() - started:.0f} s")
        for round_ in range(rounds):
            latency = order[round_ % len(order)]
            stack.update({"Renditions": RENDITIONS, "JpegQuality": str(80 - round_)})
            stack.runtime.set_aws_latency(latency)
            run = [*command, "--dev", stack.web_url]
            subprocess.run([*run, "--dry-run"], capture_output=True, check=True)  # warm the workers
            for label in ("re-render", "all current"):
                wall, before = time.perf_counter(), tree_cpu()
                done = subprocess.run(run, capture_output=True, text=True, check=False)
                wall, parts = time.perf_counter() - wall, used_since(before)
                cpu = sum(parts.values())
                match = summary.search(done.stdout)
                assert done.returncode == 0, done.stdout + done.stderr
                assert match, done.stdout
                counts = tuple(map(int, match.groups()))
                assert counts == ((n, 0, 0) if label == "re-render" else (0, n, 0)), done.stdout
                results[label, latency].append((wall / n * 1000, {p: v / n * 1000 for p, v in parts.items()}))
                say(
                    f"round {round_ + 1} {label:11s} +{latency:g} ms/AWS call: "
                    f"{wall / n * 1000:6.1f} s wall, {cpu / n * 1000:6.1f} s CPU per 1,000 ({show(parts, n)})"
                )
    say(f"\nmedians, n={n}, --workers {workers}, {rounds} rounds, per 1,000 avatars:")
    for (label, latency), values in sorted(results.items()):
        wall = statistics.median(v[0] for v in values)
        cpu = statistics.median(sum(v[1].values()) for v in values)
        parts = {p: statistics.median(v[1].get(p, 0.0) for v in values) for p in values[0][1]}
        say(
            f"  {label:11s} +{latency:g} ms: {wall:6.1f} s wall, {cpu:6.1f} s CPU ({show(parts, 1000)}; "
            f"{len(values)} runs)"
        )


def in_process(n: int, workers: int) -> None:
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "UPLOADS_BUCKET": "bench-uploads",
        "ASSETS_BUCKET": "bench-assets",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "bench",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    os.environ.update(env)
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        os.environ.pop(name, None)
    import boto3
    from moto import mock_aws

    from imgpipe import avatars, keys
    from imgpipe.spec import AvatarSpec
    from imgpipe_local import backfill_cmd
    from imgpipe_local.handlers import load_module
    from tests.conftest import FakeLambdaContext

    with mock_aws():
        s3: Any = boto3.client("s3")
        for bucket in ("bench-uploads", "bench-assets"):
            s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket="bench-uploads", VersioningConfiguration={"Status": "Enabled"})
        processor = load_module(ROOT / "functions/process_image")
        data = photo(0)
        for i in range(n):
            user = f"{i:08d}-0000-4000-8000-000000000000"
            put = s3.put_object(
                Bucket="bench-uploads", Key=keys.upload_key(user), Body=data, Metadata={"upload-id": f"u{i}"}
            )
            avatars.handle_upload(
                s3,
                processor.CONFIG,
                key=keys.upload_key(user),
                version_id=put["VersionId"],
                sequencer="0A",
                size=len(data),
                etag=None,
            )
        os.environ.update({"RENDITIONS": RENDITIONS, "JPEG_QUALITY": "78"})
        fn = load_module(ROOT / "functions/backfill_avatars")
        invoke = lambda event: fn.lambda_handler(event, FakeLambdaContext())  # noqa: E731
        args = argparse.Namespace(dry_run=False, workers=workers)
        for label in ("re-render", "all current"):
            out, wall, before = io.StringIO(), time.perf_counter(), tree_cpu()
            code = backfill_cmd.run_here(
                args,
                s3=s3,
                bucket="bench-uploads",
                invoke=invoke,
                spec=AvatarSpec.from_environ(),
                out=out,
                err=io.StringIO(),
            )
            wall, used = time.perf_counter() - wall, sum(used_since(before).values())
            print(
                f"{label:12s} n={n} workers={workers}: {wall / n * 1000:6.1f} s wall, "
                f"{used / n * 1000:6.1f} s CPU per 1,000 avatars "
                f"(exit {code}; {out.getvalue().splitlines()[0]})"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=200, help="avatars")
    parser.add_argument("--workers", type=int, default=4, help="imgpipe backfill --workers")
    parser.add_argument("--latency", default="0,30", help="ms per AWS call, comma-separated (ABBA order)")
    parser.add_argument("--rounds", type=int, default=4, help="re-renders of every avatar")
    parser.add_argument("--in-process", action="store_true", help="the handler in this process, moto too")
    args = parser.parse_args()
    if args.in_process:
        in_process(args.n, args.workers)
    else:
        local_stack(args.n, args.workers, [float(ms) for ms in args.latency.split(",")], args.rounds)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()

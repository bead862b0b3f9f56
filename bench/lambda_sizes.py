"""Which Lambda memory size processes an upload cheapest, and which fastest (issue 7 part 5).

    .venv/bin/python bench/lambda_sizes.py                       # 12 MP JPEG, the sizes below
    .venv/bin/python bench/lambda_sizes.py --images jpeg-2mp png-12mp-alpha --sizes 1024,3538

Lambda gives a function CPU in proportion to its memory (1,769 MB = one vCPU; less is a share of
one, more is more than one) and bills memory x duration. For each size M this runs imgpipe's
processing core (bench/imgpipe_worker.py) as a function of that size would: with
AWS_LAMBDA_FUNCTION_MEMORY_SIZE=M (one rendition thread per vCPU, the memory cap) and, where this
process may create a CPU cgroup (root, cgroup v1 or v2 with the cpu controller), under a CFS
quota of M/1769 CPUs in 20 ms periods. Without a cgroup the wall time is this machine's, and the
cost column uses the model instead: CPU / vCPU for the serial work. The workers of all sizes are
driven round-robin, one upload each in turn, so other users' load falls on all of them alike.

Cost per upload = M/1024 GB x (processing + the rest of the handler + S3 waits) x the arm64
price per GB-s, + the request price. The rest of the handler (boto3, manifest: ~50 ms of CPU for a
12 MP JPEG, bench/latency.py) is scaled by the vCPU share like the processing; the S3 waits (four
sequential rounds, bench/latency.py) do not scale with memory. Prices: AWS Lambda arm64,
us-east-1, first pricing tier. Results go to bench/results/lambda-sizes-latest.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import images
from run import BENCH, CACHE, RESULTS, ROOT, Worker

MB_PER_VCPU = 1769
PRICE_PER_GB_SECOND = 0.0000133334  # arm64
PRICE_PER_REQUEST = 0.20 / 1_000_000
PERIOD_US = 20_000
SIZES = (512, 1024, 1536, 1769, 2048, 3008, 3538)


def vcpus(memory_mb: int) -> float:
    return memory_mb / MB_PER_VCPU


@contextlib.contextmanager
def cpu_quota(name: str, cpus: float) -> Iterator[Path | None]:
    """A cgroup limited to `cpus` CPUs (the pids written to the yielded cgroup.procs), or None
    where this process may not make one."""
    quota = max(1000, int(PERIOD_US * cpus))
    made: Path | None = None
    for base, write in (
        (Path("/sys/fs/cgroup/cpu"), lambda d: _write_v1(d, quota)),
        (Path("/sys/fs/cgroup"), lambda d: (d / "cpu.max").write_text(f"{quota} {PERIOD_US}")),
    ):
        if not base.is_dir():
            continue
        path = base / name
        try:
            path.mkdir()
        except OSError:
            continue
        try:
            write(path)
        except OSError:
            path.rmdir()
            continue
        made = path
        break
    try:
        yield made / "cgroup.procs" if made else None
    finally:
        if made is not None:
            _remove(made)


def _remove(cgroup: Path) -> None:
    """Remove the cgroup once what ran in it has gone (a worker's decoding child outlives it by a
    moment: it leaves when its pipe closes)."""
    for _ in range(100):
        with contextlib.suppress(OSError):
            cgroup.rmdir()
        if not cgroup.exists():
            return
        time.sleep(0.05)
    cgroup.rmdir()


def _write_v1(path: Path, quota: int) -> None:
    (path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
    (path / "cpu.cfs_quota_us").write_text(str(quota))


def measure(image: Path, sizes: list[int], iterations: int) -> dict[int, dict[str, Any]]:
    """Median wall and CPU time per upload for each size, round-robin."""
    argv = [sys.executable, str(BENCH / "imgpipe_worker.py"), str(image)]
    results: dict[int, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        workers: dict[int, Worker] = {}
        for size in sizes:
            procs = stack.enter_context(cpu_quota(f"imgpipe-bench-{os.getpid()}-{size}", vcpus(size)))
            env = [
                "env",
                f"PYTHONPATH={ROOT / 'layers' / 'shared'}",
                f"AWS_LAMBDA_FUNCTION_MEMORY_SIZE={size}",
            ]
            worker = Worker(f"{size} MB", [*env, *argv])
            stack.callback(worker.kill)
            if procs is not None:
                procs.write_text(str(worker.proc.pid))  # its decoding child, forked later, follows
            workers[size] = worker
            results[size] = {"quota": procs is not None, "ms": [], "cpu_ms": []}
            results[size]["threads"] = worker.ready.get("rendition_threads")
        for i in range(iterations + 1):  # the first round warms up (and forks the decoding children)
            order = sizes[i % len(sizes) :] + sizes[: i % len(sizes)]
            for size in order:
                answer = workers[size].run()
                if i:
                    results[size]["ms"].append(answer["ms"])
                    results[size]["cpu_ms"].append(answer["cpu_ms"])
    return results


def table(name: str, results: dict[int, dict[str, Any]], handler_cpu_ms: float, s3_ms: float) -> list[str]:
    lines = [
        f"### {name}",
        "",
        "| memory | vCPU | threads | processing wall | CPU | upload end to end | GB-s per upload "
        "| $ per million uploads |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = []
    for size, r in results.items():
        wall, cpu = statistics.median(r["ms"]), statistics.median(r["cpu_ms"])
        share = min(1.0, vcpus(size))
        processing = wall if r["quota"] else max(wall, cpu / share)
        total_s = (processing + handler_cpu_ms / share + s3_ms) / 1000
        gb_s = size / 1024 * total_s
        dollars = (gb_s * PRICE_PER_GB_SECOND + PRICE_PER_REQUEST) * 1_000_000
        rows.append((size, total_s, dollars))
        lines.append(
            f"| {size:,} MB | {vcpus(size):.2f} | {r['threads']} | {processing:,.0f} ms"
            f"{'' if r['quota'] else ' (model)'} | {cpu:,.0f} ms | {total_s * 1000:,.0f} ms | {gb_s:.3f} | "
            f"${dollars:.2f} |"
        )
    cheapest = min(rows, key=lambda row: row[2])
    fastest = min(rows, key=lambda row: row[1])
    lines += [
        "",
        f"Lowest cost: **{cheapest[0]:,} MB** (${cheapest[2]:.2f} per million). "
        f"Lowest latency: **{fastest[0]:,} MB** ({fastest[1] * 1000:,.0f} ms end to end).",
        "",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", nargs="+", default=["jpeg-12mp"], choices=[s.name for s in images.SPECS])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="MB, comma-separated")
    parser.add_argument("--iterations", type=int, default=9)
    parser.add_argument(
        "--handler-cpu-ms", type=float, default=50.0, help="the handler's CPU besides imaging"
    )
    parser.add_argument("--s3-ms", type=float, default=120.0, help="S3 waits per upload (4 rounds x 30 ms)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    load = [round(x, 2) for x in os.getloadavg()]
    lines = [
        "## Lambda memory sizes: processing time and cost per upload",
        "",
        f"Handler CPU besides imaging {args.handler_cpu_ms:.0f} ms (scaled by the vCPU share), S3 waits "
        f"{args.s3_ms:.0f} ms; arm64 ${PRICE_PER_GB_SECOND:.10f}/GB-s + $0.20 per million requests; "
        f"{args.iterations} uploads per size, round-robin; load average {load}.",
        "",
    ]
    for name in args.images:
        spec = next(s for s in images.SPECS if s.name == name)
        print(f"lambda_sizes: {name} …", file=sys.stderr, flush=True)
        results = measure(images.ensure(spec, CACHE), sizes, args.iterations)
        lines += table(name, results, args.handler_cpu_ms, args.s3_ms)
    text = "\n".join(lines)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "lambda-sizes-latest.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The local stack's own costs: a worker's cold start, a warm invocation's overhead, `imgpipe dev`'s
time to ready (optionally against another revision's, interleaved run by run).

    .venv/bin/python bench/local_stack.py [--runs 7] [--compare REV]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from imgpipe_local import template
from imgpipe_local.workers import FunctionPool, Worker, aws_environment, lambda_environment

ROOT = Path(__file__).resolve().parent.parent
PARAMETERS = {"UserPoolId": "us-east-1_Bench", "UserPoolClientId": "bench"}
NOOP = "def lambda_handler(event, context):\n    return event\n"


def median_ms(samples: list[float]) -> str:
    low, mid, high = (round(x * 1000) for x in (min(samples), statistics.median(samples), max(samples)))
    return f"{mid} ms (min {low}, max {high})"


def cold_starts(runs: int) -> None:
    functions = template.load(ROOT / "template.yaml", PARAMETERS).functions
    print(f"worker cold start, spawn to ready (median of {runs}; init: the handler's import):")
    for logical_id, function in functions.items():
        environment = lambda_environment(function, aws_environment("http://127.0.0.1:9"))
        walls, inits = [], []
        for _ in range(runs):
            started = time.perf_counter()
            worker = Worker(function, environment, 0, io.StringIO())
            walls.append(time.perf_counter() - started)
            inits.append(worker.init_ms / 1000)
            worker.stop()
        print(f"  {logical_id:<24} {median_ms(walls)}; init {median_ms(inits)}")


def warm_overhead(invocations: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "noop").mkdir()
        Path(folder, "noop", "app.py").write_text(NOOP)
        Path(folder, "template.yaml").write_text(
            "Transform: AWS::Serverless-2016-10-31\nResources:\n  Noop:\n"
            "    Type: AWS::Serverless::Function\n"
            "    Properties: {CodeUri: noop, Handler: app.lambda_handler, Runtime: python3.13}\n"
        )
        function = template.load(Path(folder, "template.yaml"), {}).functions["Noop"]
        pool = FunctionPool(function, aws_environment(None), output=io.StringIO())
        event = {"payload": "x" * 1024}
        pool.invoke(event)  # cold
        samples = []
        for _ in range(invocations):
            started = time.perf_counter()
            pool.invoke(event)
            samples.append(time.perf_counter() - started)
        pool.stop()
    micro = [s * 1000 for s in samples]
    print(
        f"warm invocation of a no-op handler (1 KiB event), {invocations} in a row: median "
        f"{statistics.median(micro):.2f} ms, p90 {statistics.quantiles(micro, n=10)[-1]:.2f} ms"
    )


def dev_ready(root: Path, pythonpath: str | None) -> float:
    ports = [arg for name in ("moto", "api", "cdn", "web") for arg in (f"--{name}-port", "0")]
    environment = {**os.environ, **({"PYTHONPATH": pythonpath} if pythonpath else {})}
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "imgpipe_local", "dev", "--root", str(root), *ports],
        cwd=root,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if "Ctrl-C to stop" in line:
            break
    ready = time.perf_counter() - started
    process.send_signal(signal.SIGTERM)
    try:
        process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        print(f"  ({root}: still stopping 20 s after SIGTERM; killed)", file=sys.stderr)
        process.kill()
        process.communicate()
    return ready


def dev_ready_times(runs: int, compare: str | None) -> None:
    contenders = {"this tree": (ROOT, None)}
    if compare:
        snapshot = Path(tempfile.mkdtemp(prefix="imgpipe-local-bench-"))
        archive = subprocess.run(
            ["git", "archive", compare], cwd=ROOT, capture_output=True, check=True
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(snapshot, filter="data")
        contenders[compare] = (snapshot, str(snapshot / "local"))
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for run in range(runs):  # interleaved, the starting one rotated: load falls on both alike
        order = list(contenders)[run % len(contenders) :] + list(contenders)[: run % len(contenders)]
        for name in order:
            times[name].append(dev_ready(*contenders[name]))
    if compare:
        shutil.rmtree(contenders[compare][0])
    print(f"`imgpipe dev` launch to ready, ports 0 (median of {runs}):")
    for name, samples in times.items():
        print(f"  {name:<12} {median_ms(samples)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--compare", metavar="REV", help="also time `imgpipe dev` of this git revision")
    args = parser.parse_args()
    cold_starts(args.runs)
    warm_overhead(200)
    dev_ready_times(args.runs, args.compare)


if __name__ == "__main__":
    main()

"""The hostile-input table of `make bench`: what each generated hostile file costs, before and after.

    .venv/bin/python bench/hostile.py                      # every case, before (main at BEFORE_REF) and now
    .venv/bin/python bench/hostile.py --cases jpeg-repeated-scans --no-before

Each case (bench/hostile_images.py, built once into .imgpipe-local/hostile/) runs through
`imaging.process()` in its own process (bench/hostile_worker.py), three ways in turn:

- **before**: the imaging core of BEFORE_REF (main before the structure limits), from `git archive`;
- **after**: the tree's core: the structure pre-scan, then the bounded decoding child;
- **backstop only**: the tree's core with the pre-scan told to refuse nothing (it still reports
  the header's pixel size, which sizes the budget): what a structure nobody listed would cost.

CPU is user + system time of the worker and every child it reaped, from the kernel (wait4);
memory is the worker's peak RSS (or its decoding child's, whichever is higher) above its RSS
once warm (imports done, a small image processed, the file read). A run past CAP_SECONDS of CPU
is killed and shown as such. Targets (issue 7): every hostile case <= 2 s CPU and <= 256 MB
above the warm process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import hostile_images

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CACHE = ROOT / ".imgpipe-local" / "hostile"
RESULTS = BENCH / "results"
# main just before the structure limits and the decode backstop (issue 7 part 2).
BEFORE_REF = "9b18e1f"
CAP_SECONDS = 20
ADDRESS_SPACE_CAP = 4 << 30  # keeps a runaway "before" from taking the shared machine down
TARGET_CPU_SECONDS = 2.0
TARGET_MEMORY_MB = 256
MODES = ("before", "after", "backstop only")


@dataclass
class Run:
    outcome: str
    cpu_s: float
    above_warm_mb: float
    message: str | None = None

    def cell(self) -> str:
        killed = self.above_warm_mb != self.above_warm_mb  # NaN: no peak reported
        memory = "? MB" if killed else f"{self.above_warm_mb:.0f} MB"
        return f"{self.cpu_s:.2f} s · {memory} · {self.outcome}"


def _extension(fmt: str) -> str:
    return {"jpeg": "jpg"}.get(fmt, fmt)


def case_file(case: hostile_images.Case, size: int | None) -> Path:
    size = size or case.default_size
    path = CACHE / f"{case.name}-{size}-v{hostile_images.GENERATOR_VERSION}.{_extension(case.format)}"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(hostile_images.build(case, size))
        tmp.replace(path)
    return path


def before_tree(ref: str, workdir: Path) -> Path:
    """layers/shared as it was at `ref`, unpacked into workdir; returns its import root."""
    archive = workdir / "before.tar"
    with archive.open("wb") as out:
        subprocess.run(["git", "-C", str(ROOT), "archive", ref, "layers/shared"], stdout=out, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(workdir, filter="data")
    return workdir / "layers" / "shared"


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_CPU, (CAP_SECONDS, CAP_SECONDS + 1))
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_CAP, ADDRESS_SPACE_CAP))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run_one(path: Path, package: Path, extra: list[str]) -> Run:
    env = {**os.environ, "PYTHONPATH": str(package)}
    argv = [sys.executable, str(BENCH / "hostile_worker.py"), str(path), *extra]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True, preexec_fn=_limits
    )
    out, err = proc.communicate()
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    warm = next((line["warm_kb"] for line in lines if "warm_kb" in line), 0)
    final = next((line for line in lines if "outcome" in line), None)
    if final is None:
        tail = err.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        return Run(f"killed ({tail[0][:60]})", -1.0, -1.0)
    return Run(
        final["reason"] or final["outcome"],
        final["cpu_s"],
        max(0, final["peak_kb"] - warm) / 1024,
        final["message"],
    )


def measure(path: Path, package: Path, extra: list[str]) -> Run:
    """run_one, with CPU and peak RSS from the kernel when the worker was killed before reporting."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    run = run_one(path, package, extra)
    if run.cpu_s < 0:
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        run.cpu_s = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        run.outcome = (
            f"killed at the {CAP_SECONDS} s CPU cap" if run.cpu_s >= CAP_SECONDS - 1 else run.outcome
        )
        run.above_warm_mb = float("nan")
    return run


def bench(cases: list[hostile_images.Case], size: int | None, ref: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="imgpipe-hostile-") as tmp:
        packages = {"after": ROOT / "layers" / "shared"}
        if ref:
            packages["before"] = before_tree(ref, Path(tmp))
        rows = []
        for case in cases:
            path = case_file(case, size)
            print(f"hostile: {case.name} ({path.stat().st_size:,} bytes) …", file=sys.stderr, flush=True)
            declared = f"{case.declared[0]}x{case.declared[1]}"
            runs: dict[str, Run] = {}
            for mode in MODES:
                if mode == "before" and not ref:
                    continue
                package = packages["before" if mode == "before" else "after"]
                extra = ["--no-prescan", "--declared", declared] if mode == "backstop only" else []
                runs[mode] = measure(path, package, extra)
            rows.append(
                {
                    "case": case.name,
                    "format": case.format,
                    "what": case.what,
                    "bytes": path.stat().st_size,
                    "expected": case.reason or "accepted",
                    "runs": {mode: run.__dict__ for mode, run in runs.items()},
                }
            )
    return {"before_ref": ref, "cap_seconds": CAP_SECONDS, "rows": rows}


def markdown(result: dict[str, Any]) -> str:
    modes = [m for m in MODES if any(m in row["runs"] for row in result["rows"])]
    lines = [
        "## Hostile inputs (issue 7): CPU · memory above the warm process · outcome",
        "",
        f"before = main at {result['before_ref']}; after = this tree (structure pre-scan + bounded "
        "decoding child); backstop only = this tree with the pre-scan refusing nothing. "
        f"Targets: ≤ {TARGET_CPU_SECONDS:g} s CPU and ≤ {TARGET_MEMORY_MB} MB for every case.",
        "",
        "| case | structure | size | " + " | ".join(modes) + " |",
        "|---|---|---:|" + "---|" * len(modes),
    ]
    worst = {mode: (0.0, 0.0) for mode in modes}
    for row in result["rows"]:
        cells = []
        for mode in modes:
            run = row["runs"].get(mode)
            if run is None:
                cells.append("-")
                continue
            cells.append(Run(**run).cell())
            if run["cpu_s"] >= 0:
                cpu, mb = worst[mode]
                mb_now = run["above_warm_mb"] if run["above_warm_mb"] == run["above_warm_mb"] else 0.0
                worst[mode] = (max(cpu, run["cpu_s"]), max(mb, mb_now))
        size = f"{row['bytes'] / 1e6:.1f} MB"
        lines.append(f"| {row['case']} | {row['what']} | {size} | " + " | ".join(cells) + " |")
    lines.append("")
    for mode in modes:
        cpu, mb = worst[mode]
        met = cpu <= TARGET_CPU_SECONDS and mb <= TARGET_MEMORY_MB
        lines.append(f"- {mode}: worst {cpu:.2f} s CPU, {mb:.0f} MB — {'MET' if met else 'NOT MET'}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", nargs="+", choices=list(hostile_images.BY_NAME), help="subset of cases")
    parser.add_argument(
        "--size", type=int, help="flood byte budget for every case (default: each case's own)"
    )
    parser.add_argument("--before", default=BEFORE_REF, help=f"git ref of 'before' (default {BEFORE_REF})")
    parser.add_argument("--no-before", action="store_true", help="skip the 'before' runs")
    args = parser.parse_args(argv)
    cases = (
        [hostile_images.BY_NAME[name] for name in args.cases] if args.cases else list(hostile_images.CASES)
    )
    started = datetime.now(UTC)
    result = bench(cases, args.size, None if args.no_before else args.before)
    result["started"] = started.strftime("%Y-%m-%d %H:%M UTC")
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"hostile-{stamp}.json").write_text(json.dumps(result, indent=2) + "\n")
    summary = markdown(result)
    (RESULTS / "hostile-latest.md").write_text(summary)
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())

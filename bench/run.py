"""`make bench`: imgpipe's processing core against sharp (the seed's library) and pyvips.

Every implementation does the same job on the same generated photo-like inputs: read the file,
auto-orient, make 512/256/128 square cover crops, encode each as JPEG q82 and WebP q80 without
metadata, keep the bytes in memory. Each (implementation, image) pair runs in its own child
process, so its peak RSS is that image's alone; the children of one image are driven
round-robin, one iteration at a time, so machine noise hits all of them alike.

    .venv/bin/python bench/run.py            # the full bench, a couple of minutes on 2 cores
    .venv/bin/python bench/run.py --quick    # 1 iteration on the 2 MP JPEG: is everything wired?

Writes bench/results/<timestamp>.json and bench/results/latest.md, and prints the summary; then
runs the S3 latency model of the processor's handler (bench/latency.py; --no-latency skips it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import hostile
import images

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CACHE = ROOT / ".imgpipe-local" / "bench-images"
RESULTS = BENCH / "results"
BENCH_PYTHON = BENCH / ".venv" / "bin" / "python"

# Chosen so the whole run takes a couple of minutes on 2 shared cores: more samples where one
# iteration is cheap, since small images are the noisiest to time.
ITERATIONS = {
    "jpeg-2mp": 21,
    "jpeg-12mp": 15,
    "jpeg-24mp": 11,
    "jpeg-48mp": 9,
    "png-12mp-alpha": 9,
    "webp-12mp": 11,
    "png-48mp-alpha": 3,  # there for its peak RSS; ~5 s per round
}
BASELINE = "sharp"
TARGET_RATIO = 0.7  # issue 3: imgpipe <= 0.7x sharp's time on 12 MP and larger JPEGs
FUNCTION_MEMORY_MB = 1024  # issue 3: 48 MP inside a 1024 MB function


def commands(image: Path, patched: Path | None = None) -> dict[str, list[str]]:
    imgpipe = [sys.executable, str(BENCH / "imgpipe_worker.py"), str(image)]
    return {
        "imgpipe": imgpipe,
        # imgpipe with --patch files applied to a copy of layers/shared: a proposed change to
        # imaging.py measured in the same round-robin as the committed code.
        "imgpipe+patch": ["env", f"PYTHONPATH={patched}", *imgpipe],
        "sharp": ["node", str(BENCH / "sharp_worker.js"), str(image), "derive"],
        "pyvips": [str(BENCH_PYTHON), str(BENCH / "pyvips_worker.py"), str(image)],
        # Opt-in: sharp the way its README shows it, one pipeline per output.
        "sharp-independent": ["node", str(BENCH / "sharp_worker.js"), str(image), "independent"],
    }


DEFAULT_IMPLS = ("imgpipe", "sharp", "pyvips")


class WorkerFailed(RuntimeError):
    pass


class Worker:
    """One child process speaking bench/worker_protocol.py's line protocol."""

    def __init__(self, impl: str, argv: list[str]) -> None:
        self.impl = impl
        # Kept open for the worker's lifetime and shown if it dies (closed in finish/kill).
        self.stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True
        )
        self.ready = self._read()["ready"]

    def _read(self) -> dict:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            self.stderr.seek(0)
            tail = self.stderr.read()[-2000:]
            raise WorkerFailed(f"{self.impl} worker exited ({self.proc.returncode}):\n{tail}")
        return json.loads(line)

    def run(self) -> dict:
        assert self.proc.stdin is not None
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        return self._read()

    def finish(self) -> dict:
        """Stop the worker; its peak RSS comes from the kernel's accounting of that one child."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("quit\n")
        self.proc.stdin.close()
        reported = self._read()
        _, status, usage = os.wait4(self.proc.pid, 0)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.stderr.close()
        return {"maxrss_kb": usage.ru_maxrss, "reported_maxrss_kb": reported.get("maxrss_kb")}

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


@dataclass
class Measured:
    impl: str
    ready: dict = field(default_factory=dict)
    ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    outputs: list[dict] = field(default_factory=list)
    # The first iteration after start-up (lazy plugin and codec set-up): a Lambda cold start pays it.
    first_ms: float | None = None
    maxrss_kb: int | None = None
    reported_maxrss_kb: int | None = None
    error: str | None = None

    def summary(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k not in ("ms", "cpu_ms")}
        out["samples_ms"] = [round(x, 2) for x in self.ms]
        out["samples_cpu_ms"] = [round(x, 2) for x in self.cpu_ms]
        if self.ms:
            out["median_ms"] = statistics.median(self.ms)
            out["min_ms"] = min(self.ms)
            out["max_ms"] = max(self.ms)
            out["median_cpu_ms"] = statistics.median(self.cpu_ms)
        return out


def bench_image(
    path: Path, impls: tuple[str, ...], iterations: int, warmup: int, patched: Path | None
) -> dict[str, Measured]:
    argv = commands(path, patched)
    measured = {impl: Measured(impl) for impl in impls}
    workers: dict[str, Worker] = {}
    try:
        for impl in impls:
            try:
                workers[impl] = Worker(impl, argv[impl])
                measured[impl].ready = workers[impl].ready
            except WorkerFailed as exc:
                measured[impl].error = str(exc)
        for i in range(warmup + iterations):
            live = [impl for impl in impls if impl in workers]
            # Rotate who goes first, so no implementation always runs right after a cold pause.
            order = live[i % len(live) :] + live[: i % len(live)] if live else []
            for impl in order:
                try:
                    answer = workers[impl].run()
                except WorkerFailed as exc:
                    measured[impl].error = str(exc)
                    workers.pop(impl).kill()
                    continue
                if "outputs" in answer:
                    measured[impl].outputs = answer["outputs"]
                    measured[impl].first_ms = answer["ms"]
                if i >= warmup:
                    measured[impl].ms.append(answer["ms"])
                    measured[impl].cpu_ms.append(answer["cpu_ms"])
        for impl, worker in list(workers.items()):
            rss = worker.finish()
            workers.pop(impl)
            measured[impl].maxrss_kb = rss["maxrss_kb"]
            measured[impl].reported_maxrss_kb = rss["reported_maxrss_kb"]
    finally:
        for worker in workers.values():
            worker.kill()
    return measured


def same_work(measured: dict[str, Measured]) -> list[str]:
    """Every implementation must have made the same set of (rendition, format, width, height)."""
    shapes = {
        impl: sorted((o["name"], o["format"], o["width"], o["height"]) for o in m.outputs)
        for impl, m in measured.items()
        if m.outputs
    }
    reference = shapes.get(BASELINE) or next(iter(shapes.values()), None)
    return [
        f"{impl} made {got}, {BASELINE} made {reference}" for impl, got in shapes.items() if got != reference
    ]


def _version(cmd: list[str]) -> str | None:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info() -> dict:
    from PIL import Image, features

    cpu_model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    return {
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "pillow": Image.__version__,
        "libjpeg_turbo": features.version("libjpeg_turbo"),
        "libwebp": features.version("webp"),
        "zlib": features.version("zlib"),
        "node": _version(["node", "--version"]),
        "git_commit": _version(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        "imaging_py_uncommitted": bool(
            _version(["git", "-C", str(ROOT), "status", "--porcelain", "layers/shared/imgpipe/imaging.py"])
        ),
    }


def _stale(stamp: Path, source: Path) -> bool:
    return not stamp.exists() or stamp.stat().st_mtime < source.stat().st_mtime


def install_references(impls: tuple[str, ...]) -> None:
    """Install sharp and pyvips on first use, pinned, beside the bench (never into .venv or a layer)."""
    # npm writes node_modules/.package-lock.json on every install: newer than the lock when current.
    if any(i.startswith("sharp") for i in impls) and _stale(
        BENCH / "node_modules" / ".package-lock.json", BENCH / "package-lock.json"
    ):
        print("bench: installing sharp (npm ci --prefix bench) …", file=sys.stderr, flush=True)
        npm = ["npm", "ci", "--prefix", str(BENCH), "--no-audit", "--no-fund", "--loglevel=error"]
        subprocess.run(npm, check=True)
    if "pyvips" in impls:
        stamp = BENCH / ".venv" / ".stamp"
        if _stale(stamp, BENCH / "requirements.txt"):
            print("bench: installing pyvips into bench/.venv …", file=sys.stderr, flush=True)
            subprocess.run([sys.executable, "-m", "venv", str(BENCH / ".venv")], check=True)
            pip = [str(BENCH_PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
            subprocess.run([*pip, "-r", str(BENCH / "requirements.txt")], check=True)
            stamp.touch()


def patched_package(workdir: Path, patches: list[Path]) -> Path:
    """A copy of layers/shared with `patches` applied in order; returns its import root."""
    shutil.copytree(ROOT / "layers" / "shared", workdir / "layers" / "shared")
    for patch in patches:
        done = subprocess.run(
            ["patch", "-p1", "--batch", "-d", str(workdir), "-i", str(patch.resolve())],
            capture_output=True,
            text=True,
        )
        if done.returncode:
            raise SystemExit(f"bench: {patch} does not apply to layers/shared:\n{done.stdout}{done.stderr}")
    return workdir / "layers" / "shared"


# -- reporting ---------------------------------------------------------------------------------


def _ratio(value: float | None, base: float | None) -> str:
    return f"{value / base:.2f}x" if value and base else "-"


def _cell(m: dict, key: str, base: dict | None, unit: str, scale: float = 1.0) -> str:
    if m.get("error"):
        return "failed"
    value = m.get(key)
    if value is None:
        return "-"
    text = f"{value * scale:,.0f} {unit}"
    if base is not None and m["impl"] != BASELINE:
        base_value = base.get(key)
        text += f" ({_ratio(value, base_value)})" if base_value else ""
    return text


def markdown(run: dict) -> str:
    impls = run["impls"]
    base_in = BASELINE in impls
    header = "| image | source | " + " | ".join(impls) + " |"
    rule = "|---|---|" + "---:|" * len(impls)
    lines = [f"# imgpipe bench — {run['started']}", ""]
    lines.append(
        "Job per iteration: read file → auto-orient → 512², 256², 128² cover crops → JPEG q82 + WebP q80, "
        "metadata stripped, bytes in memory. Ratios are to sharp (lower is better)."
    )
    lines.append("")

    def table(title: str, key: str, unit: str, scale: float = 1.0, note: str = "") -> None:
        lines.extend([f"## {title}", ""])
        if note:
            lines.extend([note, ""])
        lines.extend([header, rule])
        for img in run["images"]:
            res = img["results"]
            base = res.get(BASELINE) if base_in else None
            cells = [_cell(res[i], key, base, unit, scale) for i in impls]
            src = f"{img['megapixels']:.1f} MP {img['format'].upper()}, {img['bytes'] / 1e6:.1f} MB"
            lines.append(f"| {img['name']} ({img['iterations']}x) | {src} | " + " | ".join(cells) + " |")
        lines.append("")

    table("Median wall time", "median_ms", "ms")
    table(
        "Median CPU time",
        "median_cpu_ms",
        "ms",
        note="User + system time of the whole process, all threads: what a fractional-vCPU Lambda pays for.",
    )
    table(
        "Peak RSS",
        "maxrss_kb",
        "MB",
        scale=1 / 1024,
        note="Whole process (runtime included), one process per implementation and image, from wait4().",
    )

    lines.extend(["## Output bytes (JPEG total / WebP total over the three renditions)", "", header, rule])
    for img in run["images"]:
        cells = []
        for impl in impls:
            outs = img["results"][impl].get("outputs") or []
            by_fmt = {f: sum(o["bytes"] for o in outs if o["format"] == f) for f in ("jpeg", "webp")}
            cells.append(f"{by_fmt['jpeg'] / 1024:.0f} / {by_fmt['webp'] / 1024:.0f} KiB" if outs else "-")
        lines.append(f"| {img['name']} | | " + " | ".join(cells) + " |")
    lines.append("")

    lines.extend(["## Targets (issue 3)", ""])
    lines.extend(f"- {t['verdict']} — {t['target']}: {t['detail']}" for t in run["targets"])
    if not run["targets"]:
        lines.append("- not evaluated (needs imgpipe and sharp in the run)")
    problems = [p for img in run["images"] for p in img.get("problems", [])]
    errors = [
        f"{img['name']}/{impl}: {r['error'].splitlines()[0]}"
        for img in run["images"]
        for impl, r in img["results"].items()
        if r.get("error")
    ]
    if problems or errors:
        lines.extend(["", "## Problems", ""])
        lines.extend(f"- {p}" for p in problems + errors)

    m = run["machine"]
    versions = run["versions"]
    lines.extend(
        [
            "",
            "## Machine",
            "",
            f"- {m['cores']} cores ({m['cores_usable']} usable), {m['cpu_model']}, {m['memory_gb']} GB, "
            f"Linux {m['kernel']} {m['machine']}",
            f"- load average (1/5/15 min) before {run['load_before']}, after {run['load_after']}; "
            "the bench itself keeps about one core busy; the machine is shared, so other people's work "
            "is in these numbers too (equally for each implementation, thanks to the round-robin)",
            f"- Python {m['python']}, Pillow {m['pillow']} (libjpeg-turbo {m['libjpeg_turbo']}, "
            f"libwebp {m['libwebp']}, zlib {m['zlib']}), git {m['git_commit']}"
            + (" + uncommitted imaging.py" if m["imaging_py_uncommitted"] else ""),
            *(f"- {impl}: {versions[impl]}" for impl in impls if impl in versions),
            f"- wall time of the whole bench: {run['duration_s']:.0f} s",
        ]
    )
    return "\n".join(lines) + "\n"


def evaluate(images_run: list[dict]) -> list[dict]:
    targets = []
    for img in images_run:
        res = img["results"]
        ours, base = res.get("imgpipe"), res.get(BASELINE)
        if not ours or not base or ours.get("error") or base.get("error"):
            continue
        if img["format"] == "jpeg" and img["megapixels"] >= 12:
            ratio = ours["median_ms"] / base["median_ms"]
            targets.append(
                {
                    "image": img["name"],
                    "target": f"time ≤ {TARGET_RATIO}x sharp on {img['name']}",
                    "met": ratio <= TARGET_RATIO,
                    "verdict": "MET" if ratio <= TARGET_RATIO else "NOT MET",
                    "detail": f"{ours['median_ms']:.0f} ms vs {base['median_ms']:.0f} ms = {ratio:.2f}x",
                }
            )
        met = ours["maxrss_kb"] <= base["maxrss_kb"]
        targets.append(
            {
                "image": img["name"],
                "target": f"peak RSS ≤ sharp's on {img['name']}",
                "met": met,
                "verdict": "MET" if met else "NOT MET",
                "detail": f"{ours['maxrss_kb'] / 1024:.0f} MB vs {base['maxrss_kb'] / 1024:.0f} MB",
            }
        )
    for img in images_run:
        ours = img["results"].get("imgpipe")
        if img["name"] == "jpeg-48mp" and ours and not ours.get("error"):
            mb = ours["maxrss_kb"] / 1024
            targets.append(
                {
                    "image": img["name"],
                    "target": f"48 MP inside a {FUNCTION_MEMORY_MB} MB function",
                    "met": mb < FUNCTION_MEMORY_MB,
                    "verdict": "MET" if mb < FUNCTION_MEMORY_MB else "NOT MET",
                    "detail": f"imgpipe peak RSS {mb:.0f} MB",
                }
            )
    return targets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1 iteration, no warm-up, 2 MP JPEG only")
    parser.add_argument("--iterations", type=int, help="measured iterations per image (default: per image)")
    parser.add_argument(
        "--images", nargs="+", choices=[s.name for s in images.SPECS], help="subset of inputs"
    )
    parser.add_argument(
        "--impls",
        nargs="+",
        choices=list(commands(Path("x"))),
        default=list(DEFAULT_IMPLS),
        help="implementations",
    )
    parser.add_argument(
        "--patch",
        type=Path,
        action="append",
        help="a diff against the repository root (-p1), applied to a copy of layers/shared and "
        "measured as imgpipe+patch beside imgpipe; repeat to apply several in order",
    )
    parser.add_argument(
        "--no-hostile", action="store_true", help="skip the hostile-input table (bench/hostile.py)"
    )
    parser.add_argument("--no-latency", action="store_true", help="skip the S3 latency model (latency.py)")
    args = parser.parse_args(argv)

    impls = tuple(args.impls)
    if args.patch and "imgpipe+patch" not in impls:
        impls = ("imgpipe", "imgpipe+patch", *(i for i in impls if i != "imgpipe"))
    if "imgpipe+patch" in impls and not args.patch:
        parser.error("imgpipe+patch needs --patch FILE")
    install_references(impls)
    names = args.images or (["jpeg-2mp"] if args.quick else [s.name for s in images.SPECS])
    warmup = 0 if args.quick else 1

    scratch = Path(tempfile.mkdtemp(prefix="imgpipe-bench-"))
    try:
        patched = patched_package(scratch, args.patch) if args.patch else None
        status = _run(args, impls, names, warmup, patched)
    finally:
        shutil.rmtree(scratch)
    # The hostile-input table belongs to the full run (a subset or a patch is a processing question).
    if not (args.quick or args.images or args.patch or args.no_hostile):
        status |= hostile.main([])
    if not (args.images or args.patch or args.no_latency):
        # The S3 latency model (bench/latency.py) measures the handler, not the imaging core.
        latency = subprocess.run(
            [sys.executable, str(BENCH / "latency.py"), *(["--quick"] if args.quick else [])]
        )
        status |= latency.returncode
    return status


def _run(
    args: argparse.Namespace, impls: tuple[str, ...], names: list[str], warmup: int, patched: Path | None
) -> int:
    specs = [s for s in images.SPECS if s.name in names]
    started = datetime.now(UTC)
    t0 = time.monotonic()
    load_before = [round(x, 2) for x in os.getloadavg()]
    versions: dict[str, str] = {}
    images_run = []
    for spec in specs:
        path = images.ensure(spec, CACHE)
        iterations = 1 if args.quick else (args.iterations or ITERATIONS[spec.name])
        print(
            f"bench: {spec.name} ({spec.megapixels:.1f} MP, {iterations} iterations) …",
            file=sys.stderr,
            flush=True,
        )
        load = [round(x, 2) for x in os.getloadavg()]
        measured = bench_image(path, impls, iterations, warmup, patched)
        for impl, m in measured.items():
            if m.ready:
                versions[impl] = ", ".join(
                    f"{k} {v}" for k, v in m.ready.items() if k not in ("impl", "rss_kb")
                )
        images_run.append(
            {
                "name": spec.name,
                "file": path.name,
                "format": spec.format,
                "width": spec.width,
                "height": spec.height,
                "megapixels": spec.megapixels,
                "bytes": path.stat().st_size,
                "sha256": images.sha256(path),
                "iterations": iterations,
                "warmup": warmup,
                "load_at_start": load,
                "problems": same_work(measured),
                "results": {impl: m.summary() for impl, m in measured.items()},
            }
        )
    run = {
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "quick": args.quick,
        "impls": list(impls),
        "job": {"sizes": [512, 256, 128], "fit": "cover", "jpeg_quality": 82, "webp_quality": 80},
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "duration_s": time.monotonic() - t0,
        "machine": machine_info(),
        "versions": versions,
        "images": images_run,
        "targets": evaluate(images_run),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%dT%H%M%SZ") + ("-quick" if args.quick else "")
    (RESULTS / f"{stamp}.json").write_text(json.dumps(run, indent=2) + "\n")
    summary = markdown(run)
    (RESULTS / "latest.md").write_text(summary)
    print(summary)
    print(f"bench: wrote {RESULTS / f'{stamp}.json'} and {RESULTS / 'latest.md'}", file=sys.stderr)
    failed = any(r.get("error") for img in images_run for r in img["results"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

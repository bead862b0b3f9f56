"""The line protocol every bench worker speaks (the Node one re-implements it in sharp_worker.js).

A worker is started once per (implementation, image) so its peak RSS belongs to that image
alone. It prints one JSON line `{"ready": ...}` after its imports, then answers each `run`
line on stdin with one JSON line for one full iteration (read the file, make every rendition in
every format, keep the bytes in memory), and exits on `quit` or end of input. The parent
drives all workers of an image round-robin, so machine noise hits each one alike.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

# The renditions and encoder settings of imgpipe's defaults (template.yaml): the same work is
# asked of every implementation.
SIZES = (512, 256, 128)
JPEG_QUALITY = 82
WEBP_QUALITY = 80

# One output: (rendition name, format, width, height, encoded bytes).
Output = tuple[str, str, int, int, bytes]


def vm_rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _cpu_seconds() -> float:
    """User + system time of this process and of the children it reaped (imgpipe decodes each
    upload in a forked child, so its own process time alone would miss the work)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def serve(path: Path, run_once: Callable[[bytes], list[Output]], info: dict) -> None:
    """Answer the parent's `run` requests until `quit`; `run_once` does one iteration's work."""
    print(json.dumps({"ready": {**info, "rss_kb": vm_rss_kb()}}), flush=True)
    first = True
    for line in sys.stdin:
        command = line.strip()
        if command == "quit":
            break
        if command != "run":
            raise SystemExit(f"worker: unknown command {command!r}")
        cpu0, t0 = _cpu_seconds(), time.perf_counter()
        outputs = run_once(path.read_bytes())
        ms = (time.perf_counter() - t0) * 1000
        cpu_ms = (_cpu_seconds() - cpu0) * 1000
        answer: dict = {"ms": ms, "cpu_ms": cpu_ms}
        if first:
            # Shapes and sizes once, so the parent can check that everyone did the same work.
            answer["outputs"] = [
                {"name": n, "format": f, "width": w, "height": h, "bytes": len(b)}
                for n, f, w, h, b in outputs
            ]
            first = False
        print(json.dumps(answer), flush=True)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"maxrss_kb": usage.ru_maxrss}), flush=True)

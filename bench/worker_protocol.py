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
from collections.abc import Callable, Mapping
from pathlib import Path

# The renditions and encoder settings of imgpipe's defaults (template.yaml): the same work is
# asked of every implementation.
SIZES = (512, 256, 128)
JPEG_QUALITY = 82
WEBP_QUALITY = 80

# One output: (rendition name, format, width, height, encoded bytes).
Output = tuple[str, str, int, int, bytes]


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def vm_rss_kb() -> int:
    return _status_kb("VmRSS:")


def peak_rss_kb() -> int:
    """The larger of this process's peak RSS and its reaped children's.

    This process's is VmHWM, its address space's own high-water mark, which starts afresh at
    exec. Not getrusage's ru_maxrss: exec folds the old address space's high-water mark into
    it, and a worker spawned by vfork (Python's default) shares its parent's until exec, so a
    bench parent that had just generated a 97 MB PNG showed ~526 MB for every worker. Children
    forked by the worker (imgpipe's decoding child) start from the worker's pages, so theirs
    is a fair peak of the two together."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(_status_kb("VmHWM:"), children)


def cpu_seconds(live_children: Callable[[], float] | None = None) -> float:
    """User + system time of this process, of the children it reaped and of the live children
    `live_children` reports (imgpipe decodes uploads in a forked child it keeps for many uploads:
    its own process time alone would miss the work, and rusage counts a child only once reaped)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    live = live_children() if live_children else 0.0
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime + live


def serve(
    path: Path,
    run_once: Callable[[bytes], list[Output]],
    info: Mapping[str, object],
    live_children: Callable[[], float] | None = None,
    reap_children: Callable[[], None] | None = None,
) -> None:
    """Answer the parent's `run` requests until `quit`; `run_once` does one iteration's work.
    `live_children` is the CPU time of children still running, `reap_children` ends them before
    the peak RSS is read (so theirs counts)."""
    print(json.dumps({"ready": {**info, "rss_kb": vm_rss_kb()}}), flush=True)
    first = True
    for line in sys.stdin:
        command = line.strip()
        if command == "quit":
            break
        if command != "run":
            raise SystemExit(f"worker: unknown command {command!r}")
        cpu0, t0 = cpu_seconds(live_children), time.perf_counter()
        outputs = run_once(path.read_bytes())
        ms = (time.perf_counter() - t0) * 1000
        cpu_ms = (cpu_seconds(live_children) - cpu0) * 1000
        answer: dict[str, object] = {"ms": ms, "cpu_ms": cpu_ms}
        if first:
            # Shapes and sizes once, so the parent can check that everyone did the same work.
            answer["outputs"] = [
                {"name": n, "format": f, "width": w, "height": h, "bytes": len(b)}
                for n, f, w, h, b in outputs
            ]
            first = False
        print(json.dumps(answer), flush=True)
    if reap_children:
        reap_children()
    print(json.dumps({"maxrss_kb": peak_rss_kb()}), flush=True)

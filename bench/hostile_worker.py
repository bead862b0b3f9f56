"""One hostile case through `imaging.process()` in its own process.

    hostile_worker.py FILE [--no-prescan --declared WxH]

Run by bench/hostile.py with PYTHONPATH naming the imgpipe tree under test (today's or an older
commit's). Prints one JSON line when warm (imports done, a small image processed, the file read):
its RSS then is the baseline; then one JSON line with the outcome. CPU time counts this process
and its decoding children (the kept one's exact clock before, reaped after); peak RSS is the
larger of this process's VmHWM and its reaped children's high-water marks (worker_protocol's
peak_rss_kb), so `peak - warm` is what the upload cost on top of a warm processor.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

from PIL import Image
from worker_protocol import cpu_seconds, peak_rss_kb, vm_rss_kb

from imgpipe import imaging

# imgpipe's kept decoding child, where the tree under test has one (9b18e1f decodes in-process).
_BOUNDED = getattr(imaging, "bounded", None)
_KEPT_CPU = getattr(_BOUNDED, "kept_child_cpu_seconds", None)
_RETIRE = getattr(_BOUNDED, "retire_kept_child", None)


def main() -> int:
    path = Path(sys.argv[1])
    if "--no-prescan" in sys.argv[2:]:
        # The backstop alone: what an unlisted structure would cost. The pre-scan still reports
        # the header's size (the budget); where it stopped before finding one, the case's own.
        from imgpipe import structure

        scan = structure.scan
        width, height = map(int, sys.argv[sys.argv.index("--declared") + 1].split("x"))

        def no_prescan(data: bytes, fmt: str) -> structure.Verdict:
            return structure.Verdict(size=scan(data, fmt).size or (width, height))

        structure.scan = no_prescan
    options = imaging.Options(max_bytes=1 << 30)
    small = io.BytesIO()
    Image.new("RGB", (640, 480), (10, 200, 30)).save(small, "JPEG")
    imaging.process(small.getvalue(), options)
    data = path.read_bytes()
    warm = vm_rss_kb()
    print(json.dumps({"warm_kb": warm}), flush=True)
    cpu0 = cpu_seconds(_KEPT_CPU)
    try:
        imaging.process(data, options)
        outcome = {"outcome": "accepted", "reason": None, "message": None}
    except imaging.ImageRejected as rejected:
        outcome = {"outcome": "rejected", "reason": rejected.reason, "message": str(rejected)}
    except MemoryError:
        outcome = {"outcome": "MemoryError", "reason": None, "message": None}
    if _RETIRE:
        _RETIRE()  # reaped: its CPU time and peak RSS now count among this process's children
    cpu = cpu_seconds() - cpu0
    print(json.dumps({**outcome, "cpu_s": cpu, "peak_kb": peak_rss_kb(), "warm_kb": warm}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

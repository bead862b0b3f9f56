"""One hostile case through `imaging.process()` in its own process.

    hostile_worker.py FILE [--no-prescan --declared WxH]

Run by bench/hostile.py with PYTHONPATH naming the imgpipe tree under test (today's or an older
commit's). Prints one JSON line when warm (imports done, a small image processed, the file read):
its RSS then is the baseline; then one JSON line with the outcome. CPU time counts this process
and every child it reaped (imgpipe's own decode child included); peak RSS is the larger of this
process's and its children's high-water marks, so `peak - warm` is what the upload cost on top
of a warm processor.
"""

from __future__ import annotations

import io
import json
import resource
import sys
from pathlib import Path

from PIL import Image

from imgpipe import imaging


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


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
    warm = _rss_kb()
    print(json.dumps({"warm_kb": warm}), flush=True)
    cpu0 = _cpu()
    try:
        imaging.process(data, options)
        outcome = {"outcome": "accepted", "reason": None, "message": None}
    except imaging.ImageRejected as rejected:
        outcome = {"outcome": "rejected", "reason": rejected.reason, "message": str(rejected)}
    except MemoryError:
        outcome = {"outcome": "MemoryError", "reason": None, "message": None}
    cpu = _cpu() - cpu0
    peak = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    )
    print(json.dumps({**outcome, "cpu_s": cpu, "peak_kb": peak, "warm_kb": warm}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

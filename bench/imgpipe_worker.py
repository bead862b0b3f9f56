"""imgpipe worker: `.venv/bin/python bench/imgpipe_worker.py IMAGE` — the processor's own core."""

from __future__ import annotations

import sys
from pathlib import Path

import PIL
from worker_protocol import JPEG_QUALITY, SIZES, WEBP_QUALITY, Output, serve

from imgpipe import imaging
from imgpipe.imaging import Options, process

# From strings: every tree the bench compares (today's, main at 9b18e1f) parses them the same way.
OPTIONS = Options.from_settings(
    renditions=",".join(f"{s}x{s}:cover" for s in SIZES),
    formats="jpeg,webp",
    jpeg_quality=JPEG_QUALITY,
    webp_quality=WEBP_QUALITY,
    # The bench measures processing, not the upload cap: a 48 MP camera JPEG or a 12 MP PNG
    # with alpha is larger than the default 25 MiB, which S3's POST policy enforces anyway.
    max_bytes=1 << 30,
)


def run_once(data: bytes) -> list[Output]:
    result = process(data, OPTIONS)
    return [(o.rendition.name, o.format, o.width, o.height, o.data) for o in result.outputs]


if __name__ == "__main__":
    # Which imaging.py ran: the tree's, or the patched copy's (imgpipe+patch).
    info = {
        "impl": "imgpipe",
        "pillow": PIL.__version__,
        "imaging": imaging.__file__,
        "rendition_threads": getattr(imaging, "rendition_threads", lambda: 1)(),
    }
    # imgpipe's kept decoding child: its CPU while it lives, reaped before the peak RSS is read
    # (trees older than it have none).
    bounded = getattr(imaging, "bounded", None)
    serve(
        Path(sys.argv[1]),
        run_once,
        info,
        live_children=getattr(bounded, "kept_child_cpu_seconds", None),
        reap_children=getattr(bounded, "retire_kept_child", None),
    )

"""pyvips reference worker: `bench/.venv/bin/python bench/pyvips_worker.py IMAGE`.

libvips used as its authors recommend: `thumbnail_buffer` shrinks on load (JPEG DCT scaling,
WebP scaled decode) and auto-rotates; the largest rendition is materialised once and the
smaller ones derived from it, as imgpipe does.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyvips
from worker_protocol import JPEG_QUALITY, SIZES, WEBP_QUALITY, Output, serve

# libvips caches operations by their arguments: without this, iterations 2..N would be
# served from the cache instead of being measured.
pyvips.cache_set_max(0)


def _encode(img: pyvips.Image, name: str, out: list[Output]) -> None:
    # JPEG has no alpha: flatten onto white, as imgpipe and the sharp worker do.
    opaque = img.flatten(background=[255, 255, 255]) if img.hasalpha() else img
    out.append((name, "jpeg", img.width, img.height, opaque.jpegsave_buffer(Q=JPEG_QUALITY, keep="none")))
    out.append(
        (name, "webp", img.width, img.height, img.webpsave_buffer(Q=WEBP_QUALITY, effort=4, keep="none"))
    )


def run_once(data: bytes) -> list[Output]:
    out: list[Output] = []
    largest = SIZES[0]
    # copy_memory: libvips is lazy, and two encoders would otherwise decode the source twice.
    base = pyvips.Image.thumbnail_buffer(data, largest, height=largest, crop="centre").copy_memory()
    _encode(base, f"{largest}x{largest}", out)
    for size in SIZES[1:]:
        img = base.thumbnail_image(size, height=size, crop="centre").copy_memory()
        _encode(img, f"{size}x{size}", out)
    return out


if __name__ == "__main__":
    info = {
        "impl": "pyvips",
        "pyvips": pyvips.__version__,
        "libvips": f"{pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}",
        "threads": pyvips.concurrency_get(),
    }
    serve(Path(sys.argv[1]), run_once, info)

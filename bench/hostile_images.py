"""Hostile inputs: small files whose *structure* makes decoding cost far more than their pixels.

Every case is a well-formed-enough file of an accepted format (it passes the byte cap, the
sniffer and the pixel cap) that costs CPU or memory out of proportion to its pixel count in
Pillow or the codec libraries under it. The issue's two examples are here (repeated
progressive scans, a flood of empty JPEG segments); the rest were found by reading what
Pillow's plugins and the codec libraries do per marker, chunk, block and frame.

Nothing is committed: `build(case, size)` makes the bytes (seeded, deterministic), and

    .venv/bin/python bench/hostile_images.py OUTDIR [--size BYTES]

writes them all to a folder to look at. `size` is the flood's byte budget: the bench uses
just under the 25 MiB upload cap, the tests a small fraction of it (still far over every limit).
"""

from __future__ import annotations

import argparse
import io
import struct
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

# Bump when a builder changes, so cached files (bench/hostile.py) are never reused under a new meaning.
GENERATOR_VERSION = 1
# Just under the processor's default 25 MiB upload cap (MaxUploadBytes): the worst a user can send.
FULL_SIZE = 24 * 1024 * 1024


@dataclass(frozen=True)
class Case:
    name: str
    format: str
    what: str  # the structure, for tables
    builder: Callable[[int], bytes]
    # The verdict imgpipe must reach: "too_complex" for structures refused by the pre-scan,
    # another reason where Pillow's own guard already answers cheaply, None for a control.
    reason: str | None  # None: a control that must be accepted
    # The pixel size its header declares (what the decode budget is sized from).
    declared: tuple[int, int] = (64, 64)
    # Bytes the issue's own example used, where it named one (the repeated scans: 2 MB).
    default_size: int = FULL_SIZE
    # Smallest flood the tests use that still trips the limit well (tests stay fast).
    test_size: int = 300_000


# --- JPEG -------------------------------------------------------------------------------------


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">HH", marker, len(payload) + 2) + payload


def _jpeg(size: tuple[int, int], *, progressive: bool = False, mode: str = "L") -> bytes:
    im = Image.new(mode, size, 128 if mode == "L" else (120, 130, 140))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=80, progressive=progressive)
    return buf.getvalue()


def _stuff(bits: str) -> bytes:
    bits += "1" * (-len(bits) % 8)  # pad with ones, as JPEG does
    out = bytearray()
    for i in range(0, len(bits), 8):
        byte = int(bits[i : i + 8], 2)
        out.append(byte)
        if byte == 0xFF:
            out.append(0)
    return bytes(out)


def jpeg_repeated_scans(size: int) -> bytes:
    """The issue's 2 MB case: a 12 MP progressive JPEG followed by tens of thousands of AC scans
    that each cover the whole image in ~20 bytes (end-of-band runs of 32,767 blocks). libjpeg
    only warns about the bogus progression and walks every block of the image once per scan."""
    width, height = 4000, 3000
    base = _jpeg((width, height), progressive=True)
    assert base.endswith(b"\xff\xd9")
    blocks = -(-width // 8) * -(-height // 8)
    # An AC table whose only symbol is EOB14 (code "0"): 14 extra bits of ones = a run of 32,767.
    dht = _segment(0xFFC4, bytes([0x11]) + bytes([1] + [0] * 15) + bytes([0xE0]))
    runs = -(-blocks // 32767)
    sos = _segment(0xFFDA, bytes([1, 1, 0x01, 1, 63, 0x00])) + _stuff(("0" + "1" * 14) * runs)
    count = max(1, (size - len(base) - len(dht)) // len(sos))
    return base[:-2] + dht + sos * count + b"\xff\xd9"


def jpeg_empty_segments(size: int) -> bytes:
    """The issue's second case: millions of empty APPn segments before the frame. Pillow keeps
    every one in `applist` (a tuple and a bytes object each): ~0.8 GB inside Image.open."""
    base = _jpeg((64, 64))
    flood = struct.pack(">HH", 0xFFE5, 2) * max(1, (size - len(base)) // 4)
    return base[:2] + flood + base[2:]


def jpeg_fill_bytes(size: int) -> bytes:
    """0xFF fill bytes before a marker are legal padding; Pillow's header parser reads them one
    Python-level byte at a time."""
    base = _jpeg((64, 64))
    return base[:2] + b"\xff" * max(1, size - len(base)) + base[2:]


def _exif_long_array(total: int) -> bytes:
    """A TIFF/EXIF block whose IFD0 holds one LONG tag of `total` bytes (decoded into a tuple
    of Python ints by Pillow: ~40 bytes per 4-byte value)."""
    count = max(1, (total - 26) // 4)
    ifd = struct.pack(">H", 1) + struct.pack(">HHII", 0x0111, 4, count, 26) + struct.pack(">I", 0)
    head = b"MM\x00*" + struct.pack(">I", 8)
    return head + ifd + b"\x01\x02\x03\x04" * count


def jpeg_exif_segments(size: int) -> bytes:
    """Hundreds of 64 KB APP1 Exif segments: Pillow concatenates them (one bytes copy per
    segment, quadratic) into one EXIF block whose only tag then spans the whole file."""
    base = _jpeg((64, 64))
    exif = _exif_long_array(size - len(base) - 1024)
    chunk = 65533 - 6
    segments = b"".join(
        _segment(0xFFE1, b"Exif\x00\x00" + exif[i : i + chunk]) for i in range(0, len(exif), chunk)
    )
    return base[:2] + segments + base[2:]


# --- PNG --------------------------------------------------------------------------------------


def _chunk(cid: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + cid + data + struct.pack(">I", zlib.crc32(cid + data))


def _png(size: tuple[int, int] = (64, 64), **params: object) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (90, 120, 200)).save(buf, "PNG", **params)
    return buf.getvalue()


def _png_insert(before_idat: bytes = b"", after_idat: bytes = b"", base: bytes | None = None) -> bytes:
    base = base or _png()
    idat = base.index(b"IDAT") - 4
    iend = base.index(b"IEND") - 4
    return base[:idat] + before_idat + base[idat:iend] + after_idat + base[iend:]


def png_private_chunks(size: int) -> bytes:
    """Empty private ancillary chunks: each one is read in Python and kept in `private_chunks`,
    before the image data (Image.open) and after it (load_end)."""
    flood = _chunk(b"prVt", b"") * (size // 12 // 2)
    return _png_insert(flood, flood)


def png_text_keys(size: int) -> bytes:
    """tEXt chunks with distinct keys and empty values: Pillow's 64 MB text budget counts only
    the values, so a million keys land in two dicts."""
    chunks = [_chunk(b"tEXt", b"k%07d\x00" % i) for i in range(size // 21)]
    return _png_insert(b"".join(chunks))


def png_empty_idat(size: int) -> bytes:
    """The image data split by millions of empty IDAT chunks: Pillow walks chunk framing in
    Python, one loop turn per chunk."""
    base = _png()
    idat = base.index(b"IDAT") - 4
    return base[:idat] + _chunk(b"IDAT", b"") * (size // 12) + base[idat:]


def png_ztxt_bombs(size: int) -> bytes:
    """zTXt chunks that each inflate to Pillow's 1 MB per-chunk limit from ~1 KB."""
    bomb = zlib.compress(b"\x00" * (1024 * 1024 - 16), 9)
    chunks = [_chunk(b"zTXt", b"k%05d\x00\x00" % i + bomb) for i in range(min(size // len(bomb), 4096))]
    return _png_insert(b"".join(chunks))


def png_iccp_bomb(size: int) -> bytes:
    """An iCCP profile that inflates past Pillow's 1 MB limit (1 KB deflated)."""
    bomb = zlib.compress(b"\x00" * (64 * 1024 * 1024), 9)
    return _png_insert(_chunk(b"iCCP", b"icc\x00\x00" + bomb))


def png_exif_array(size: int) -> bytes:
    """A ~24 MB eXIf chunk whose one tag is a LONG array: read when the orientation is looked up."""
    return _png_insert(_chunk(b"eXIf", _exif_long_array(size - 200)))


def apng_frames(size: int) -> bytes:
    """An APNG with hundreds of thousands of 1x1 frames after frame 0 (fcTL + fdAT each)."""
    base = _png((64, 64))
    frame0 = struct.pack(">IIIIIHHBB", 0, 64, 64, 0, 0, 1, 10, 0, 0)
    tiny = zlib.compress(b"\x00\x01\x02\x03")
    per = 12 + 26 + 12 + 4 + len(tiny)
    count = max(1, (size - len(base)) // per)
    frames = []
    seq = 1
    for _ in range(count):
        frames.append(_chunk(b"fcTL", struct.pack(">IIIIIHHBB", seq, 1, 1, 0, 0, 1, 10, 0, 0)))
        frames.append(_chunk(b"fdAT", struct.pack(">I", seq + 1) + tiny))
        seq += 2
    actl = _chunk(b"acTL", struct.pack(">II", count + 1, 0))
    return _png_insert(actl + _chunk(b"fcTL", frame0), b"".join(frames), base)


# --- GIF --------------------------------------------------------------------------------------


def _gif() -> bytes:
    buf = io.BytesIO()
    Image.new("P", (64, 64), 1).save(buf, "GIF")
    return buf.getvalue()


def _gif_insert(blocks: bytes) -> bytes:
    base = _gif()
    image = base.index(b",", 13)  # the first image descriptor, after the global colour table
    return base[:image] + blocks + base[image:]


def gif_extensions(size: int) -> bytes:
    """Millions of empty graphic-control extensions before the first image: Pillow parses each
    one in Python while seeking frame 0."""
    gce = b"!\xf9\x04\x00\x00\x00\x00\x00"
    return _gif_insert(gce * (size // len(gce)))


def gif_comment_subblocks(size: int) -> bytes:
    """One comment extension made of millions of 1-byte sub-blocks: Pillow keeps each sub-block
    as its own bytes object in a list before joining them."""
    return _gif_insert(b"!\xfe" + b"\x01c" * (size // 2) + b"\x00")


# --- WebP -------------------------------------------------------------------------------------


def _riff(chunks: bytes) -> bytes:
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WEBP" + chunks


def _webp_chunk(fourcc: bytes, data: bytes) -> bytes:
    return fourcc + struct.pack("<I", len(data)) + data + b"\x00" * (len(data) & 1)


def _vp8l(size: tuple[int, int] = (64, 64)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (90, 120, 200)).save(buf, "WEBP", lossless=True)
    data = buf.getvalue()
    assert data[12:16] == b"VP8L"
    return data[12:]


def _vp8x(flags: int, size: tuple[int, int]) -> bytes:
    w, h = size[0] - 1, size[1] - 1
    return _webp_chunk(b"VP8X", bytes([flags, 0, 0, 0]) + w.to_bytes(3, "little") + h.to_bytes(3, "little"))


def webp_frames(size: int) -> bytes:
    """An animated WebP with ~600,000 1x1 frames: libwebp's demuxer indexes every frame when
    Pillow opens the file, though only frame 0 is ever decoded."""
    anim = _webp_chunk(b"ANIM", b"\x00\x00\x00\x00\x00\x00")
    frame_body = _vp8l((1, 1))
    anmf = _webp_chunk(
        b"ANMF", b"\x00" * 6 + b"\x00\x00\x00" + b"\x00\x00\x00" + b"\x0a\x00\x00\x00" + frame_body
    )
    first = _webp_chunk(b"ANMF", b"\x00" * 6 + (63).to_bytes(3, "little") * 2 + b"\x0a\x00\x00\x00" + _vp8l())
    count = max(1, size // len(anmf))
    return _riff(_vp8x(0x02, (64, 64)) + anim + first + anmf * count)


def webp_chunks(size: int) -> bytes:
    """Millions of empty unknown chunks in an extended WebP: kept in the demuxer's chunk list."""
    return _riff(_vp8x(0x00, (64, 64)) + _webp_chunk(b"JUNK", b"") * (size // 8) + _vp8l())


def webp_exif_array(size: int) -> bytes:
    """A ~24 MB EXIF chunk whose one tag is a LONG array."""
    return _riff(_vp8x(0x08, (64, 64)) + _vp8l() + _webp_chunk(b"EXIF", _exif_long_array(size - 200)))


# --- AVIF -------------------------------------------------------------------------------------


def _avif(size: tuple[int, int] = (64, 64), **params: object) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (90, 120, 200)).save(buf, "AVIF", **params)
    return buf.getvalue()


def avif_exif_array(size: int) -> bytes:
    """A ~24 MB Exif item whose one tag is a LONG array: Pillow parses AVIF's EXIF in Image.open."""
    exif = b"Exif\x00\x00" + _exif_long_array(size - 1000)
    return _avif(exif=exif)


def avif_boxes(size: int) -> bytes:
    """Millions of empty top-level boxes after the image (ISO-BMFF framing flood)."""
    return _avif() + struct.pack(">I4s", 8, b"skip") * (size // 8)


TOO = "too_complex"

CASES: tuple[Case, ...] = (
    Case("jpeg-repeated-scans", "jpeg", "progressive scans repeated", jpeg_repeated_scans, TOO,
         (4000, 3000), default_size=2_000_000),
    Case("jpeg-empty-segments", "jpeg", "empty APPn segments", jpeg_empty_segments, TOO),
    Case("jpeg-fill-bytes", "jpeg", "0xFF fill bytes", jpeg_fill_bytes, TOO),
    Case("jpeg-exif-segments", "jpeg", "APP1 Exif segments concatenated", jpeg_exif_segments, TOO),
    Case("png-private-chunks", "png", "empty private chunks", png_private_chunks, TOO),
    Case("png-text-keys", "png", "tEXt chunks, distinct keys", png_text_keys, TOO),
    Case("png-empty-idat", "png", "empty IDAT chunks", png_empty_idat, TOO),
    Case("png-ztxt-bombs", "png", "zTXt inflating 1 MB each", png_ztxt_bombs, TOO),
    Case("png-exif-array", "png", "eXIf with a 24 MB array", png_exif_array, TOO),
    Case("gif-extensions", "gif", "extension blocks before frame 0", gif_extensions, TOO),
    Case("gif-comment-subblocks", "gif", "comment of 1-byte sub-blocks", gif_comment_subblocks, TOO),
    Case("webp-frames", "webp", "animation, 600k frames", webp_frames, TOO, test_size=600_000),
    Case("webp-chunks", "webp", "empty unknown RIFF chunks", webp_chunks, TOO),
    Case("webp-exif-array", "webp", "EXIF chunk with a 24 MB array", webp_exif_array, TOO),
    Case("avif-exif-array", "avif", "Exif item with a 24 MB array", avif_exif_array, TOO),
    # Already answered cheaply by Pillow: a profile past its 1 MB inflate limit is a decode error.
    Case("png-iccp-bomb", "png", "iCCP inflating to 64 MB", png_iccp_bomb, "decode_error",
         default_size=1_000_000),
    # Structures that look hostile but cost nothing (Pillow reads an APNG only to frame 1; libavif
    # skips unknown boxes in C, ~40 ms): accepted, and the pre-scan must not walk them either.
    Case("apng-frames", "png", "APNG, 500k frames", apng_frames, None),
    Case("avif-boxes", "avif", "empty top-level boxes", avif_boxes, None),
)  # fmt: skip
BY_NAME = {case.name: case for case in CASES}


def build(case: Case, size: int | None = None) -> bytes:
    return case.builder(size or case.default_size)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--size", type=int, help="flood byte budget (default: each case's own)")
    args = parser.parse_args(argv)
    args.outdir.mkdir(parents=True, exist_ok=True)
    ext = {"jpeg": "jpg", "png": "png", "gif": "gif", "webp": "webp", "avif": "avif"}
    for case in CASES:
        path = args.outdir / f"{case.name}.{ext[case.format]}"
        path.write_bytes(build(case, args.size))
        print(f"{path}  {path.stat().st_size:,} bytes  {case.what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

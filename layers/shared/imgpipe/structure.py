"""Structure pre-scan: refuse files whose framing would make decoding cost far more than their pixels.

The pixel cap bounds what an honest file of a given size costs; these limits bound what a small
file can make Pillow and the codec libraries do regardless of its pixels - scans, segments,
chunks, blocks, frames and metadata that are each parsed, kept or decoded once more. Each limit
is far above what any encoder we know writes and far below where the cost shows (the numbers are
in the comments, measured with bench/hostile.py on the generated cases of bench/hostile_images.py).

Pure bytes parsing, no Pillow: it runs before any decoder sees the file. Every walk stops at its
limit, so the scan itself costs O(limit), not O(file). Framing that is merely broken (truncated,
a bad length) is not judged here: the scan stops and Pillow decides. What nobody listed is left
to the decode backstop (`imgpipe.bounded`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# JPEG: libjpeg walks every block of the image once per scan, and only warns when scans repeat.
# libjpeg's default progressive script has 10 scans (6 for greyscale), the most elaborate
# encoder scripts ~20; 5 MB of 20-byte end-of-band scans over a 12 MP image held Pillow 90 s.
# 100 scans of a 48 MP image decode in ~1 s (bench/hostile.py).
MAX_JPEG_SCANS = 100
# Segments before the first scan: Pillow keeps each one (a tuple and a bytes object; 6 million
# empty ones were 0.8 GB). Cameras write ~10; a 16 MB ICC profile needs 255 APP2 segments.
MAX_JPEG_HEADER_SEGMENTS = 1024
# Fill (0xFF) and junk bytes between header segments: Pillow reads them one Python-level byte at
# a time (24 MB took 11 s). Encoders write none or a few.
MAX_JPEG_PADDING = 4096
# EXIF: one APP1 segment holds at most 64 KB, and PNG/WebP/AVIF carry the same block. Pillow
# concatenates repeated JPEG Exif segments (a bytes copy per segment) and decodes every tag of
# the block into Python objects (a 24 MB array peaked at ~1 GB).
MAX_EXIF_BYTES = 256 * 1024
# PNG: every chunk but image data is read in Python, before the image (Image.open) and after it
# (load_end); a private one is also kept. Encoders write a handful; 1024 text chunks read in ~5 ms.
MAX_PNG_ANCILLARY_CHUNKS = 1024
# Image-data chunks are framed in Python too (one loop turn each). libpng writes 8 KB IDATs,
# Pillow 64 KB ones: a 48 MP PNG has ~12,000. Allow one per 512 bytes on top of a floor.
PNG_IDAT_FLOOR = 4096
PNG_IDAT_BYTES_EACH = 512
# zTXt/iTXt/iCCP inflate to up to 1 MB each (Pillow's per-chunk limit) from ~1 KB.
MAX_PNG_COMPRESSED_CHUNKS = 16
# GIF: extension blocks and their sub-blocks before frame 0 are parsed in Python while Pillow
# seeks frame 0, and comment sub-blocks are kept one bytes object each (12 million were 1.1 GB).
# Writers put a few extensions (loop count, comment, XMP) there, ~1 KB of sub-blocks.
MAX_GIF_SUBBLOCKS = 4096
# WebP: libwebp's demuxer indexes every chunk and frame when Pillow opens the file.
# Long stickers have a few thousand frames.
MAX_WEBP_FRAMES = 10_000
MAX_WEBP_OTHER_CHUNKS = 64
# AVIF/HEIF (ISO-BMFF): items (tiles of a grid included) and their references are indexed by
# libavif; a 48 MP camera grid is ~200 tiles.
MAX_BMFF_ITEMS = 4096


@dataclass(frozen=True)
class Verdict:
    """What the pre-scan learnt: the declared size when found, and why to refuse (or None)."""

    size: tuple[int, int] | None = None
    problem: str | None = None


def scan(data: bytes, fmt: str) -> Verdict:
    """The structure verdict on `data`, already sniffed as `fmt`."""
    try:
        return _SCANNERS[fmt](data)
    except (struct.error, IndexError, ValueError):
        # Broken framing is Pillow's to judge (truncated or damaged); nothing to refuse here.
        return Verdict()


def _too(what: str, size: tuple[int, int] | None = None) -> Verdict:
    return Verdict(size=size, problem=what)


# --- JPEG -------------------------------------------------------------------------------------

# Markers without a length field.
_STANDALONE = {0x01, *range(0xD0, 0xDA)}
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_PROGRESSIVE_SOF = {0xC2, 0xC6, 0xCA, 0xCE}


def _jpeg(data: bytes) -> Verdict:
    size = None
    multi_scan, components = True, 0  # until a frame header says otherwise
    pos, segments, padding, exif = 2, 0, 0, 0
    end = len(data)
    too_padded = f"The JPEG has more than {MAX_JPEG_PADDING:,} padding bytes between its segments."
    while pos < end:
        if data[pos] != 0xFF:
            # Junk between segments (Pillow skips it byte by byte, like the fill below).
            nxt = data.find(b"\xff", pos)
            skipped = (nxt if nxt >= 0 else end) - pos
            padding += skipped
            pos += skipped
            if padding > MAX_JPEG_PADDING:
                return _too(too_padded, size)
            continue
        run = pos
        while pos < end and data[pos] == 0xFF:
            pos += 1
            if pos - run > MAX_JPEG_PADDING:
                break
        padding += pos - run - 1
        if padding > MAX_JPEG_PADDING:
            return _too(
                f"The JPEG has more than {MAX_JPEG_PADDING:,} padding bytes between its segments.", size
            )
        if pos >= end:
            break
        marker = data[pos]
        pos += 1
        if marker == 0x00 or marker in _STANDALONE:
            continue
        segments += 1
        if segments > MAX_JPEG_HEADER_SEGMENTS:
            return _too(
                f"The JPEG has more than {MAX_JPEG_HEADER_SEGMENTS:,} segments before its image data.", size
            )
        (length,) = struct.unpack_from(">H", data, pos)
        body = data[pos + 2 : pos + length]
        if marker == 0xE1 and body.startswith(b"Exif\x00\x00"):
            exif += len(body)
            if exif > MAX_EXIF_BYTES:
                return _too(f"The JPEG's EXIF metadata is over {MAX_EXIF_BYTES // 1024} KB.", size)
        elif marker in _SOF and size is None and len(body) >= 6:
            height, width, components = struct.unpack_from(">HHB", body, 1)
            size = (width, height)
            multi_scan = marker in _PROGRESSIVE_SOF
        elif marker == 0xDA:
            # Pillow's header parsing ends at the first scan; libjpeg takes over in C. It walks
            # scans again only in progressive mode or when the first scan leaves components out.
            multi_scan = multi_scan or body[:1] != bytes([components])
            break
        pos += length
    if not multi_scan:
        # libjpeg decodes a single interleaved sequential scan and stops: later scans cost nothing.
        return Verdict(size=size)
    # Every scan starts with FFDA; inside entropy-coded data 0xFF is always followed by 00 or a
    # restart marker, so counting FFDA over the file is an upper bound (an EXIF thumbnail's scan
    # counts too). At ~1 GB/s it is kept for the files that need it.
    scans = data.count(b"\xff\xda")
    if scans > MAX_JPEG_SCANS:
        return _too(f"The JPEG has {scans:,} scans; at most {MAX_JPEG_SCANS} are accepted.", size)
    return Verdict(size=size)


# --- PNG --------------------------------------------------------------------------------------

_PNG_DATA = {b"IDAT", b"fdAT"}
_PNG_COMPRESSED = {b"zTXt", b"iCCP"}


def _png(data: bytes) -> Verdict:
    size = None
    pos, end = 8, len(data)
    ancillary = compressed = image_chunks = 0
    max_image_chunks = PNG_IDAT_FLOOR + len(data) // PNG_IDAT_BYTES_EACH
    animated = frame_controls = 0
    while pos + 8 <= end:
        length, cid = struct.unpack_from(">I4s", data, pos)
        body = pos + 8
        pos = body + length + 4
        if cid == b"IEND":
            break
        if cid in _PNG_DATA:
            image_chunks += 1
            if image_chunks > max_image_chunks:
                return _too(
                    f"The PNG's image data is split into more than {max_image_chunks:,} chunks.", size
                )
            continue
        if cid == b"fcTL":
            frame_controls += 1
            if animated and frame_controls > 1 and image_chunks:
                # Pillow reads an APNG only up to frame 1's control chunk; later frames cost nothing.
                break
            continue
        ancillary += 1
        if ancillary > MAX_PNG_ANCILLARY_CHUNKS:
            return _too(f"The PNG has more than {MAX_PNG_ANCILLARY_CHUNKS:,} metadata chunks.", size)
        if cid == b"IHDR" and size is None:
            size = struct.unpack_from(">II", data, body)
        elif cid == b"acTL":
            animated = 1
        elif cid in _PNG_COMPRESSED or (cid == b"iTXt" and _itxt_compressed(data, body, length)):
            compressed += 1
            if compressed > MAX_PNG_COMPRESSED_CHUNKS:
                return _too(
                    f"The PNG has more than {MAX_PNG_COMPRESSED_CHUNKS} compressed metadata chunks.", size
                )
        elif cid == b"eXIf" and length > MAX_EXIF_BYTES:
            return _too(f"The PNG's EXIF metadata is over {MAX_EXIF_BYTES // 1024} KB.", size)
    return Verdict(size=size)


def _itxt_compressed(data: bytes, body: int, length: int) -> bool:
    keyword_end = data.find(b"\x00", body, body + min(length, 80))
    return keyword_end >= 0 and data[keyword_end + 1 : keyword_end + 2] == b"\x01"


# --- GIF --------------------------------------------------------------------------------------


def _gif(data: bytes) -> Verdict:
    width, height, flags = struct.unpack_from("<HHB", data, 6)
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    subblocks = 0
    end = len(data)
    while pos < end:
        introducer = data[pos]
        if introducer != 0x21:
            break  # frame 0's image descriptor (decoded in C), the trailer, or junk for Pillow
        pos += 2  # introducer, label
        while pos < end:
            length = data[pos]
            pos += 1 + length
            if length == 0:
                break
            subblocks += 1
            if subblocks > MAX_GIF_SUBBLOCKS:
                return _too(
                    f"The GIF has more than {MAX_GIF_SUBBLOCKS:,} extension blocks before its first frame.",
                    (width, height),
                )
    return Verdict(size=(width, height))


# --- WebP -------------------------------------------------------------------------------------


def _webp(data: bytes) -> Verdict:
    pos, end = 12, min(len(data), 8 + struct.unpack_from("<I", data, 4)[0])
    size = None
    frames = other = 0
    while pos + 8 <= end:
        fourcc, length = struct.unpack_from("<4sI", data, pos)
        body = pos + 8
        pos = body + length + (length & 1)
        if fourcc == b"ANMF":
            frames += 1
            if frames > MAX_WEBP_FRAMES:
                return _too(f"The animated WebP has more than {MAX_WEBP_FRAMES:,} frames.", size)
            continue
        other += 1
        if other > MAX_WEBP_OTHER_CHUNKS:
            return _too(f"The WebP has more than {MAX_WEBP_OTHER_CHUNKS} chunks.", size)
        if fourcc == b"EXIF" and length > MAX_EXIF_BYTES:
            return _too(f"The WebP's EXIF metadata is over {MAX_EXIF_BYTES // 1024} KB.", size)
        if size is None:
            size = _webp_size(fourcc, data, body)
    return Verdict(size=size)


def _webp_size(fourcc: bytes, data: bytes, body: int) -> tuple[int, int] | None:
    if fourcc == b"VP8X":
        width = int.from_bytes(data[body + 4 : body + 7], "little") + 1
        height = int.from_bytes(data[body + 7 : body + 10], "little") + 1
        return width, height
    if fourcc == b"VP8L":
        bits = int.from_bytes(data[body + 1 : body + 5], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if fourcc == b"VP8 ":
        width, height = struct.unpack_from("<HH", data, body + 6)
        return width & 0x3FFF, height & 0x3FFF
    return None


# --- AVIF (ISO-BMFF) --------------------------------------------------------------------------

# Boxes that only hold other boxes, on the way to the metadata.
_BMFF_TOP_BOXES_WALKED = 64


def _boxes(data: bytes, pos: int, end: int, limit: int) -> list[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of the boxes in data[pos:end], at most `limit` of them."""
    found: list[tuple[bytes, int, int]] = []
    while pos + 8 <= end and len(found) < limit:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            (size,) = struct.unpack_from(">Q", data, pos + 8)
            header = 16
        elif size == 0:
            size = end - pos
        if size < header:
            break
        found.append((kind, pos + header, min(pos + size, end)))
        pos += size
    return found


def _avif(data: bytes) -> Verdict:
    # Top-level boxes past the first few are skipped by libavif in C (a 24 MB flood of them
    # cost 40 ms): only the metadata box is read here.
    for kind, start, stop in _boxes(data, 0, len(data), _BMFF_TOP_BOXES_WALKED):
        if kind == b"meta":
            return _avif_meta(data, start + 4, stop)  # full box: version and flags first
    return Verdict()


def _avif_meta(data: bytes, start: int, stop: int) -> Verdict:
    children = {kind: (s, e) for kind, s, e in _boxes(data, start, stop, 64)}
    size = _largest_ispe(data, *children[b"iprp"]) if b"iprp" in children else None
    exif_items: set[int] = set()
    if b"iinf" in children:
        s, e = children[b"iinf"]
        version = data[s]
        count, s = (
            (struct.unpack_from(">H", data, s + 4)[0], s + 6)
            if version == 0
            else (struct.unpack_from(">I", data, s + 4)[0], s + 8)
        )
        if count > MAX_BMFF_ITEMS:
            return _too(f"The image has more than {MAX_BMFF_ITEMS:,} items.", size)
        for kind, i, _ in _boxes(data, s, e, count):
            if kind == b"infe" and data[i] >= 2:
                item = struct.unpack_from(">H" if data[i] == 2 else ">I", data, i + 4)[0]
                type_at = i + (8 if data[i] == 2 else 10)
                if data[type_at : type_at + 4] == b"Exif":
                    exif_items.add(item)
    if b"iref" in children:
        s, e = children[b"iref"]
        wide = data[s] != 0
        references = 0
        for _, i, _end in _boxes(data, s + 4, e, MAX_BMFF_ITEMS):
            references += struct.unpack_from(">H", data, i + (4 if wide else 2))[0]
            if references > MAX_BMFF_ITEMS:
                return _too(f"The image has more than {MAX_BMFF_ITEMS:,} item references.", size)
    if exif_items and b"iloc" in children:
        for item, length in _iloc_lengths(data, *children[b"iloc"]):
            if item in exif_items and length > MAX_EXIF_BYTES:
                return _too(f"The image's EXIF metadata is over {MAX_EXIF_BYTES // 1024} KB.", size)
    return Verdict(size=size)


def _largest_ispe(data: bytes, start: int, stop: int) -> tuple[int, int] | None:
    """The largest image spatial extent among the item properties (a grid's is its whole size)."""
    sizes: list[tuple[int, int]] = [
        struct.unpack_from(">II", data, s + 4)
        for kind, ps, pe in _boxes(data, start, stop, 16)
        if kind == b"ipco"
        for kind2, s, _ in _boxes(data, ps, pe, MAX_BMFF_ITEMS)
        if kind2 == b"ispe"
    ]
    return max(sizes, key=lambda wh: wh[0] * wh[1]) if sizes else None


def _iloc_lengths(data: bytes, start: int, stop: int) -> list[tuple[int, int]]:
    """(item id, total extent length) from an ItemLocationBox."""
    version = data[start]
    pos = start + 4
    sizes = data[pos] << 8 | data[pos + 1]
    offset_size, length_size, base_size = sizes >> 12, (sizes >> 8) & 15, (sizes >> 4) & 15
    index_size = sizes & 15 if version in (1, 2) else 0
    pos += 2
    wide = version == 2
    count = struct.unpack_from(">I" if wide else ">H", data, pos)[0]
    pos += 4 if wide else 2
    out = []
    for _ in range(min(count, MAX_BMFF_ITEMS)):
        item = struct.unpack_from(">I" if wide else ">H", data, pos)[0]
        pos += 4 if wide else 2
        if version in (1, 2):
            pos += 2  # construction method
        pos += 2 + base_size  # data reference index, base offset
        (extents,) = struct.unpack_from(">H", data, pos)
        pos += 2
        total = 0
        for _ in range(extents):
            pos += index_size + offset_size
            total += int.from_bytes(data[pos : pos + length_size], "big")
            pos += length_size
        out.append((item, total))
    return out


_SCANNERS = {"jpeg": _jpeg, "png": _png, "gif": _gif, "webp": _webp, "avif": _avif}

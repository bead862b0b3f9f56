"""Images made on the spot for the demo and the end-to-end tests (nothing binary in the repo)."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

EXIF_ORIENTATION = 0x0112

# What ImageOps.exif_transpose does for each orientation, undone: applying this to the
# displayed image gives the pixels a camera would store under that tag.
STORE_AS = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}

WARM = (200, 60, 40)
COOL = (40, 70, 200)


def photo_jpeg(width: int = 3000, height: int = 4000, *, orientation: int = 6, quality: int = 90) -> bytes:
    """A photo-like JPEG that *displays* as `width` x `height`: smooth gradients under
    sensor-like noise (so it compresses like a photo, ~4 MB at 12 MP), warm in its upper
    half and cool in its lower half, stored rotated under an EXIF Orientation tag — a
    rendition that ignored the tag would not be warm on top.
    """
    if orientation not in STORE_AS:
        raise ValueError(f"EXIF orientation must be 1-8, got {orientation}")
    size = (width, height)
    shade = Image.merge(
        "RGB",
        (
            Image.linear_gradient("L").rotate(90).resize(size),
            Image.linear_gradient("L").resize(size),
            Image.radial_gradient("L").resize(size),
        ),
    )
    halves = Image.new("RGB", size, COOL)
    halves.paste(WARM, (0, 0, width, height // 2))
    image = Image.blend(halves, shade, 0.2)
    noise = Image.effect_noise(size, 40).convert("RGB")
    image = Image.blend(image, noise, 0.15)
    transpose = STORE_AS[orientation]
    if transpose is not None:
        image = image.transpose(transpose)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, exif=exif)
    return out.getvalue()


def with_comment(jpeg: bytes, text: str) -> bytes:
    """The same JPEG with a comment (COM) segment after its SOI marker: other bytes, same image."""
    payload = text.encode()
    return jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def is_warm(rgb: tuple[int, ...]) -> bool:
    return rgb[0] > rgb[2] + 40


def is_cool(rgb: tuple[int, ...]) -> bool:
    return rgb[2] > rgb[0] + 40


def png_bomb(width: int = 20_000, height: int = 20_000) -> bytes:
    """A valid 1-bit PNG of `width` x `height` black pixels in a few dozen KB: 400 MP by
    default, which must be refused from its header, before any decoding."""
    row = b"\x00" + bytes((width + 7) // 8)  # filter byte + packed bits
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def not_an_image() -> bytes:
    """Text that a browser would label image/png if the file were named *.png."""
    return b"This is a plain text file with an image's name.\n" * 40

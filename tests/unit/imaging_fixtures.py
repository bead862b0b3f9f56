"""Edge-case images for the imaging tests, generated with Pillow at test time.

Each builder returns the bytes of one file named after the case it covers (`FIXTURES`),
so a failing test names the file and `write_all()` can drop them in a folder to look at.
Colour-managed fixtures embed ICC profiles built here byte by byte, so the expected
colours can be computed independently of LittleCMS.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageCms

from imgpipe_local.samples import STORE_AS

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)

# --- orientation ----------------------------------------------------------------------------


def quadrants(width: int = 1200, height: int = 800) -> Image.Image:
    """Upright picture: red top-left, green top-right, blue bottom-left, white bottom-right."""
    im = Image.new("RGB", (width, height), WHITE)
    im.paste(RED, (0, 0, width // 2, height // 2))
    im.paste(GREEN, (width // 2, 0, width, height // 2))
    im.paste(BLUE, (0, height // 2, width // 2, height))
    return im


def orientation(n: int) -> bytes:
    upright = quadrants()
    stored = upright.transpose(STORE_AS[n]) if STORE_AS[n] is not None else upright
    exif = Image.Exif()
    exif[0x0112] = n
    return save(stored, "JPEG", quality=95, exif=exif.tobytes())


# --- hand-built ICC profiles ----------------------------------------------------------------


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz_tag(x: float, y: float, z: float) -> bytes:
    return b"XYZ \0\0\0\0" + _s15(x) + _s15(y) + _s15(z)


def _desc_tag(text: str) -> bytes:
    ascii_text = text.encode() + b"\0"
    return (
        b"desc\0\0\0\0"
        + struct.pack(">I", len(ascii_text))
        + ascii_text
        + b"\0" * 8  # no Unicode description
        + b"\0\0\0"  # no ScriptCode
        + b"\0" * 67
    )


def _icc(device_class: bytes, colour_space: bytes, pcs: bytes, tags: dict[bytes, bytes]) -> bytes:
    """An ICC v2.1 profile with `tags` (signature -> tag data)."""
    tags = {b"desc": _desc_tag("imgpipe test profile"), b"cprt": b"text\0\0\0\0public domain\0", **tags}
    table_size = 4 + 12 * len(tags)
    offset = 128 + table_size
    table, body = struct.pack(">I", len(tags)), b""
    for sig, data in tags.items():
        data += b"\0" * (-len(data) % 4)
        table += sig + struct.pack(">II", offset + len(body), len(data))
        body += data
    size = 128 + table_size + len(body)
    header = (
        struct.pack(">I", size)
        + b"\0\0\0\0"
        + b"\x02\x10\0\0"
        + device_class
        + colour_space
        + pcs
        + b"\0" * 12  # date
        + b"acsp"
        + b"\0" * 24  # platform, flags, manufacturer, model, attributes
        + b"\0\0\0\0"  # perceptual intent
        + _s15(0.9642)
        + _s15(1.0)
        + _s15(0.8249)
        + b"\0" * 4
        + b"\0" * 16
        + b"\0" * 28
    )
    assert len(header) == 128
    return header + table + body


# Adobe RGB (1998): colorants adapted to D50 as the ICC PCS needs, gamma 563/256.
ADOBE_RGB_GAMMA = 563 / 256
_ADOBE_D50 = {
    b"rXYZ": (0.60974, 0.31111, 0.01947),
    b"gXYZ": (0.20528, 0.62567, 0.06087),
    b"bXYZ": (0.14919, 0.06322, 0.74457),
}


def adobe_rgb_profile() -> bytes:
    curve = b"curv\0\0\0\0" + struct.pack(">IH", 1, round(ADOBE_RGB_GAMMA * 256))
    tags = {sig: _xyz_tag(*xyz) for sig, xyz in _ADOBE_D50.items()}
    tags |= {b"rTRC": curve, b"gTRC": curve, b"bTRC": curve, b"wtpt": _xyz_tag(0.9642, 1.0, 0.8249)}
    return _icc(b"mntr", b"RGB ", b"XYZ ", tags)


def adobe_rgb_to_srgb(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """The textbook conversion (both spaces are D65, so no adaptation): what lcms should give."""
    linear = [(c / 255) ** ADOBE_RGB_GAMMA for c in rgb]
    to_xyz = (
        (0.5767309, 0.1855540, 0.1881852),
        (0.2973769, 0.6273491, 0.0752741),
        (0.0270343, 0.0706872, 0.9911085),
    )
    to_srgb = (
        (3.2404542, -1.5371385, -0.4985314),
        (-0.9692660, 1.8760108, 0.0415560),
        (0.0556434, -0.2040259, 1.0572252),
    )
    xyz = [sum(m * c for m, c in zip(row, linear, strict=True)) for row in to_xyz]
    out = [sum(m * c for m, c in zip(row, xyz, strict=True)) for row in to_srgb]

    def encode(v: float) -> int:
        v = min(max(v, 0.0), 1.0)
        v = 12.92 * v if v <= 0.0031308 else 1.055 * v ** (1 / 2.4) - 0.055
        return round(v * 255)

    return encode(out[0]), encode(out[1]), encode(out[2])


def _ink_to_rgb(c: int, m: int, y: int, k: int) -> tuple[int, int, int]:
    """The deliberately unusual press this profile describes: each ink removes a *different*
    primary than real inks do, so obeying the profile and ignoring it give different colours."""
    return (255 * (1 - m) * (1 - k), 255 * (1 - y) * (1 - k), 255 * (1 - c) * (1 - k))


def odd_cmyk_profile() -> bytes:
    """A CMYK 'prtr' profile with a lut8 A2B0 (2-point grid per ink) mapping to Lab."""
    corners = [(c, m, y, k) for c in (0, 1) for m in (0, 1) for y in (0, 1) for k in (0, 1)]
    rgb = Image.new("RGB", (len(corners), 1))
    rgb.putdata([_ink_to_rgb(*corner) for corner in corners])
    # Pillow's LAB mode stores a*/b* as signed bytes; lut8 wants them offset by 128.
    lab = ImageCms.profileToProfile(
        rgb, ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), outputMode="LAB"
    )
    clut = bytes(v ^ 0x80 if i % 3 else v for i, v in enumerate(lab.tobytes()))
    identity = bytes(range(256))
    matrix = b"".join(_s15(v) for v in (1, 0, 0, 0, 1, 0, 0, 0, 1))
    lut = b"mft1\0\0\0\0" + bytes([4, 3, 2, 0]) + matrix + identity * 4 + clut + identity * 3
    return _icc(b"prtr", b"CMYK", b"Lab ", {b"A2B0": lut, b"wtpt": _xyz_tag(0.9642, 1.0, 0.8249)})


# CMYK patches (left to right) and what they should become.
CMYK_PATCHES = [(255, 0, 0, 0), (0, 255, 0, 0), (0, 0, 0, 255), (0, 0, 0, 0)]


def cmyk_image() -> Image.Image:
    im = Image.new("CMYK", (400, 100))
    for i, patch in enumerate(CMYK_PATCHES):
        im.paste(patch, (i * 100, 0, i * 100 + 100, 100))
    return im


def cmyk_with_icc() -> bytes:
    return save(cmyk_image(), "JPEG", quality=95, icc_profile=odd_cmyk_profile())


def adobe_cmyk() -> bytes:
    # Pillow writes CMYK JPEGs the way Photoshop does: inverted, with an Adobe APP14 marker.
    return save(cmyk_image(), "JPEG", quality=95)


ADOBE_RGB_SAMPLE = (90, 160, 70)


def rgb_with_adobe_rgb_icc() -> bytes:
    return save(Image.new("RGB", (64, 64), ADOBE_RGB_SAMPLE), "PNG", icc_profile=adobe_rgb_profile())


# --- modes ----------------------------------------------------------------------------------


def sixteen_bit() -> bytes:
    """Greyscale 16-bit: left half 0x8080 (mid grey), right half 0xFFFF (white)."""
    im = Image.new("I;16", (64, 64), 0x8080)
    im.paste(0xFFFF, (32, 0, 64, 64))
    data = save(im, "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I;16")
    return data


def palette_transparency() -> bytes:
    """Palette image, left half transparent (tRNS), right half red."""
    im = Image.new("P", (64, 64), 0)
    im.putpalette([0, 0, 0, 255, 0, 0])
    im.paste(1, (32, 0, 64, 64))
    return save(im, "PNG", transparency=0)


def one_bit() -> bytes:
    im = Image.new("1", (64, 64), 0)
    im.paste(1, (32, 0, 64, 64))
    return save(im, "PNG")


def la() -> bytes:
    """Grey + alpha: left half fully transparent black, right half opaque mid grey."""
    im = Image.new("LA", (64, 64), (0, 0))
    im.paste((128, 255), (32, 0, 64, 64))
    return save(im, "PNG")


def _frames() -> list[Image.Image]:
    return [
        Image.new("RGB", (64, 64), RED),
        Image.new("RGB", (64, 64), BLUE),
        Image.new("RGB", (64, 64), GREEN),
    ]


def animated_gif() -> bytes:
    first, *rest = _frames()
    return save(first, "GIF", save_all=True, append_images=rest, duration=100, loop=0)


def animated_webp() -> bytes:
    first, *rest = _frames()
    return save(first, "WEBP", save_all=True, append_images=rest, duration=100, lossless=True)


def progressive() -> bytes:
    return save(quadrants(640, 480), "JPEG", quality=90, progressive=True)


def truncated() -> bytes:
    data = save(quadrants(640, 480), "JPEG", quality=90)
    return data[: len(data) // 2]


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_claiming(width: int, height: int) -> bytes:
    """A valid-looking PNG header with a tiny IDAT: the shape of a decompression bomb."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + png_chunk(b"IEND", b"")
    )


def bomb() -> bytes:
    return png_claiming(100_000, 100_000)


def wrong_extension() -> bytes:
    return save(quadrants(200, 100), "PNG")


GPS_LATITUDE = (51.0, 30.0, 0.0)
SECRET = b"imgpipe-secret-owner"


def exif_with_gps() -> bytes:
    """A phone-like JPEG: EXIF with GPS and camera owner, XMP, a comment and an ICC profile."""
    exif = Image.Exif()
    exif[0x013B] = SECRET.decode()  # Artist
    exif[0x0112] = 1
    exif.get_ifd(0x8825).update({1: "N", 2: GPS_LATITUDE, 3: "W", 4: (0.0, 7.0, 0.0)})
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF>' + SECRET + b"</rdf:RDF></x:xmpmeta>"
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return save(
        quadrants(300, 200),
        "JPEG",
        exif=exif.tobytes(),
        xmp=xmp,
        comment=SECRET,
        icc_profile=srgb,
        quality=90,
    )


def broken_icc() -> bytes:
    return save(Image.new("RGB", (64, 64), RED), "JPEG", icc_profile=b"this is not a profile" * 10)


def save(im: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


FIXTURES: dict[str, Callable[[], bytes]] = {
    **{f"orientation_{n}.jpg": (lambda n=n: orientation(n)) for n in range(1, 9)},
    "cmyk_with_icc.jpg": cmyk_with_icc,
    "adobe_cmyk_inverted.jpg": adobe_cmyk,
    "rgb_with_adobe_rgb_icc.png": rgb_with_adobe_rgb_icc,
    "16bit.png": sixteen_bit,
    "palette_transparency.png": palette_transparency,
    "1bit.png": one_bit,
    "la.png": la,
    "animated.gif": animated_gif,
    "animated.webp": animated_webp,
    "progressive.jpg": progressive,
    "truncated.jpg": truncated,
    "bomb_100000x100000.png": bomb,
    "wrong_extension.jpg": wrong_extension,
    "exif_with_gps.jpg": exif_with_gps,
    "broken_icc.jpg": broken_icc,
    "text.txt": lambda: b"just some text, not an image\n",
    "empty.jpg": lambda: b"",
    "drawing.svg": lambda: (
        b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'
    ),
    "scan.tiff": lambda: save(quadrants(64, 64), "TIFF"),
    "icon.bmp": lambda: save(quadrants(64, 64), "BMP"),
    "layers.psd": lambda: b"8BPS\x00\x01" + b"\x00" * 6 + struct.pack(">HIIHH", 3, 64, 64, 8, 3),
    "iphone.heic": lambda: struct.pack(">I", 24) + b"ftypheic\x00\x00\x00\x00mif1heic",
}


def write_all(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, build in FIXTURES.items():
        paths[name] = folder / name
        paths[name].write_bytes(build())
    return paths


def close_rgb(actual: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 12) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))

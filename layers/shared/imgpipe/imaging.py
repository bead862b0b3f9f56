"""The processing core: untrusted image bytes in, avatar renditions out.

Pure: no AWS, no files, no logging. `process()` either returns a `Result` or raises
`ImageRejected` (a permanent verdict on the input, with a machine `reason`); anything
else that escapes (MemoryError, a bug) is a failure worth a retry and an alarm.

The order of the pipeline is chosen for safety first, then speed:

1. bytes cap, then the real format sniffed from magic numbers (names and Content-Type
   are the uploader's claims, not facts); only allow-listed formats reach a decoder,
   and `Image.open(formats=[that one])` keeps Pillow from guessing another plugin;
2. pixel and side caps from the header, before any pixel is decoded - Pillow's own
   decompression-bomb check is kept as a second line, set to the same limit;
3. JPEGs decode at reduced scale (`draft`), still WebPs straight into one buffer, big
   images are `reduce`d by an integer factor (strip by strip when that needs a
   conversion, so no full-size copy is made);
4. each rendition is resized once (`reducing_gap`) in the stored axes, then oriented and
   converted to sRGB through the ICC profile at its small size; smaller renditions with
   the same crop are derived from the largest; each is encoded once, metadata-free.

Decisions users see:
- outputs are untagged sRGB: browsers and the CSS colour spec treat untagged images as
  sRGB, and an embedded sRGB profile would add ~600 bytes to a 4 KB 128px avatar;
- `cover` renditions are always exactly WxH, upscaling a small source if needed (an avatar
  slot has a fixed size and the browser would upscale anyway); `contain` fits inside WxH
  and never upscales (it keeps the source's size and shape);
- transparency is kept in WebP/AVIF and flattened on white in JPEG;
- animations: only frame 0 is ever decoded, so frame count and animation size cost nothing;
- rejection reasons (`ImageRejected.reason`): empty, too_many_bytes, not_an_image,
  unsupported_format, too_many_pixels, too_complex, truncated, decode_error.

Decode cost is bounded by structure as well as pixels: `imgpipe.structure` refuses files whose
scans, segments, chunks, blocks or frames would cost far more than their pixels before any
decoder runs, and everything from `Image.open` to the last encode runs in a forked child under a
CPU and memory budget sized from the header's pixel count (`imgpipe.bounded`; the child is kept
for many uploads, each under its own budget), so a structure nobody listed ends as
`too_complex` too, not as a hang or an out-of-memory sandbox. Where the function has more than
one vCPU, the renditions are encoded on one thread per vCPU (`rendition_threads`).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import io
import math
import os
import re
import struct
import warnings
from collections.abc import Buffer, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from typing import IO, cast

import PIL
from PIL import ExifTags, Image, ImageCms, features

from imgpipe import bounded, spec, structure, webp_simple
from imgpipe.spec import Rendition, parse_renditions

# The renderer's output revision. Bump it for a change users should get in the avatars already
# stored (orientation, colour, crop, encoding they can see): new renders get new versions (and
# immutable URLs), and avatar.json's `spec.pipeline` makes every stored avatar stale for
# `imgpipe backfill`, which re-renders them. Byte-level changes nobody sees need no bump: a Pillow
# upgrade or a faster path gives new uploads new versions (the fingerprint) and stales nothing.
PIPELINE_VERSION = "2"

AVIF_AVAILABLE = features.check("avif")


@dataclass(frozen=True)
class _Codec:
    name: str
    extension: str
    content_type: str
    pillow_format: str


_CODECS = {
    name: _Codec(name, output.extension, output.content_type, name.upper())
    for name, output in spec.OUTPUT_FORMATS.items()
}
OUTPUT_FORMATS = tuple(name for name in _CODECS if name != "avif" or AVIF_AVAILABLE)

# Input formats we hand to a decoder. AVIF goes through libavif+dav1d bundled in the Pillow
# wheel (no extra dependency); HEIC would need pillow-heif (libheif + libde265) and is
# refused. TIFF, BMP, PSD, SVG, ICO, JPEG 2000... are refused: avatars do not need them and
# every extra decoder is attack surface (most of Pillow's CVEs live in the exotic plugins).
INPUT_FORMATS = tuple(name for name in spec.INPUT_FORMATS if name != "avif" or AVIF_AVAILABLE)
_PILLOW_FORMAT = {"jpeg": "JPEG", "png": "PNG", "gif": "GIF", "webp": "WEBP", "avif": "AVIF"}

# Encoder settings, measured on a photo-like 12 MP camera JPEG's 512/256/128 renditions (CPU
# time, all three): WebP method 4 (libwebp's default, sharp's effort 4) 31 ms / 49.0 KB;
# method 3 the same; method 2 14 ms but +5% bytes (-0.08 dB); method 0 8 ms, +21%; method 6
# 71 ms, -8%. Bytes are paid on every view and CPU once per upload, so 4 it stays.
# JPEG: progressive+optimize 5 ms, baseline+optimize (sharp's default) 2 ms but +2.5% bytes.
# AVIF at quality 50, speed 8 matches JPEG q82's PSNR at 21 KiB (JPEG 47 KiB) for 33 ms;
# speed 6 saves another 3% for 5x the time, so 8 it is.
WEBP_METHOD = 4
AVIF_SPEED = 8

# Renditions are resized from an image at least this many times larger (when the source
# allows): `reduce` is a box filter that aliases a little and the final Lanczos pass cleans
# that up - libvips' thumbnail leaves the same factor of 2 after its shrink. (JPEG's scaled
# IDCT filters better and gets no headroom, see JPEG_DRAFT_GAP.)
REDUCING_GAP = 2.0
# sharp's default (fastShrinkOnLoad) decodes JPEGs with no such headroom: the scaled IDCT is a
# better low-pass than a box filter. Measured on the bench's photo-like JPEGs (sensor noise
# included), 512px cover rendition against one Lanczos-resized from the full decode: 45.8 dB
# from 12 MP (1/4 decode; 51.3 dB with the 2x headroom), 39.2 dB from 2 MP (1/2 decode) - while
# JPEG q82 itself is 28-30 dB from that reference, so the loss is far below the encoder's.
# Saves ~25-50% of the time from 12 MP up; periodic detail near the pixel pitch (fabric, zone
# plates) can show a little moire.
JPEG_DRAFT_GAP = 1.0

PLACEHOLDER_SIDE = 16
PLACEHOLDER_MAX_BYTES = 1024

_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_AXES = {5, 6, 7, 8}

# Metadata keys Pillow reports when an encoded output carries something we meant to strip.
_METADATA_KEYS = ("exif", "icc_profile", "xmp", "XML:com.adobe.xmp", "comment", "photoshop", "adobe")

# What Pillow's plugins raise on malformed input. Anything else (MemoryError, TypeError from
# our own code...) propagates: it is not a verdict on the image.
_BAD_DATA_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
)


class ImageRejected(ValueError):
    """A permanent verdict on the input: retrying will not help."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    def __reduce__(self) -> tuple[type[ImageRejected], tuple[str, str]]:
        # Raised in the decoding child and pickled back to the parent with both arguments.
        return type(self), (self.reason, str(self))


def parse_formats(text: str | Iterable[str]) -> tuple[str, ...]:
    """'jpeg,webp' -> ('jpeg', 'webp') (imgpipe.spec's grammar), each one this Pillow can encode."""
    formats = spec.parse_formats(text) if isinstance(text, str) else spec.check_formats(text)
    for name in formats:
        if name not in OUTPUT_FORMATS:
            available = ", ".join(OUTPUT_FORMATS)
            raise ValueError(f"output format {name!r} is not one this Pillow encodes: {available}")
    return formats


@dataclass(frozen=True)
class Options:
    renditions: tuple[Rendition, ...] = field(
        default_factory=lambda: parse_renditions(spec.DEFAULT_RENDITIONS)
    )
    formats: tuple[str, ...] = field(default_factory=lambda: spec.parse_formats(spec.DEFAULT_OUTPUT_FORMATS))
    jpeg_quality: int = spec.DEFAULT_JPEG_QUALITY
    webp_quality: int = spec.DEFAULT_WEBP_QUALITY
    max_bytes: int = spec.DEFAULT_MAX_UPLOAD_BYTES
    max_pixels: int = spec.DEFAULT_MAX_IMAGE_PIXELS
    # Beyond the pixel cap: a 50,000 x 1000 strip is "only" 50 MP but no avatar.
    max_side: int = 20_000
    avif_quality: int = 50

    def __post_init__(self) -> None:
        # Normalised here so a string spec can never reach the encoders unvalidated.
        if isinstance(self.renditions, str):
            object.__setattr__(self, "renditions", parse_renditions(self.renditions))
        object.__setattr__(self, "renditions", spec.check_renditions(self.renditions))
        object.__setattr__(self, "formats", parse_formats(self.formats))
        for name in ("jpeg_quality", "webp_quality", "avif_quality"):
            value = getattr(self, name)
            if not 1 <= value <= 100:
                raise ValueError(f"{name} must be in 1..100, got {value}")
        for name in ("max_bytes", "max_pixels", "max_side"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")

    @classmethod
    def from_settings(
        cls,
        *,
        renditions: str = spec.DEFAULT_RENDITIONS,
        formats: str | Iterable[str] = spec.DEFAULT_OUTPUT_FORMATS,
        **numbers: int,
    ) -> Options:
        """Options from configuration strings (env vars), e.g. RENDITIONS and OUTPUT_FORMATS."""
        return cls(renditions=parse_renditions(renditions), formats=parse_formats(formats), **numbers)

    def fingerprint(self) -> str:
        """Everything that changes output bytes; limits are left out (they only accept/reject)."""
        renditions = spec.format_renditions(self.renditions)
        return (
            f"pipeline={PIPELINE_VERSION};pillow={PIL.__version__};renditions={renditions};"
            f"formats={','.join(self.formats)};jpeg={self.jpeg_quality};webp={self.webp_quality};"
            f"avif={self.avif_quality}"
        )


@dataclass(frozen=True)
class Output:
    rendition: Rendition
    format: str
    extension: str
    content_type: str
    width: int
    height: int
    data: bytes = field(repr=False)

    @property
    def filename(self) -> str:
        return f"{self.rendition.name}.{self.extension}"


@dataclass(frozen=True)
class Result:
    outputs: tuple[Output, ...]
    version: str
    source_format: str
    source_width: int
    source_height: int
    placeholder: str
    # Things worth a log line that did not stop processing (e.g. an unusable ICC profile).
    notes: tuple[str, ...] = ()


def version_of(data: bytes | memoryview, options: Options) -> str:
    digest = hashlib.sha256(data)
    digest.update(b"\0" + options.fingerprint().encode())
    return digest.hexdigest()[:16]


# --- sniffing -------------------------------------------------------------------------------

# ISO-BMFF brands: AVIF is accepted, the HEIF family is named in the rejection.
_AVIF_BRANDS = {b"avif", b"avis"}
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}

_REFUSED_MAGIC = (
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "BigTIFF"),
    (b"MM\x00+", "BigTIFF"),
    (b"BM", "BMP"),
    (b"8BPS", "PSD"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"\x00\x00\x02\x00", "CUR"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"),
    (b"DDS ", "DDS"),
    (b"%!PS", "EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),
    (b"%PDF", "PDF"),
    (b"icns", "ICNS"),
    (b"qoif", "QOI"),
    (b"\x76\x2f\x31\x01", "OpenEXR"),
    (b"#?RADIANCE", "HDR"),
    (b"SIMPLE  =", "FITS"),
    (b"gimp xcf", "XCF"),
)
_SVG = re.compile(rb"^\s*(<\?xml[^>]*>\s*)?(<!--.*?-->\s*)*(<!DOCTYPE\s+svg|<svg)", re.S | re.I)


def sniff(data: bytes) -> str:
    """The allow-listed format `data` really is, or ImageRejected saying what it is not."""
    if not data:
        raise ImageRejected("empty", "The file is empty.")
    head = data[:64]
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp":
        box_size = int.from_bytes(head[:4], "big")
        brands = {head[8:12]} | {head[i : i + 4] for i in range(16, min(max(box_size, 16), len(head)) - 3, 4)}
        if brands & _AVIF_BRANDS:
            if AVIF_AVAILABLE:
                return "avif"
            raise _unsupported("AVIF")
        if brands & _HEIF_BRANDS:
            raise _unsupported("HEIC/HEIF")
    for magic, name in _REFUSED_MAGIC:
        if head.startswith(magic):
            raise _unsupported(name)
    if _SVG.match(data[:4096]):
        raise _unsupported("SVG")
    raise ImageRejected("not_an_image", "The file is not an image.")


def _unsupported(name: str) -> ImageRejected:
    accepted = ", ".join(f.upper() for f in INPUT_FORMATS)
    return ImageRejected("unsupported_format", f"{name} images are not accepted; use {accepted}.")


# --- decoding -------------------------------------------------------------------------------


def _needed_size(rendition: Rendition, width: int, height: int) -> tuple[int, int]:
    """Size the (oriented) source must be scaled to for `rendition`: the scale that fills it
    (cover) or fits in it without upscaling (contain)."""
    if rendition.fit == "cover":
        scale = max(rendition.width / width, rendition.height / height)
    else:
        scale = min(rendition.width / width, rendition.height / height, 1.0)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _orientation(im: Image.Image) -> int:
    # A broken EXIF block is common in the wild and not worth rejecting a photo for.
    try:
        value = im.getexif().get(ExifTags.Base.Orientation, 1)
    except _BAD_DATA_ERRORS:
        return 1
    return value if isinstance(value, int) and value in _ORIENTATION_TRANSPOSE else 1


def _classify(exc: BaseException) -> ImageRejected:
    if isinstance(exc, Image.DecompressionBombError | Image.DecompressionBombWarning):
        return ImageRejected("too_many_pixels", "The image has too many pixels.")
    text = str(exc).lower()
    if "truncated" in text or isinstance(exc, EOFError):
        return ImageRejected("truncated", "The image file is incomplete (truncated).")
    return ImageRejected("decode_error", "The image is damaged and cannot be read.")


# Peak memory per pixel differs by decoder (measured at 49 MP: PNG RGBA ~8 bytes, AVIF ~9,
# animated WebP ~16 - libwebp's animation decoder composes into two full RGBA canvases that
# Pillow then copies; a still WebP is ~4, see _webp_still). WebP pixels
# count double against max_pixels so every format stays within the same memory budget
# (50 MP ~ 800 MB at most, for the 1024 MB processor).
_PIXEL_WEIGHT = {"webp": 2}


class _ViewFile(io.RawIOBase):
    """A read-only file over a memoryview, without copying it whole (io.BytesIO copies anything
    but bytes): the decoding child reads the upload straight from the memory its parent shares."""

    def __init__(self, view: memoryview) -> None:
        super().__init__()
        self._view = view
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        end = len(self._view) if size is None or size < 0 else min(self._pos + size, len(self._view))
        chunk = bytes(self._view[self._pos : end])
        self._pos = max(self._pos, end)
        return chunk

    def readinto(self, buffer: Buffer) -> int:
        chunk = self.read(len(memoryview(buffer)))
        memoryview(buffer).cast("B")[: len(chunk)] = chunk
        return len(chunk)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos


def _open_checked(data: bytes | memoryview, fmt: str, options: Options) -> Image.Image:
    file = io.BytesIO(data) if isinstance(data, bytes) else _ViewFile(data)
    im = Image.open(cast(IO[bytes], file), formats=[_PILLOW_FORMAT[fmt]])
    width, height = im.size
    if width < 1 or height < 1:
        raise ImageRejected("decode_error", "The image has no pixels.")
    max_pixels = options.max_pixels // _PIXEL_WEIGHT.get(fmt, 1)
    if width * height > max_pixels or max(width, height) > options.max_side:
        raise ImageRejected(
            "too_many_pixels",
            f"The image is {width}x{height}; at most {max_pixels / 1_000_000:g} megapixels "
            f"and {options.max_side} pixels a side are accepted for {fmt.upper()}.",
        )
    return im


def _to_resizable(im: Image.Image) -> Image.Image:
    """A mode `reduce`, `resize` and ImageCms all handle, with alpha only if there is any."""
    mode = im.mode
    if mode in ("RGB", "RGBA", "L", "LA", "CMYK"):
        return im
    if mode == "1":
        return im.convert("L")
    if mode in ("P", "PA"):
        return im.convert("RGBA" if mode == "PA" or im.has_transparency_data else "RGB")
    if mode.startswith("I;16") or mode == "I":
        # convert("L") would clip 16-bit values at 255 instead of scaling them.
        return im.convert("I").point(lambda v: v * (1 / 257)).convert("L")
    if mode == "F":
        # A single-band image's extrema are one (low, high) pair of numbers.
        _low, high = cast(tuple[float, float], im.getextrema())
        scale = 255.0 if high <= 1.0 else 1.0
        return im.point(lambda v: v * scale).convert("L")
    if mode in ("RGBa", "La"):
        return im.convert(mode.upper())
    if mode == "RGBX":
        return im.convert("RGB")
    return im.convert("RGBA" if "A" in mode else "RGB")


_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _to_srgb(im: Image.Image, icc: bytes | None, notes: list[str]) -> Image.Image:
    """RGB or RGBA in sRGB, through the embedded ICC profile when there is a usable one.

    Applied to renditions, not to the decoded image: a colour transform costs as much as the
    JPEG decode itself on a 3 MP working image (~50 ms) and ~1 ms on a 512px rendition, and
    phone photos (Display P3) almost always carry a profile. Alpha-free results drop alpha.
    """
    alpha = im.getchannel("A") if im.mode in ("RGBA", "LA") else None
    base = im.convert(im.mode[:-1]) if alpha is not None else im  # L or RGB or CMYK
    converted = None
    if icc:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            converted = ImageCms.profileToProfile(
                base, source, _SRGB, renderingIntent=ImageCms.Intent.PERCEPTUAL, outputMode="RGB"
            )
        except (ImageCms.PyCMSError, OSError, ValueError) as exc:
            # A profile that does not parse or does not match the pixels (an RGB profile on a
            # greyscale JPEG happens) is ignored: the pixels are far more likely sRGB-ish than
            # broken, and refusing the photo would be worse.
            note = f"ignored unusable ICC profile: {exc}"
            if note not in notes:
                notes.append(note)
    if converted is None:
        # No profile: the web's assumption is sRGB. CMYK without a profile gets Pillow's naive
        # conversion (Adobe-inverted JPEG CMYK was already un-inverted by the decoder).
        converted = base.convert("RGB")
    if alpha is not None and cast(tuple[int, int], alpha.getextrema())[0] < 255:
        converted.putalpha(alpha)
    return converted


@contextlib.contextmanager
def _bomb_check(max_pixels: int) -> Iterator[None]:
    """Pillow's decompression-bomb check at our cap, its warning band an error, while decoding.

    Our header check is the real gate; this second line catches a plugin that finds a bigger
    frame than its header said. Both are process-wide Pillow/warnings state, restored after:
    process() is meant for one thread at a time (as a Lambda runs it).
    """
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def _decode(
    data: bytes | memoryview, fmt: str, options: Options
) -> tuple[Image.Image, tuple[int, int], bytes | None, int, list[str]]:
    """Frame 0 at the smallest size every rendition can be made from, still in the source's
    colour space (L, LA, RGB, RGBA or CMYK) and stored axes, with its ICC profile and EXIF
    orientation beside it (`_resize` orients the small result rather than the big source),
    and notes on what was done differently from the usual path."""
    notes: list[str] = []
    im = _open_checked(data, fmt, options)
    stored = im.size  # draft() changes im.size
    icc = im.info.get("icc_profile")
    if fmt == "jpeg":
        # JPEG's EXIF comes from its header, so the orientation is known before decoding and
        # the reduced-scale decode can be sized in the right axes.
        orientation = _orientation(im)
        im.draft("RGB", _decode_size(options, stored, orientation, JPEG_DRAFT_GAP))
    # Frame 0 only: nothing seeks further, so an animation's frame count costs nothing. Loaded
    # before reading EXIF for the other formats: PNG's getexif() decodes the image itself,
    # and a decoding error must not be mistaken for a bad EXIF block.
    still = _webp_still(data, im) if fmt == "webp" else None
    if isinstance(still, str):
        notes.append(still)
        still = None
    if still is None:
        im.load()
    if fmt != "jpeg":
        orientation = _orientation(im)
    if still is not None:
        im = still
    swap = orientation in _SWAPS_AXES
    # Reported as displayed (after orientation): that is the picture's shape for its owner.
    displayed = (stored[1], stored[0]) if swap else stored
    want = _decode_size(options, stored, orientation)

    factor = min(im.size[0] // want[0], im.size[1] // want[1])
    work = _reduce(im, factor) if factor >= 2 else _to_resizable(im)
    return work, displayed, icc, orientation, notes


# Output rows per strip of `_reduce`: 16 rows of an 8064-wide RGBA source at factor 5 are a
# 2.6 MB strip (twice: cropped, premultiplied) instead of a 195 MB full-size copy. Measured on
# that 48 MP PNG: peak 502 MB whole-image, 332 MB with 64-row strips, 316 MB with 16 (decoding
# alone peaks at 296 MB), at the same speed.
_REDUCE_STRIP_ROWS = 16


def _reduce(im: Image.Image, factor: int) -> Image.Image:
    """`_to_resizable(im).reduce(factor)`, without a full-size copy of a big decoded image.

    Pillow's reduce() premultiplies RGBA/LA into a full-size copy first, and palette or 16-bit
    sources would be converted at full size: on a 48 MP PNG with alpha that copy was ~195 MB of
    a 502 MB peak. Done strip by strip (strips a multiple of `factor` rows high, so every block
    averages the same pixels as a whole-image reduce) only the strip is copied.
    """
    if im.mode in ("RGB", "L", "CMYK") or im.mode == "F":
        # Nothing to convert or premultiply (and F's scaling needs the whole image's range).
        return _to_resizable(im).reduce(factor)
    width, height = im.size
    step = factor * _REDUCE_STRIP_ROWS
    out: Image.Image | None = None
    for top in range(0, height, step):
        strip = _to_resizable(im.crop((0, top, width, min(top + step, height)))).reduce(factor)
        if out is None:
            out = Image.new(strip.mode, (-(-width // factor), -(-height // factor)))
        out.paste(strip, (0, top // factor))
    assert out is not None  # height >= 1
    return out


def _webp_still(data: bytes | memoryview, im: Image.Image) -> Image.Image | str | None:
    """A still WebP decoded by libwebp's simple API straight into the buffer the returned image
    maps (see imgpipe.webp_simple: 12 MP peaks at 88 MB instead of 215 MB, 16% less CPU).
    Animations keep Pillow's path (None); a libwebp that is not usable, too, saying why (str)."""
    if getattr(im, "n_frames", 1) != 1:
        return None
    decoder = webp_simple.load()
    if isinstance(decoder, str):
        return decoder
    width, height = im.size
    pixels = bytearray(width * height * 4)
    if not decoder.decode_rgba_into(data, pixels, width * 4):
        raise OSError("libwebp could not decode the image (damaged or truncated)")
    rawmode = "RGBA" if im.mode == "RGBA" else "RGBX"
    return Image.frombuffer(rawmode, (width, height), pixels, "raw", rawmode, 0, 1)


def _decode_size(
    options: Options, stored: tuple[int, int], orientation: int, gap: float = REDUCING_GAP
) -> tuple[int, int]:
    """The smallest stored-axes size to decode to: enough for every rendition, with headroom
    for the final Lanczos pass."""
    swap = orientation in _SWAPS_AXES
    oriented = (stored[1], stored[0]) if swap else stored
    needed = [_needed_size(r, *oriented) for r in options.renditions]
    need_w = max(w for w, _ in needed)
    need_h = max(h for _, h in needed)
    if swap:
        need_w, need_h = need_h, need_w
    return max(1, int(need_w * gap)), max(1, int(need_h * gap))


# --- renditions -----------------------------------------------------------------------------


def _crop_key(rendition: Rendition) -> object:
    """Renditions with equal keys show the same part of the source, so one can be made from
    another: all contains show everything; covers of one aspect ratio crop the same centre."""
    return "full" if rendition.fit == "contain" else Fraction(rendition.width, rendition.height)


def _resize(im: Image.Image, rendition: Rendition, orientation: int = 1) -> Image.Image:
    """`rendition` of `im`, which is stored with EXIF `orientation`: the crop is computed as
    displayed, resized in the stored axes, and only the small result is transposed (a centred
    box maps to the stored axes by swapping its x and y when the orientation swaps them)."""
    swap = orientation in _SWAPS_AXES
    width, height = (im.size[1], im.size[0]) if swap else im.size
    if rendition.fit == "contain":
        size = _needed_size(rendition, width, height)
        box = (0.0, 0.0, float(width), float(height))
    else:
        size = (rendition.width, rendition.height)
        # Centred crop of the target's aspect ratio, as ImageOps.fit does; done inside resize()
        # so reducing_gap applies (ImageOps.fit does not pass it).
        target = rendition.width / rendition.height
        if width / height > target:
            crop_w = height * target
            left = (width - crop_w) / 2
            box = (left, 0.0, left + crop_w, float(height))
        else:
            crop_h = width / target
            top = (height - crop_h) / 2
            box = (0.0, top, float(width), top + crop_h)
    if swap:
        size = (size[1], size[0])
        box = (box[1], box[0], box[3], box[2])
    if size == im.size and box == (0.0, 0.0, float(im.size[0]), float(im.size[1])):
        out = im.copy()
    else:
        out = im.resize(size, Image.Resampling.LANCZOS, box=box, reducing_gap=REDUCING_GAP)
    if orientation in _ORIENTATION_TRANSPOSE:
        out = out.transpose(_ORIENTATION_TRANSPOSE[orientation])
    return out


def _encode(im: Image.Image, fmt: str, options: Options) -> bytes:
    # Pillow's encoders copy some metadata from `info` (JPEG comments, AVIF's ICC profile)
    # even when not asked to: start from nothing.
    im.info = {}
    buf = io.BytesIO()
    if fmt == "jpeg":
        if im.mode == "RGBA":
            # Flatten on white: transparent avatar backgrounds are expected to look like the page.
            background = Image.new("RGB", im.size, (255, 255, 255))
            background.paste(im, mask=im.getchannel("A"))
            im = background
        im.save(
            buf,
            "JPEG",
            quality=options.jpeg_quality,
            optimize=True,
            progressive=True,
            subsampling="4:2:0",
        )
    elif fmt == "webp":
        im.save(buf, "WEBP", quality=options.webp_quality, method=WEBP_METHOD)
    elif fmt == "avif":
        im.save(buf, "AVIF", quality=options.avif_quality, speed=AVIF_SPEED, subsampling="4:2:0")
    else:  # pragma: no cover - Options validates formats
        raise ValueError(fmt)
    return buf.getvalue()


def _verify_clean(data: bytes, codec: _Codec, size: tuple[int, int]) -> None:
    """Reopen an output: right format and size, and none of the metadata we strip."""
    with Image.open(io.BytesIO(data), formats=[codec.pillow_format]) as check:
        leaked = [key for key in _METADATA_KEYS if check.info.get(key)]
        if check.size != size or leaked or check.getexif():
            raise RuntimeError(f"{codec.name} output is {check.size} with metadata {leaked}")


def _placeholder(im: Image.Image) -> str:
    scale = PLACEHOLDER_SIDE / max(im.size)
    size = (max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale)))
    tiny = im.resize(size, Image.Resampling.BOX, reducing_gap=2.0)
    tiny.info = {}
    for quality in (50, 30, 10):
        buf = io.BytesIO()
        tiny.save(buf, "WEBP", quality=quality, method=6)
        uri = "data:image/webp;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
        if len(uri) < PLACEHOLDER_MAX_BYTES:
            return uri
    raise RuntimeError(f"placeholder of {size} does not fit in {PLACEHOLDER_MAX_BYTES} bytes")


# The decoding child's budget, from the pixel count the header declares (the cap's when the
# pre-scan found none). Honest costs measured here (bench): CPU 4 ns/pixel for a JPEG (reduced-
# scale decode), 25 for a WebP, 44 for a PNG with alpha (48 MP: 2.1 s); memory above the warm
# process ~1 byte/pixel for a JPEG, 4 for a still WebP, 6 for a PNG with alpha (48 MP: 280 MB),
# ~9 for AVIF, ~16 for an animated WebP. The budget is about twice the worst of those, so no
# honest file comes near it, and a small file stays small: 1.2 s / 140 MB for 2 MP.
CPU_SECONDS_BASE = 1.0
CPU_SECONDS_PER_MEGAPIXEL = 0.08
MEMORY_BASE = 96 * 2**20
MEMORY_PER_PIXEL = 16
# Lambda bills and enforces the configured memory for the whole sandbox; the child never gets
# more than what is left of it: the parent (the upload included), the upload's second copy in
# the memory shared with the child (bounded.run) and a margin kept aside.
_FUNCTION_MEMORY_MB = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "0") or 0)
_FUNCTION_RESERVE = 64 * 2**20


# Lambda gives a function CPU in proportion to its memory: 1,769 MB is one full vCPU, more is
# more than one (up to 6 at 10,240 MB), less is a share of one.
LAMBDA_MB_PER_VCPU = 1769


def rendition_threads() -> int:
    """Threads to encode renditions on: one per vCPU the function has (Pillow releases the GIL
    while it resizes and encodes), one where it has one or less - there a second thread only
    adds switching. Outside Lambda, the cores this process may run on."""
    cores = len(os.sched_getaffinity(0))
    if not _FUNCTION_MEMORY_MB:
        return cores
    vcpus = _FUNCTION_MEMORY_MB / LAMBDA_MB_PER_VCPU
    return min(cores, math.ceil(vcpus)) if vcpus > 1 else 1


class _Pool:
    """One thread pool per process and size: a pool's threads do not survive a fork, so the
    decoding child makes its own (a kept child keeps it across uploads)."""

    def __init__(self) -> None:
        self.pid = 0
        self.threads = 0
        self.executor: ThreadPoolExecutor | None = None

    def get(self, threads: int) -> ThreadPoolExecutor:
        if self.executor is None or self.pid != os.getpid() or self.threads != threads:
            self.executor = ThreadPoolExecutor(threads, thread_name_prefix="imgpipe-encode")
            self.pid, self.threads = os.getpid(), threads
        return self.executor


_POOL = _Pool()


def decode_budget(
    fmt: str, size: tuple[int, int] | None, data_bytes: int, options: Options
) -> tuple[float, int]:
    """(CPU seconds, bytes of memory above the warm process) one upload may use."""
    pixels = size[0] * size[1] if size else options.max_pixels
    pixels = min(pixels, options.max_pixels) * _PIXEL_WEIGHT.get(fmt, 1)
    cpu = CPU_SECONDS_BASE + CPU_SECONDS_PER_MEGAPIXEL * pixels / 1e6
    memory = MEMORY_BASE + MEMORY_PER_PIXEL * pixels + data_bytes
    if _FUNCTION_MEMORY_MB:
        left = _FUNCTION_MEMORY_MB * 2**20 - bounded.rss_bytes() - data_bytes - _FUNCTION_RESERVE
        memory = min(memory, left)
    return cpu, max(memory, MEMORY_BASE)


def process(data: bytes, options: Options) -> Result:
    """Renditions of `data` in every format of `options`, or ImageRejected."""
    if len(data) > options.max_bytes:
        raise ImageRejected(
            "too_many_bytes", f"The file is {len(data)} bytes; at most {options.max_bytes} are accepted."
        )
    fmt = sniff(data)
    verdict = structure.scan(data, fmt)
    if verdict.problem is not None:
        raise ImageRejected("too_complex", verdict.problem)
    cpu, memory = decode_budget(fmt, verdict.size, len(data), options)
    _warm_up()
    try:
        result: Result = bounded.run(
            _process, data, fmt, options, rendition_threads(), cpu_seconds=cpu, memory_bytes=memory
        )
    except bounded.Overrun as overrun:
        raise ImageRejected(
            "too_complex", f"The image is too complex to process: it {overrun} (a limit of its pixel count)."
        ) from overrun
    except bounded.ChildCrashed as crashed:
        # A decoder crashing on these bytes will crash on them again: a verdict on the input.
        raise ImageRejected("decode_error", "The image is damaged and cannot be read.") from crashed
    return result


@functools.cache
def _warm_up() -> None:
    """Do once, in the parent, what Pillow and LittleCMS do lazily on first use - import the
    other plugins (Image.open(formats=["WEBP"]) imports all of them), set up the codecs, build
    a colour transform - so each decoding child inherits it instead of redoing it: a 2 MP JPEG
    cost 113 ms of CPU in a child of a cold parent, 66 ms warm."""
    buf = io.BytesIO()
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.new("RGB", (64, 48), (200, 120, 40)).save(buf, "JPEG", icc_profile=icc)
    _process(
        buf.getvalue(), "jpeg", Options(renditions=parse_renditions("32x32:cover"), formats=OUTPUT_FORMATS)
    )


def _process(data: bytes | memoryview, fmt: str, options: Options, threads: int = 1) -> Result:
    """process() after the checks that need no decoder; runs in the bounded child. With more
    than one thread, each rendition's encodes (and the placeholder) run on a pool while the
    next rendition is resized: the encodes are ~40% of a 12 MP JPEG's time, ~0 of the decode."""
    notes: list[str] = []
    try:
        with _bomb_check(options.max_pixels):
            work, source, icc, orientation, decode_notes = _decode(data, fmt, options)
        notes.extend(decode_notes)
    except ImageRejected:
        raise
    except _BAD_DATA_ERRORS as exc:
        raise _classify(exc) from exc
    except RuntimeError as exc:
        # Pillow's libavif binding reports every decoder failure as a bare RuntimeError
        # ("Failed to decode frame 0: ..."); its subclasses (RecursionError...) are bugs.
        if fmt != "avif" or type(exc) is not RuntimeError:
            raise
        raise ImageRejected("decode_error", "The image is damaged and cannot be read.") from exc

    pool = _POOL.get(threads) if threads > 1 else None
    encoded: dict[tuple[Rendition, str], Future[Output]] = {}
    placeholder: Future[str] = _done("")
    # Largest first, so each smaller rendition can start from the closest bigger image
    # (already sRGB); only those made from the working image need the colour transform.
    order = sorted(options.renditions, key=lambda r: r.width * r.height, reverse=True)
    images: dict[Rendition, Image.Image] = {}
    shown = (work.size[1], work.size[0]) if orientation in _SWAPS_AXES else work.size
    for rendition in order:
        base = work
        for done, image in images.items():
            if (
                _crop_key(done) == _crop_key(rendition)
                and rendition.width <= image.size[0] <= shown[0]
                and rendition.height <= image.size[1] <= shown[1]
                and image.size[0] * image.size[1] < base.size[0] * base.size[1]
            ):
                base = image
        if base is work:
            image = _to_srgb(_resize(work, rendition, orientation), icc, notes)
        else:
            image = _resize(base, rendition)
        images[rendition] = image
        for fmt_name in options.formats:
            job = functools.partial(_output, image, rendition, fmt_name, options)
            encoded[rendition, fmt_name] = pool.submit(job) if pool else _done(job())
        if rendition == options.renditions[0]:
            placeholder = pool.submit(_placeholder, image) if pool else _done(_placeholder(image))

    return Result(
        outputs=tuple(encoded[r, f].result() for r in options.renditions for f in options.formats),
        version=version_of(data, options),
        source_format=fmt,
        source_width=source[0],
        source_height=source[1],
        placeholder=placeholder.result(),
        notes=tuple(notes),
    )


def _done[T](value: T) -> Future[T]:
    future: Future[T] = Future()
    future.set_result(value)
    return future


def _output(image: Image.Image, rendition: Rendition, fmt_name: str, options: Options) -> Output:
    """`image` encoded as `fmt_name`, checked clean (thread-safe: it encodes a copy)."""
    codec = _CODECS[fmt_name]
    data = _encode(image.copy(), fmt_name, options)
    _verify_clean(data, codec, image.size)
    return Output(
        rendition=rendition,
        format=codec.name,
        extension=codec.extension,
        content_type=codec.content_type,
        width=image.size[0],
        height=image.size[1],
        data=data,
    )

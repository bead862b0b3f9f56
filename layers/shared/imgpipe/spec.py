"""The avatar spec: which renditions and formats a deployment makes, its limits, and their defaults.

The one definition every function and the template share. It is Pillow-free, so the presign
function (no Pillow layer) reads the same renditions the processor makes; the template's
`Renditions` and `OutputFormats` parameters carry `RENDITIONS_PATTERN` and
`OUTPUT_FORMATS_PATTERN` as their AllowedPattern, so CloudFormation refuses exactly what the
functions refuse (tests/unit/test_spec.py holds the regexes and the parsers to each other,
and the template's defaults and bounds to the ones here).

The grammar is strict on purpose, because a regex must be able to say it: items separated by
commas (spaces around them allowed), `WIDTHxHEIGHT[:cover|contain]` with sides 1..4096 written
without leading zeros, lower case, every name once.

`Rendering` (`AvatarSpec.rendering`) names the spec that made an avatar; avatar.json records it, so
a backfill tells which stored avatars an edited spec would change without opening an image.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from imgpipe import settings

FITS = ("cover", "contain")
MAX_RENDITION_SIDE = 4096
# Each rendition is one resize and one encode per format, and one S3 object per format.
MAX_RENDITIONS = 8


@dataclass(frozen=True)
class OutputFormat:
    name: str
    extension: str
    content_type: str


OUTPUT_FORMATS: dict[str, OutputFormat] = {
    "jpeg": OutputFormat("jpeg", "jpg", "image/jpeg"),
    "webp": OutputFormat("webp", "webp", "image/webp"),
    "avif": OutputFormat("avif", "avif", "image/avif"),
}
# The avatarUrl is always this format, so every deployment makes it.
AVATAR_FORMAT = "jpeg"

# What an upload may be: the formats the processor decodes (imaging sniffs the real one).
# TIFF, BMP, PSD, SVG, HEIC... are refused: avatars do not need them and every extra decoder
# is attack surface.
INPUT_FORMATS: dict[str, str] = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "gif": "image/gif",
    "webp": "image/webp",
    "avif": "image/avif",
}

DEFAULT_RENDITIONS = "512x512:cover,256x256:cover,128x128:cover"
DEFAULT_OUTPUT_FORMATS = "jpeg,webp"
DEFAULT_JPEG_QUALITY = 82
DEFAULT_WEBP_QUALITY = 80
# A 48 MP phone photo is 10-20 MB.
DEFAULT_MAX_UPLOAD_BYTES = 25 * 1024 * 1024
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000

# Inclusive bounds of the numeric settings (the template's MinValue/MaxValue).
QUALITY_BOUNDS = (30, 95)
MAX_UPLOAD_BYTES_BOUNDS = (1024, 50 * 1024 * 1024)
MAX_IMAGE_PIXELS_BOUNDS = (1_000_000, 100_000_000)

# --- the grammar as CloudFormation AllowedPatterns (Java regex; Python's re reads them alike) ---
_SIDE = "(?:[1-9][0-9]{0,2}|[1-3][0-9]{3}|40[0-8][0-9]|409[0-6])"  # 1..4096, no leading zero
_RENDITION = f"{_SIDE}x{_SIDE}(?::(?:{'|'.join(FITS)}))?"
# No name twice: no item's WIDTHxHEIGHT stands again at the start of a later item.
_REPEATED_NAME = "(?:.*,)? *([0-9]+x[0-9]+)(?::[a-z]+)? *,(?:.*,)? *\\1(?![0-9])"
RENDITIONS_PATTERN = f"^(?!{_REPEATED_NAME}) *{_RENDITION}(?: *, *{_RENDITION}){{0,{MAX_RENDITIONS - 1}}} *$"

_FORMAT = f"(?:{'|'.join(OUTPUT_FORMATS)})"
_REPEATED_FORMAT = f"(?:.*,)? *({_FORMAT}) *,(?:.*,)? *\\1 *(?:,|$)"
_HAS_AVATAR_FORMAT = f"(?:.*,)? *{AVATAR_FORMAT} *(?:,|$)"
OUTPUT_FORMATS_PATTERN = (
    f"^(?={_HAS_AVATAR_FORMAT})(?!{_REPEATED_FORMAT})"
    f" *{_FORMAT}(?: *, *{_FORMAT}){{0,{len(OUTPUT_FORMATS) - 1}}} *$"
)


@dataclass(frozen=True)
class Rendition:
    width: int
    height: int
    fit: str = "cover"

    def __post_init__(self) -> None:
        if self.fit not in FITS:
            raise ValueError(f"fit must be one of {', '.join(FITS)}, got {self.fit!r}")
        for side in (self.width, self.height):
            if not isinstance(side, int) or isinstance(side, bool) or not 1 <= side <= MAX_RENDITION_SIDE:
                raise ValueError(f"rendition sides must be integers in 1..{MAX_RENDITION_SIDE}, got {side!r}")

    @property
    def name(self) -> str:
        """The file name stem of its objects, e.g. '512x512' (unique within a spec)."""
        return f"{self.width}x{self.height}"

    def __str__(self) -> str:
        return f"{self.name}:{self.fit}"


# The parser is written apart from the patterns above (tests hold the two to each other).
_ITEM = re.compile(r"([0-9]+)x([0-9]+)(?::([a-z]+))?")


def _items(text: str, what: str, example: str) -> list[str]:
    if not isinstance(text, str) or not text.strip(" "):
        raise ValueError(f"at least one {what} is required, e.g. {example!r}")
    return [item.strip(" ") for item in text.split(",")]


def check_renditions(renditions: Iterable[Rendition]) -> tuple[Rendition, ...]:
    """`renditions` as a tuple if they can be one spec's (1..MAX_RENDITIONS, distinct names)."""
    renditions = tuple(renditions)
    if not renditions:
        raise ValueError("at least one rendition is required, e.g. '512x512:cover'")
    if not all(isinstance(r, Rendition) for r in renditions):
        raise ValueError("renditions must be Rendition objects (use parse_renditions)")
    if len(renditions) > MAX_RENDITIONS:
        raise ValueError(f"at most {MAX_RENDITIONS} renditions, got {len(renditions)}")
    names = [r.name for r in renditions]
    if len(set(names)) != len(names):
        raise ValueError(f"renditions must have distinct sizes (their file names), got {names}")
    return renditions


def parse_renditions(text: str) -> tuple[Rendition, ...]:
    """'512x512:cover,128x128:contain' -> Renditions, in order (the first is the avatar URL).

    Fit defaults to cover.
    """
    renditions = []
    for item in _items(text, "rendition", "512x512:cover"):
        match = _ITEM.fullmatch(item)
        if not match:
            raise ValueError(f"rendition {item!r} is not WIDTHxHEIGHT[:{'|'.join(FITS)}]")
        width, height, fit = match.groups()
        if width.startswith("0") or height.startswith("0"):
            raise ValueError(f"rendition {item!r}: write sides without leading zeros")
        renditions.append(Rendition(int(width), int(height), fit or "cover"))
    return check_renditions(renditions)


def format_renditions(renditions: Iterable[Rendition]) -> str:
    """The canonical text of `renditions`: parse_renditions(format_renditions(r)) == r."""
    return ",".join(str(r) for r in renditions)


def check_formats(formats: Iterable[str], *, required: str | None = None) -> tuple[str, ...]:
    """`formats` as a tuple if every one is known and named once (and `required` among them)."""
    formats = tuple(formats)
    if not formats:
        raise ValueError(f"at least one output format is required, e.g. {DEFAULT_OUTPUT_FORMATS!r}")
    for name in formats:
        if name not in OUTPUT_FORMATS:
            raise ValueError(f"output format {name!r} is not one of {', '.join(OUTPUT_FORMATS)}")
    if len(set(formats)) != len(formats):
        raise ValueError(f"output formats must be named once each, got {','.join(formats)}")
    if required is not None and required not in formats:
        raise ValueError(f"output formats must include {required} (the avatar URL's format), got {formats}")
    return formats


def parse_formats(text: str) -> tuple[str, ...]:
    """'jpeg,webp' -> ('jpeg', 'webp'): known output formats, lower case, each once."""
    return check_formats(_items(text, "output format", DEFAULT_OUTPUT_FORMATS))


def parse_output_formats(text: str) -> tuple[str, ...]:
    """parse_formats for a deployment: the avatar URL's format must be among them."""
    return check_formats(_items(text, "output format", DEFAULT_OUTPUT_FORMATS), required=AVATAR_FORMAT)


@dataclass(frozen=True)
class Rendering:
    """What decides an avatar's pixels and bytes: the part of a spec a backfill compares.

    avatar.json records it (`record()`) beside every avatar, so a run tells a current avatar
    from a stale one by reading one small document, without downloading an image.
    """

    renditions: tuple[Rendition, ...]
    formats: tuple[str, ...]
    jpeg_quality: int
    webp_quality: int

    def canonical(self) -> str:
        return (
            f"renditions={format_renditions(self.renditions)};formats={','.join(self.formats)};"
            f"jpeg={self.jpeg_quality};webp={self.webp_quality}"
        )

    def digest(self) -> str:
        """A short, stable name of canonical(): equal digests make equal avatars from equal code."""
        return hashlib.sha256(self.canonical().encode()).hexdigest()[:16]

    def record(self) -> dict[str, str | int]:
        """As avatar.json stores it: the digest a run compares, and the spec spelt out for people."""
        return {
            "digest": self.digest(),
            "renditions": format_renditions(self.renditions),
            "formats": ",".join(self.formats),
            "jpegQuality": self.jpeg_quality,
            "webpQuality": self.webp_quality,
        }


def _check_bounds(name: str, value: int, bounds: tuple[int, int]) -> None:
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in {low}..{high}, got {value!r}")


@dataclass(frozen=True)
class AvatarSpec:
    """A deployment's spec, read from the functions' environment (the template's parameters)."""

    renditions: tuple[Rendition, ...] = settings.env(
        "RENDITIONS", parse_renditions(DEFAULT_RENDITIONS), parse=parse_renditions
    )
    formats: tuple[str, ...] = settings.env(
        "OUTPUT_FORMATS", parse_output_formats(DEFAULT_OUTPUT_FORMATS), parse=parse_output_formats
    )
    jpeg_quality: int = settings.env("JPEG_QUALITY", DEFAULT_JPEG_QUALITY)
    webp_quality: int = settings.env("WEBP_QUALITY", DEFAULT_WEBP_QUALITY)
    max_upload_bytes: int = settings.env("MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES)
    max_image_pixels: int = settings.env("MAX_IMAGE_PIXELS", DEFAULT_MAX_IMAGE_PIXELS)

    def __post_init__(self) -> None:
        object.__setattr__(self, "renditions", check_renditions(self.renditions))
        object.__setattr__(self, "formats", check_formats(self.formats, required=AVATAR_FORMAT))
        _check_bounds("JPEG_QUALITY", self.jpeg_quality, QUALITY_BOUNDS)
        _check_bounds("WEBP_QUALITY", self.webp_quality, QUALITY_BOUNDS)
        _check_bounds("MAX_UPLOAD_BYTES", self.max_upload_bytes, MAX_UPLOAD_BYTES_BOUNDS)
        _check_bounds("MAX_IMAGE_PIXELS", self.max_image_pixels, MAX_IMAGE_PIXELS_BOUNDS)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> AvatarSpec:
        """The spec the environment names (defaults for unset variables); SettingsError if invalid."""
        return settings.load(cls, environ)

    @property
    def avatar_filename(self) -> str:
        """The stable avatarUrl's file name: the first rendition in the avatar format."""
        return f"{self.renditions[0].name}.{OUTPUT_FORMATS[AVATAR_FORMAT].extension}"

    @property
    def rendering(self) -> Rendering:
        """The part of this spec that changes avatars (the limits only accept or reject uploads)."""
        return Rendering(self.renditions, self.formats, self.jpeg_quality, self.webp_quality)

    def canonical(self) -> str:
        """What decides the renditions' pixels and bytes, as one normalised string.

        The limits are left out: they only accept or reject an upload, never change an avatar.
        """
        return self.rendering.canonical()

    def environment(self) -> dict[str, str]:
        """This spec as the environment variables that name it: from_environ(s.environment()) == s."""
        return {
            "RENDITIONS": format_renditions(self.renditions),
            "OUTPUT_FORMATS": ",".join(self.formats),
            "JPEG_QUALITY": str(self.jpeg_quality),
            "WEBP_QUALITY": str(self.webp_quality),
            "MAX_UPLOAD_BYTES": str(self.max_upload_bytes),
            "MAX_IMAGE_PIXELS": str(self.max_image_pixels),
        }

    def digest(self) -> str:
        """A short, stable name of canonical(): equal digests make equal avatars from equal code."""
        return self.rendering.digest()


def environment_defaults() -> dict[str, str]:
    """Each spec variable's default as the environment (and the template's Default) spells it."""
    return AvatarSpec().environment()

"""Photo-like bench inputs, generated deterministically and cached (never committed).

Flat or pure-noise images would flatter or punish the decoders: a photo has broad gradients,
blotchy mid-frequency texture, hard object edges and a little sensor noise, and a camera JPEG
carries EXIF (orientation, GPS) that the pipeline must apply and strip. The generator layers
exactly those, seeded, so every run and every implementation sees the same bytes.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageOps

# Bump when the generator changes so stale cached files are never measured under a new name.
GENERATOR_VERSION = 1

# Phones store portrait shots as landscape pixels plus "rotate 90° CW" (orientation 6); the
# pipeline has to honour it, so the bench makes every implementation do that work too.
CAMERA_ORIENTATION = 6


@dataclass(frozen=True)
class Spec:
    name: str  # short label used in tables and file names
    width: int
    height: int
    format: str  # "jpeg" | "png" | "webp"
    alpha: bool = False

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6

    @property
    def filename(self) -> str:
        ext = {"jpeg": "jpg", "png": "png", "webp": "webp"}[self.format]
        return f"{self.name}-{self.width}x{self.height}-v{GENERATOR_VERSION}.{ext}"


SPECS: tuple[Spec, ...] = (
    Spec("jpeg-2mp", 1632, 1224, "jpeg"),
    Spec("jpeg-12mp", 4032, 3024, "jpeg"),  # a 12 MP phone camera
    Spec("jpeg-24mp", 6000, 4000, "jpeg"),  # an APS-C camera
    Spec("jpeg-48mp", 8064, 6048, "jpeg"),  # a 48 MP phone main camera, just under MAX_IMAGE_PIXELS
    Spec("png-12mp-alpha", 4032, 3024, "png", alpha=True),
    Spec("webp-12mp", 4032, 3024, "webp"),
    # The memory worst case under MAX_IMAGE_PIXELS: no reduced-scale decode exists for PNG, and
    # four channels of 48 MP must be inflated whole.
    Spec("png-48mp-alpha", 8064, 6048, "png", alpha=True),
)


def _smooth_noise(rng: random.Random, size: tuple[int, int], grid: tuple[int, int], mode: str) -> Image.Image:
    """Random values on a coarse grid, bicubic-upsampled: texture at the grid's scale."""
    bands = len(mode)
    small = Image.frombytes(mode, grid, rng.randbytes(grid[0] * grid[1] * bands))
    return small.resize(size, Image.Resampling.BICUBIC)


def _shapes(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    """Hard-edged "objects": the high-frequency detail that makes JPEGs of photos large."""
    w, h = size
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    scale = max(w, h)
    for _ in range(160):
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256), rng.randrange(90, 230))
        x, y = rng.randrange(w), rng.randrange(h)
        r = rng.randrange(scale // 200, scale // 12)
        kind = rng.random()
        if kind < 0.4:
            draw.ellipse((x - r, y - r // 2, x + r, y + r // 2), fill=colour)
        elif kind < 0.7:
            points = [(x + rng.randrange(-r, r), y + rng.randrange(-r, r)) for _ in range(5)]
            draw.polygon(points, fill=colour)
        else:
            # Branch-like strokes: thin, long, many edges per pixel.
            for _ in range(6):
                nx, ny = x + rng.randrange(-r * 2, r * 2), y + rng.randrange(-r * 2, r * 2)
                draw.line((x, y, nx, ny), fill=colour, width=max(1, scale // 1500))
                x, y = nx, ny
    # Slight blur: real optics never give one-pixel-perfect edges.
    return layer.filter(ImageFilter.GaussianBlur(max(1, scale // 4000)))


def photo(spec: Spec, seed: int) -> Image.Image:
    rng = random.Random(f"{spec.name}:{seed}")
    size = (spec.width, spec.height)
    w, h = size
    img = _smooth_noise(rng, size, (5, 4), "RGB")  # sky/ground colour fields
    light = ImageOps.colorize(Image.linear_gradient("L").resize(size), (40, 40, 50), (235, 230, 220))
    img = Image.blend(img, light, 0.45)
    img = Image.blend(img, _smooth_noise(rng, size, (max(2, w // 96), max(2, h // 96)), "RGB"), 0.30)
    shapes = _shapes(rng, size)
    img.paste(shapes, (0, 0), shapes)
    # Fine texture (grass, skin pores, fabric) at a few pixels' scale, and sensor noise.
    img = Image.blend(img, _smooth_noise(rng, size, (w // 3, h // 3), "RGB"), 0.22)
    noise = Image.frombytes("L", size, rng.randbytes(w * h)).point(lambda v: v * 14 // 255)
    img = ImageChops.add(img, Image.merge("RGB", (noise, noise, noise)), scale=1.0, offset=-7)
    if spec.alpha:
        # A cut-out subject: opaque centre, soft falloff, fully transparent corners.
        mask = Image.radial_gradient("L").resize(size, Image.Resampling.BICUBIC)
        alpha = mask.point(lambda v: max(0, min(255, (200 - v) * 3)))
        # Editors write fully transparent pixels as zeros, which is what makes cut-outs compress.
        img = Image.composite(img, Image.new("RGB", size), alpha.point(lambda v: 255 if v else 0))
        img.putalpha(alpha)
    return img


def _camera_exif() -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "imgpipe-bench"  # Make
    exif[0x0110] = "Synthetic Camera"  # Model
    exif[0x0112] = CAMERA_ORIENTATION
    exif[0x0132] = "2026:11:28 12:00:00"  # DateTime
    # GPS: the metadata a privacy-minded pipeline must strip.
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.5), 3: "E", 4: (13.0, 24.0, 36.1)}
    return exif


def encode(spec: Spec, img: Image.Image) -> bytes:
    from io import BytesIO

    out = BytesIO()
    if spec.format == "jpeg":
        # What phone cameras write: high quality, 4:2:0, EXIF in APP1.
        img.save(out, "JPEG", quality=90, subsampling="4:2:0", exif=_camera_exif())
    elif spec.format == "png":
        img.save(out, "PNG", compress_level=6)
    elif spec.format == "webp":
        img.save(out, "WEBP", quality=85, method=4, exif=_camera_exif())
    else:
        raise ValueError(f"unknown bench format {spec.format!r}")
    return out.getvalue()


def ensure(spec: Spec, cache_dir: Path, seed: int = 1) -> Path:
    """Return the cached file for `spec`, generating it the first time."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / spec.filename
    if not path.exists():
        data = encode(spec, photo(spec, seed))
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)  # atomic: an interrupted run never leaves half a file behind
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()

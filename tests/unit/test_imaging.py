"""The imaging core on generated edge-case images: pixels, sizes and metadata of real outputs."""

from __future__ import annotations

import base64
import io
import random
from pathlib import Path

import pytest
from PIL import Image, features

from imgpipe import imaging, webp_simple
from tests.unit import imaging_fixtures as fx

SMALL = imaging.Options.from_settings(renditions="64x64:cover,150x150:contain", formats="jpeg,webp")


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every edge-case file, written once per run (see imaging_fixtures.FIXTURES)."""
    return fx.write_all(tmp_path_factory.mktemp("fixtures"))


def run(fixtures: dict[str, Path], name: str, options: imaging.Options = SMALL) -> imaging.Result:
    return imaging.process(fixtures[name].read_bytes(), options)


def reject(fixtures: dict[str, Path], name: str, options: imaging.Options = SMALL) -> imaging.ImageRejected:
    with pytest.raises(imaging.ImageRejected) as caught:
        run(fixtures, name, options)
    return caught.value


def decoded(output: imaging.Output) -> Image.Image:
    im = Image.open(io.BytesIO(output.data))
    im.load()
    return im


def output(result: imaging.Result, name: str, fmt: str) -> imaging.Output:
    (match,) = [o for o in result.outputs if o.rendition.name == name and o.format == fmt]
    return match


close = fx.close_rgb


def corners(im: Image.Image) -> list[tuple[int, ...]]:
    rgb = im.convert("RGB")
    w, h = rgb.size
    return [rgb.getpixel(xy) for xy in ((4, 4), (w - 5, 4), (4, h - 5), (w - 5, h - 5))]


# --- orientation ----------------------------------------------------------------------------


@pytest.mark.parametrize("n", range(1, 9))
def test_exif_orientation_is_applied(fixtures: dict[str, Path], n: int) -> None:
    # Given a 1200x800 picture stored transformed, tagged with EXIF orientation n
    result = run(fixtures, f"orientation_{n}.jpg")
    # Then every output shows it upright: red top-left, green top-right, blue bottom-left
    assert (result.source_width, result.source_height) == (1200, 800)  # as displayed
    for out in result.outputs:
        im = decoded(out)
        assert im.size == ((64, 64) if out.rendition.fit == "cover" else (150, 100))
        tl, tr, bl, br = corners(im)
        assert close(tl, fx.RED), (out.filename, tl)
        assert close(tr, fx.GREEN), (out.filename, tr)
        assert close(bl, fx.BLUE), (out.filename, bl)
        assert close(br, fx.WHITE), (out.filename, br)
        assert not im.getexif(), out.filename


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_exif_orientation_outside_jpeg(fmt: str) -> None:
    # PNG (eXIf chunk) and WebP carry EXIF too; their orientation is read after decoding.
    exif = Image.Exif()
    exif[0x0112] = 8
    stored = fx.quadrants(120, 80).transpose(Image.Transpose.ROTATE_270)
    result = imaging.process(fx.save(stored, fmt, exif=exif.tobytes(), lossless=True), SMALL)
    assert (result.source_width, result.source_height) == (120, 80)
    tl, tr, bl, br = corners(decoded(output(result, "150x150", "webp")))
    assert [close(tl, fx.RED), close(tr, fx.GREEN), close(bl, fx.BLUE), close(br, fx.WHITE)] == [True] * 4


def test_orientation_with_reduced_jpeg_decoding_keeps_enough_resolution(fixtures: dict[str, Path]) -> None:
    # A rotated source (stored 800x1200) and a rendition that is wider than tall: the draft
    # must be computed in the oriented axes or the output would be upscaled from too little.
    options = imaging.Options.from_settings(renditions="600x400:contain", formats="jpeg")
    out = run(fixtures, "orientation_6.jpg", options).outputs[0]
    im = decoded(out)
    assert im.size == (600, 400)
    # A sharp red/green boundary at x=300: an upscaled image would smear it over many pixels.
    row = [im.convert("RGB").getpixel((x, 100)) for x in range(290, 311)]
    blurred = [px for px in row if not (close(px, fx.RED, 40) or close(px, fx.GREEN, 40))]
    assert len(blurred) <= 4, row


# --- colour ---------------------------------------------------------------------------------


def patches(result: imaging.Result, fmt: str = "jpeg") -> list[tuple[int, ...]]:
    im = decoded(output(result, "400x100", fmt)).convert("RGB")
    return [im.getpixel((50 + 100 * i, 50)) for i in range(len(fx.CMYK_PATCHES))]


WIDE = imaging.Options.from_settings(renditions="400x100:contain", formats="jpeg,webp")


def test_cmyk_jpeg_is_converted_through_its_icc_profile(fixtures: dict[str, Path]) -> None:
    # The embedded profile maps each ink to an unusual colour; a reader ignoring it
    # would show cyan as cyan, this one must show what the profile says (yellow).
    result = run(fixtures, "cmyk_with_icc.jpg", WIDE)
    expected = [fx._ink_to_rgb(*(v // 255 for v in patch)) for patch in fx.CMYK_PATCHES]
    for fmt in ("jpeg", "webp"):
        for actual, want in zip(patches(result, fmt), expected, strict=True):
            assert close(actual, want), (fmt, actual, want)


def test_adobe_inverted_cmyk_without_profile(fixtures: dict[str, Path]) -> None:
    assert Image.open(fixtures["adobe_cmyk_inverted.jpg"]).info.get("adobe") is not None
    result = run(fixtures, "adobe_cmyk_inverted.jpg", WIDE)
    # Cyan, magenta, black, paper - not their inverses.
    expected = [(0, 255, 255), (255, 0, 255), (0, 0, 0), (255, 255, 255)]
    for actual, want in zip(patches(result), expected, strict=True):
        assert close(actual, want), (actual, want)


def test_adobe_rgb_profile_is_converted_to_srgb(fixtures: dict[str, Path]) -> None:
    expected = fx.adobe_rgb_to_srgb(fx.ADOBE_RGB_SAMPLE)
    # The sample is one a non-colour-managed pipeline visibly gets wrong.
    assert not close(expected, fx.ADOBE_RGB_SAMPLE, 20)
    result = run(fixtures, "rgb_with_adobe_rgb_icc.png")
    webp = decoded(output(result, "64x64", "webp")).convert("RGB").getpixel((32, 32))
    jpeg = decoded(output(result, "64x64", "jpeg")).convert("RGB").getpixel((32, 32))
    assert close(webp, expected, 4), (webp, expected)
    assert close(jpeg, expected, 6), (jpeg, expected)
    # Outputs are untagged sRGB.
    assert all("icc_profile" not in decoded(o).info for o in result.outputs)


def test_unusable_icc_profile_is_ignored_with_a_note(fixtures: dict[str, Path]) -> None:
    result = run(fixtures, "broken_icc.jpg")
    assert result.notes
    assert "ICC" in result.notes[0]
    assert close(corners(decoded(result.outputs[0]))[0], fx.RED)


# --- modes ----------------------------------------------------------------------------------


def test_16bit_greyscale_is_scaled_not_clipped(fixtures: dict[str, Path]) -> None:
    result = run(fixtures, "16bit.png")
    tl, tr, _, _ = corners(decoded(output(result, "64x64", "webp")))
    assert close(tl, (128, 128, 128), 3)  # 0x8080 / 257
    assert close(tr, (255, 255, 255), 3)


def test_palette_transparency_is_white_in_jpeg_and_transparent_in_webp(fixtures: dict[str, Path]) -> None:
    result = run(fixtures, "palette_transparency.png")
    jpeg = decoded(output(result, "64x64", "jpeg"))
    assert jpeg.mode == "RGB"
    assert close(jpeg.getpixel((5, 32)), fx.WHITE)
    assert close(jpeg.getpixel((58, 32)), fx.RED)
    webp = decoded(output(result, "64x64", "webp"))
    assert webp.mode == "RGBA"
    assert webp.getpixel((5, 32))[3] == 0
    assert webp.getpixel((58, 32))[3] == 255
    assert close(webp.getpixel((58, 32))[:3], fx.RED)


def test_1bit(fixtures: dict[str, Path]) -> None:
    result = run(fixtures, "1bit.png")
    tl, tr, _, _ = corners(decoded(output(result, "64x64", "jpeg")))
    assert close(tl, (0, 0, 0))
    assert close(tr, fx.WHITE)


def test_la_keeps_alpha_in_webp_and_flattens_jpeg(fixtures: dict[str, Path]) -> None:
    result = run(fixtures, "la.png")
    jpeg = decoded(output(result, "64x64", "jpeg"))
    assert close(jpeg.getpixel((5, 32)), fx.WHITE)  # transparent black becomes white, not black
    assert close(jpeg.getpixel((58, 32)), (128, 128, 128))
    webp = decoded(output(result, "64x64", "webp"))
    assert webp.mode == "RGBA"
    assert webp.getpixel((5, 32))[3] == 0
    assert close(webp.getpixel((58, 32)), (128, 128, 128, 255))


def test_opaque_outputs_carry_no_alpha(fixtures: dict[str, Path]) -> None:
    result = run(fixtures, "wrong_extension.jpg")
    assert decoded(output(result, "64x64", "webp")).mode == "RGB"


@pytest.mark.parametrize("name", ["animated.gif", "animated.webp"])
def test_animation_uses_the_first_frame(fixtures: dict[str, Path], name: str) -> None:
    assert getattr(Image.open(fixtures[name]), "n_frames", 1) == 3
    result = run(fixtures, name)
    for out in result.outputs:
        im = decoded(out)
        assert getattr(im, "n_frames", 1) == 1
        assert all(close(px, fx.RED) for px in corners(im)), out.filename


def test_progressive_jpeg(fixtures: dict[str, Path]) -> None:
    result = run(fixtures, "progressive.jpg")
    assert [decoded(o).size for o in result.outputs] == [(64, 64), (64, 64), (150, 112), (150, 112)]


def test_png_bytes_with_a_jpg_name_are_processed_as_png(fixtures: dict[str, Path]) -> None:
    assert run(fixtures, "wrong_extension.jpg").source_format == "png"


# --- metadata -------------------------------------------------------------------------------


def test_all_metadata_is_stripped(fixtures: dict[str, Path]) -> None:
    # Given a phone photo with GPS in EXIF, an owner name in EXIF and XMP, a comment, an ICC
    source = Image.open(fixtures["exif_with_gps.jpg"])
    assert source.getexif().get_ifd(0x8825)
    assert {"exif", "xmp", "comment", "icc_profile"} <= set(source.info)
    assert fx.SECRET in fixtures["exif_with_gps.jpg"].read_bytes()
    options = imaging.Options.from_settings(renditions="64x64:cover", formats=imaging.OUTPUT_FORMATS)
    result = run(fixtures, "exif_with_gps.jpg", options)
    assert {o.format for o in result.outputs} == set(imaging.OUTPUT_FORMATS)
    for out in result.outputs:
        im = decoded(out)
        # Then nothing of it survives, in Pillow's view or in the raw bytes
        assert not im.getexif(), out.filename
        assert not {"exif", "xmp", "XML:com.adobe.xmp", "comment", "icc_profile"} & set(im.info), im.info
        assert fx.SECRET not in out.data
        assert b"Exif\0\0" not in out.data
        assert b"http://ns.adobe.com/xap" not in out.data


# --- rejections -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("truncated.jpg", "truncated"),
        ("bomb_100000x100000.png", "too_many_pixels"),
        ("text.txt", "not_an_image"),
        ("empty.jpg", "empty"),
        ("drawing.svg", "unsupported_format"),
        ("scan.tiff", "unsupported_format"),
        ("icon.bmp", "unsupported_format"),
        ("layers.psd", "unsupported_format"),
        ("iphone.heic", "unsupported_format"),
    ],
)
def test_rejections(fixtures: dict[str, Path], name: str, reason: str) -> None:
    rejected = reject(fixtures, name)
    assert rejected.reason == reason
    assert str(rejected)  # a human message for the manifest
    assert isinstance(rejected, ValueError)


def test_oversize_bytes_are_rejected_before_sniffing() -> None:
    options = imaging.Options(max_bytes=100)
    with pytest.raises(imaging.ImageRejected) as caught:
        imaging.process(b"\x89PNG\r\n\x1a\n" + b"\0" * 200, options)
    assert caught.value.reason == "too_many_bytes"


def test_pixel_cap_comes_from_the_header(fixtures: dict[str, Path]) -> None:
    # 100x100 = 10,000 pixels against a 5,000-pixel cap: rejected though the file is tiny
    tiny_cap = imaging.Options(max_pixels=5_000)
    image = fx.save(Image.new("RGB", (100, 100)), "PNG")
    with pytest.raises(imaging.ImageRejected) as caught:
        imaging.process(image, tiny_cap)
    assert caught.value.reason == "too_many_pixels"


def test_pillow_bomb_check_uses_the_cap_while_decoding_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a plugin that trusts its header less than we do: the decompression-bomb warning
    # Pillow raises inside the decode step must become a rejection, not a log line.
    real_decode = imaging._decode

    def decode_with_warning(data: bytes, fmt: str, options: imaging.Options) -> object:
        # Runs in the decoding child: a failed assert comes back to the parent as itself.
        assert Image.MAX_IMAGE_PIXELS == options.max_pixels == 1_000_000
        Image._decompression_bomb_check((options.max_pixels + 1, 1))
        return real_decode(data, fmt, options)

    monkeypatch.setattr(imaging, "_decode", decode_with_warning)
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(imaging.ImageRejected) as caught:
        imaging.process(fx.wrong_extension(), imaging.Options(max_pixels=1_000_000))
    assert caught.value.reason == "too_many_pixels"
    assert before == Image.MAX_IMAGE_PIXELS  # restored for everyone else


def test_webp_pixels_count_double() -> None:
    # libwebp's decode needs about twice the memory per pixel of the other decoders.
    options = imaging.Options(max_pixels=15_000)
    square = fx.quadrants(100, 100)
    assert imaging.process(fx.save(square, "PNG"), options).source_format == "png"
    with pytest.raises(imaging.ImageRejected) as caught:
        imaging.process(fx.save(square, "WEBP"), options)
    assert caught.value.reason == "too_many_pixels"


def test_side_cap_rejects_strips_under_the_pixel_cap() -> None:
    # 30,000 x 10 is only 300,000 pixels, but no avatar: the header alone decides.
    with pytest.raises(imaging.ImageRejected) as caught:
        imaging.process(fx.png_claiming(30_000, 10), imaging.Options())
    assert caught.value.reason == "too_many_pixels"


def test_damaged_png_is_a_decode_error() -> None:
    # A real header with an IDAT that is not zlib data.
    image = fx.save(Image.new("RGB", (32, 32), fx.RED), "PNG")
    start = image.index(b"IDAT") + 4
    damaged = image[:start] + bytes(b ^ 0x5A for b in image[start : start + 20]) + image[start + 20 :]
    with pytest.raises(imaging.ImageRejected) as caught:
        imaging.process(damaged, imaging.Options())
    assert caught.value.reason in {"decode_error", "truncated"}


@pytest.mark.parametrize("error", [TypeError, RuntimeError, KeyError])
def test_failures_not_about_the_image_propagate(monkeypatch: pytest.MonkeyPatch, error: type) -> None:
    # A bug inside decoding is not a verdict on the upload: it must reach the handler (retry,
    # then the DLQ), not be recorded as a permanent rejection - raised in the decoding child,
    # re-raised as itself in the parent, with the child's traceback as its cause.
    def broken(im: Image.Image) -> Image.Image:
        raise error("not the image's fault")

    monkeypatch.setattr(imaging, "_to_resizable", broken)
    with pytest.raises(error) as caught:
        imaging.process(fx.wrong_extension(), SMALL)
    assert "_to_resizable" not in str(caught.value)
    assert "in broken" in str(caught.value.__cause__)


def test_memory_error_in_the_decoding_child_is_too_complex(monkeypatch: pytest.MonkeyPatch) -> None:
    # The child's memory limit is sized from the image's own pixel count (Lambda itself has no
    # MemoryError: its sandbox is killed), so running out of it is a verdict on the upload.
    def greedy(im: Image.Image) -> Image.Image:
        raise MemoryError

    monkeypatch.setattr(imaging, "_to_resizable", greedy)
    with pytest.raises(imaging.ImageRejected) as caught:
        imaging.process(fx.wrong_extension(), SMALL)
    assert caught.value.reason == "too_complex"
    assert "MB of memory" in str(caught.value)


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow narrates damaged EXIF
def test_mutated_files_end_in_a_result_or_a_rejection(fixtures: dict[str, Path]) -> None:
    # Seeded byte flips, cuts and insertions into every accepted format: each must end as a
    # Result or an ImageRejected. (A 20,000-case run of this found the AVIF RuntimeError.)
    seeds = [
        fixtures[name].read_bytes()
        for name in ("orientation_6.jpg", "cmyk_with_icc.jpg", "rgb_with_adobe_rgb_icc.png", "16bit.png",
                     "palette_transparency.png", "animated.gif", "animated.webp", "exif_with_gps.jpg")
    ]  # fmt: skip
    if imaging.AVIF_AVAILABLE:
        seeds.append(fx.save(fx.quadrants(200, 100), "AVIF", quality=60))
    rng = random.Random(20261128)
    verdicts: dict[str, int] = {}
    for _ in range(250):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.choice((1, 2, 4, 8))):
            at = rng.randrange(len(data))
            roll = rng.random()
            if roll < 0.6:
                data[at] = rng.randrange(256)
            elif roll < 0.8:
                del data[at : at + rng.randrange(1, 64)]
            else:
                data[at:at] = rng.randbytes(rng.randrange(1, 16))
        try:
            imaging.process(bytes(data), SMALL)
            verdict = "ok"
        except imaging.ImageRejected as rejected:
            verdict = rejected.reason
        verdicts[verdict] = verdicts.get(verdict, 0) + 1
    # Both outcomes occur, so the mutations neither always break nor never matter.
    assert verdicts.get("ok", 0) > 20, verdicts
    assert verdicts.get("decode_error", 0) > 20, verdicts


# --- renditions, formats, version, placeholder ----------------------------------------------


def test_default_options_give_exact_avatar_sizes_and_content_types(fixtures: dict[str, Path]) -> None:
    result = run(fixtures, "progressive.jpg", imaging.Options())
    assert [(o.filename, o.content_type, o.width, o.height) for o in result.outputs] == [
        ("512x512.jpg", "image/jpeg", 512, 512),
        ("512x512.webp", "image/webp", 512, 512),
        ("256x256.jpg", "image/jpeg", 256, 256),
        ("256x256.webp", "image/webp", 256, 256),
        ("128x128.jpg", "image/jpeg", 128, 128),
        ("128x128.webp", "image/webp", 128, 128),
    ]
    for out in result.outputs:
        im = decoded(out)
        assert (im.format.lower(), im.size) == (out.format, (out.width, out.height))
    jpeg = Image.open(io.BytesIO(output(result, "512x512", "jpeg").data))
    assert jpeg.info.get("progressive") or jpeg.info.get("progression")
    assert jpeg.layer[0][1:3] == (2, 2)  # 4:2:0 chroma subsampling


def test_cover_fills_small_sources_and_contain_never_upscales(fixtures: dict[str, Path]) -> None:
    # A 64x64 source: a 512 avatar must still be 512x512 (the <img> box is fixed), but a
    # contain rendition keeps the source size rather than inventing pixels.
    options = imaging.Options.from_settings(renditions="512x512:cover,300x200:contain", formats="webp")
    result = run(fixtures, "1bit.png", options)
    assert [(o.width, o.height) for o in result.outputs] == [(512, 512), (64, 64)]


def test_cover_crops_the_centre(fixtures: dict[str, Path]) -> None:
    # 200x100 quadrants cropped to a square: the centre shows all four colours around it.
    options = imaging.Options.from_settings(renditions="100x100:cover", formats="webp")
    im = decoded(run(fixtures, "wrong_extension.jpg", options).outputs[0])
    assert im.size == (100, 100)
    assert [close(c, e) for c, e in zip(corners(im), (fx.RED, fx.GREEN, fx.BLUE, fx.WHITE), strict=True)] == [
        True
    ] * 4


@pytest.mark.skipif(not imaging.AVIF_AVAILABLE, reason="Pillow built without AVIF")
def test_avif_output(fixtures: dict[str, Path]) -> None:
    options = imaging.Options.from_settings(renditions="64x64:cover", formats="avif")
    (out,) = run(fixtures, "palette_transparency.png", options).outputs
    assert (out.filename, out.content_type) == ("64x64.avif", "image/avif")
    im = decoded(out)
    assert (im.format, im.size, im.mode) == ("AVIF", (64, 64), "RGBA")
    assert im.getpixel((5, 32))[3] == 0


@pytest.mark.skipif(not imaging.AVIF_AVAILABLE, reason="Pillow built without AVIF")
def test_avif_input() -> None:
    source = fx.save(fx.quadrants(200, 100), "AVIF", quality=90)
    result = imaging.process(source, SMALL)
    assert (result.source_format, result.source_width, result.source_height) == ("avif", 200, 100)
    tl, tr, bl, br = corners(decoded(output(result, "150x150", "jpeg")))
    assert [
        close(px, want, 30)
        for px, want in zip((tl, tr, bl, br), (fx.RED, fx.GREEN, fx.BLUE, fx.WHITE), strict=True)
    ] == [True] * 4


@pytest.mark.skipif(not imaging.AVIF_AVAILABLE, reason="Pillow built without AVIF")
def test_damaged_avif_is_a_decode_error() -> None:
    # libavif failures surface from Pillow as bare RuntimeErrors: still a verdict on the file.
    source = fx.save(fx.quadrants(200, 100), "AVIF", quality=60)
    at = source.index(b"mdat") + 4
    damaged = source[:at] + bytes(b ^ 0xFF for b in source[at : at + 16]) + source[at + 16 :]
    with pytest.raises(imaging.ImageRejected) as caught:
        imaging.process(damaged, SMALL)
    assert caught.value.reason == "decode_error"


def test_version_depends_on_bytes_and_output_options_only(fixtures: dict[str, Path]) -> None:
    data = fixtures["progressive.jpg"].read_bytes()
    version = imaging.version_of(data, SMALL)
    assert len(version) == 16
    int(version, 16)
    assert imaging.process(data, SMALL).version == version
    assert imaging.version_of(data + b"\0", SMALL) != version
    assert imaging.version_of(data, imaging.Options(renditions=SMALL.renditions, jpeg_quality=90)) != version
    same_output = imaging.Options(renditions=SMALL.renditions, formats=SMALL.formats, max_bytes=123_456)
    assert imaging.version_of(data, same_output) == version


def test_placeholder_is_a_tiny_webp_data_uri(fixtures: dict[str, Path]) -> None:
    result = run(fixtures, "orientation_6.jpg")
    prefix = "data:image/webp;base64,"
    assert result.placeholder.startswith(prefix)
    assert len(result.placeholder) < 1024
    im = Image.open(io.BytesIO(base64.b64decode(result.placeholder[len(prefix) :])))
    assert im.format == "WEBP"
    assert max(im.size) == imaging.PLACEHOLDER_SIDE
    assert close(im.convert("RGB").getpixel((1, 1)), fx.RED, 40)  # oriented too


def test_options_validate() -> None:
    with pytest.raises(ValueError, match="jpeg_quality"):
        imaging.Options(jpeg_quality=0)
    with pytest.raises(ValueError, match="format"):
        imaging.Options(formats=("png",))
    with pytest.raises(ValueError, match="rendition"):
        imaging.Options(renditions=())
    assert imaging.Options(formats=("webp", "jpeg")).formats == ("webp", "jpeg")
    assert imaging.Options(renditions="64x64").renditions == (imaging.Rendition(64, 64, "cover"),)
    settings_like = imaging.Options.from_settings(
        renditions="512x512:cover", formats=("jpeg",), jpeg_quality=70, max_pixels=1000
    )
    assert (settings_like.formats, settings_like.jpeg_quality, settings_like.max_pixels) == (
        ("jpeg",),
        70,
        1000,
    )


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "I;16"])
def test_strip_reduce_matches_a_whole_image_reduce(mode: str) -> None:
    # _reduce works strip by strip to avoid a full-size premultiplied/converted copy; the
    # pixels must be those of the plain reduce, edges (sizes not a multiple of 7) included.
    rng = random.Random(mode)
    width, height = 7 * imaging._REDUCE_STRIP_ROWS // 3 + 5, 7 * imaging._REDUCE_STRIP_ROWS * 2 + 3
    noise = Image.frombytes("RGBA", (width, height), rng.randbytes(width * height * 4))
    if mode == "P":
        source = noise.convert("RGB").quantize(64)
        source.info["transparency"] = 3
    elif mode == "I;16":
        source = noise.convert("L").convert("I").point(lambda v: v * 257).convert("I;16")
    else:
        source = noise.convert(mode)
    expected = imaging._to_resizable(source).reduce(7)
    actual = imaging._reduce(source, 7)
    assert (actual.mode, actual.size) == (expected.mode, expected.size)
    assert actual.tobytes() == expected.tobytes()


@pytest.mark.parametrize("lossless", [True, False])
def test_still_webp_with_alpha_through_libwebps_simple_decoder(lossless: bool) -> None:
    # Still WebPs skip Pillow's animation decoder (two full-size canvases); Pillow's wheel
    # bundles libwebp, so this path is the one that runs here and in the Lambda layer.
    decoder = webp_simple.load()
    assert isinstance(decoder, webp_simple.Decoder), decoder
    assert decoder.version == features.version("webp")
    source = fx.quadrants(200, 100).convert("RGBA")
    source.paste((0, 0, 0, 0), (0, 0, 100, 50))  # top-left quadrant transparent
    result = imaging.process(fx.save(source, "WEBP", lossless=lossless, quality=90), SMALL)
    webp = decoded(output(result, "150x150", "webp"))
    assert (webp.mode, webp.size) == ("RGBA", (150, 75))
    assert webp.getpixel((4, 4))[3] == 0
    assert close(webp.getpixel((145, 4)), (*fx.GREEN, 255))
    jpeg = decoded(output(result, "150x150", "jpeg"))
    assert close(jpeg.getpixel((4, 4)), fx.WHITE)
    assert close(jpeg.getpixel((4, 70)), fx.BLUE)


def test_without_libwebps_simple_decoder_pillow_decodes_and_the_result_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reason = "libwebp simple decoder unavailable: libwebp-x.so is 2.0.0, Pillow reports 1.6.0"
    monkeypatch.setattr(webp_simple, "load", lambda: reason)
    source = fx.quadrants(200, 100)
    result = imaging.process(fx.save(source, "WEBP", quality=90), SMALL)
    assert reason in result.notes
    assert close(decoded(output(result, "150x150", "jpeg")).getpixel((4, 70)), fx.BLUE)
    # Animations always take Pillow's path: nothing to note there.
    animated = imaging.process(fx.FIXTURES["animated.webp"](), SMALL)
    assert reason not in animated.notes


def test_damaged_still_webp_is_rejected() -> None:
    source = fx.save(fx.quadrants(200, 100), "WEBP", quality=90)
    at = source.index(b"VP8 ") + 20
    damaged = source[:at] + bytes(b ^ 0xFF for b in source[at : at + 64]) + source[at + 64 :]
    with pytest.raises(imaging.ImageRejected) as caught:
        imaging.process(damaged, SMALL)
    assert caught.value.reason in {"decode_error", "truncated"}
    with pytest.raises(imaging.ImageRejected) as caught:
        imaging.process(source[: len(source) // 2], SMALL)
    assert caught.value.reason in {"decode_error", "truncated"}

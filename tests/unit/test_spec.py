"""imgpipe.spec: one grammar for the rendition spec, said twice — as the parsers every function
uses and as the AllowedPatterns CloudFormation checks — and held to agree here, input by input.
The template's defaults and bounds are held to the module's."""

from __future__ import annotations

import dataclasses
import random
import re
import string

import pytest

from imgpipe import spec
from imgpipe.settings import SettingsError
from imgpipe.spec import AvatarSpec, Rendition
from imgpipe_local.template import load_yaml
from tests.conftest import ROOT

TEMPLATE = load_yaml(ROOT / "template.yaml")
PARAMETERS = TEMPLATE["Parameters"]

# The three inputs functions used to disagree on (issue 11): the processor accepted the first
# two and the presign function crashed on them at cold start; presign accepted the third and
# the processor refused it.
DISAGREEING = ("512 x 512:cover", "0512x512:cover", "9999x9999:cover")

RENDITIONS = [
    # (text, accepted)
    ("512x512:cover,256x256:cover,128x128:cover", True),
    ("512x512", True),
    ("1x1", True),
    ("4096x4096:contain", True),
    ("4096x1:cover,1x4096:contain", True),
    (" 512x512:cover , 128x96:contain ,64x64 ", True),
    ("512x512:cover,5120x512", False),
    ("512x512:cover,512x5120", False),  # 5120 > 4096
    ("512x512:cover,512x512:contain", False),  # the same file name twice
    ("512x512,256x256,512x512", False),
    ("512x512:cover,1512x512", True),
    ("1512x512:cover,512x512", True),
    ("512x51:cover,512x512", True),
    ("1x1,2x2,3x3,4x4,5x5,6x6,7x7,8x8", True),
    ("1x1,2x2,3x3,4x4,5x5,6x6,7x7,8x8,9x9", False),  # more than MAX_RENDITIONS
    *((text, False) for text in DISAGREEING),
    ("4097x512", False),
    ("0x512", False),
    ("512x0", False),
    ("00512x512", False),
    ("512x512:Cover", False),
    ("512X512", False),
    ("512x512:stretch", False),
    ("512x512:", False),
    ("512x512:cover:cover", False),
    ("512", False),
    ("512x", False),
    ("x512", False),
    ("-5x5", False),
    ("+5x5", False),
    ("5.0x5", False),
    ("", False),
    (" ", False),
    (",", False),
    ("512x512,", False),
    (",512x512", False),
    ("512x512,,256x256", False),
    ("512x512;256x256", False),
    ("\t512x512", False),
    ("512x512\n", False),
    ("\uff15\uff11\uff12x512", False),  # fullwidth digits: int() would read them
    ("512x512 :cover", False),
    ("512x512: cover", False),
    ("512 x512", False),
]

FORMATS = [
    ("jpeg,webp", True),
    ("jpeg", True),
    ("webp,jpeg", True),
    ("jpeg,webp,avif", True),
    ("avif, jpeg ,webp", True),
    ("webp", False),  # the avatarUrl is a .jpg
    ("webp,avif", False),
    ("jpeg,jpeg", False),
    ("jpeg,webp,webp", False),
    ("webp,jpeg,webp", False),
    ("jpg", False),
    ("JPEG", False),
    ("jpeg,png", False),
    ("jpeg,gif", False),
    ("jpegwebp", False),
    ("jpeg webp", False),
    ("jpeg,", False),
    ("", False),
    ("xjpeg,webp", False),
    ("jpegx,webp", False),
]


def parses(parse: object, text: str) -> bool:
    try:
        parse(text)  # type: ignore[operator]
    except (ValueError, SettingsError):
        return False
    return True


def pattern_accepts(pattern: str, text: str) -> bool:
    # CloudFormation matches the whole value (Java's String.matches).
    return re.fullmatch(pattern, text) is not None


@pytest.mark.parametrize(("text", "accepted"), RENDITIONS)
def test_renditions_pattern_and_parser_agree(text: str, accepted: bool) -> None:
    assert parses(spec.parse_renditions, text) is accepted
    assert pattern_accepts(spec.RENDITIONS_PATTERN, text) is accepted


@pytest.mark.parametrize(("text", "accepted"), FORMATS)
def test_output_formats_pattern_and_parser_agree(text: str, accepted: bool) -> None:
    assert parses(spec.parse_output_formats, text) is accepted
    assert pattern_accepts(spec.OUTPUT_FORMATS_PATTERN, text) is accepted


def test_the_pattern_reads_every_side_as_the_parser_does() -> None:
    side = re.compile(f"{spec._SIDE}")
    for n in range(0, 10_001):
        assert (side.fullmatch(str(n)) is not None) is (1 <= n <= spec.MAX_RENDITION_SIDE), n
    for padded in ("01", "007", "0512", "04096"):
        assert side.fullmatch(padded) is None


def _random_text(rng: random.Random, tokens: list[str], length: int) -> str:
    return "".join(rng.choice(tokens) for _ in range(rng.randint(0, length)))


def test_pattern_and_parser_agree_on_random_inputs() -> None:
    # Built from the grammar's own pieces, so most inputs are near misses rather than noise.
    rng = random.Random(11)
    pieces = ["512x512", "512x512", "256x256", "4096x1", "4097x2", "0x9", "x", ":cover", ":contain",
              ":fill", ",", ",", " ", "1", "0", "9", "x12", "\t", "X"]  # fmt: skip
    for _ in range(4000):
        text = _random_text(rng, pieces, 8)
        assert parses(spec.parse_renditions, text) is pattern_accepts(spec.RENDITIONS_PATTERN, text), text
    pieces = ["jpeg", "jpeg", "webp", "avif", "png", ",", ",", " ", "jpg", "J"]
    for _ in range(4000):
        text = _random_text(rng, pieces, 5)
        accepted = parses(spec.parse_output_formats, text)
        assert accepted is pattern_accepts(spec.OUTPUT_FORMATS_PATTERN, text), text
    noise = [*string.ascii_lowercase[:6], *string.digits, "x", ",", ":", " "]
    for _ in range(4000):
        text = _random_text(rng, noise, 14)
        assert parses(spec.parse_renditions, text) is pattern_accepts(spec.RENDITIONS_PATTERN, text), text


def test_the_template_parameters_carry_the_patterns() -> None:
    assert PARAMETERS["Renditions"]["AllowedPattern"] == spec.RENDITIONS_PATTERN
    assert PARAMETERS["OutputFormats"]["AllowedPattern"] == spec.OUTPUT_FORMATS_PATTERN
    for name in ("Renditions", "OutputFormats"):
        assert PARAMETERS[name]["ConstraintDescription"]


@pytest.mark.parametrize("text", DISAGREEING)
def test_the_disagreeing_inputs_are_refused_by_the_parameter(text: str) -> None:
    assert not pattern_accepts(PARAMETERS["Renditions"]["AllowedPattern"], text)


def test_output_formats_without_jpeg_are_refused_by_the_parameter() -> None:
    assert not pattern_accepts(PARAMETERS["OutputFormats"]["AllowedPattern"], "webp,avif")


def _parameter_of(variable: str) -> str:
    """The template parameter a function's environment variable is set from (!Ref)."""
    refs = {
        value["Ref"]
        for resource in TEMPLATE["Resources"].values()
        if resource["Type"] == "AWS::Serverless::Function"
        for name, value in ((resource["Properties"].get("Environment") or {}).get("Variables") or {}).items()
        if name == variable and isinstance(value, dict) and "Ref" in value
    }
    assert len(refs) == 1, f"{variable} should come from one parameter, got {refs}"
    return refs.pop()


@pytest.mark.parametrize(("variable", "default"), spec.environment_defaults().items())
def test_template_defaults_are_the_modules(variable: str, default: str) -> None:
    assert str(PARAMETERS[_parameter_of(variable)]["Default"]) == default


@pytest.mark.parametrize(
    ("variable", "bounds"),
    [
        ("JPEG_QUALITY", spec.QUALITY_BOUNDS),
        ("WEBP_QUALITY", spec.QUALITY_BOUNDS),
        ("MAX_UPLOAD_BYTES", spec.MAX_UPLOAD_BYTES_BOUNDS),
        ("MAX_IMAGE_PIXELS", spec.MAX_IMAGE_PIXELS_BOUNDS),
    ],
)
def test_template_bounds_are_the_modules(variable: str, bounds: tuple[int, int]) -> None:
    parameter = PARAMETERS[_parameter_of(variable)]
    assert (parameter["MinValue"], parameter["MaxValue"]) == bounds
    low, high = bounds
    for value, valid in ((low, True), (high, True), (low - 1, False), (high + 1, False)):
        assert parses(lambda v: AvatarSpec.from_environ({variable: v}), str(value)) is valid


def test_the_spec_reads_the_environment() -> None:
    loaded = AvatarSpec.from_environ(
        {
            "RENDITIONS": "640x480:contain,96x96",
            "OUTPUT_FORMATS": "webp,jpeg,avif",
            "JPEG_QUALITY": "90",
            "MAX_UPLOAD_BYTES": "2097152",
        }
    )
    assert loaded.renditions == (Rendition(640, 480, "contain"), Rendition(96, 96, "cover"))
    assert loaded.formats == ("webp", "jpeg", "avif")
    assert (loaded.jpeg_quality, loaded.webp_quality) == (90, spec.DEFAULT_WEBP_QUALITY)
    assert (loaded.max_upload_bytes, loaded.max_image_pixels) == (2097152, spec.DEFAULT_MAX_IMAGE_PIXELS)
    assert loaded.avatar_filename == "640x480.jpg"
    assert AvatarSpec.from_environ({}) == AvatarSpec()


@pytest.mark.parametrize(
    ("variable", "value", "complaint"),
    [
        *(("RENDITIONS", text, "RENDITIONS") for text in DISAGREEING),
        ("OUTPUT_FORMATS", "webp", "must include jpeg"),
        ("OUTPUT_FORMATS", "jpeg,gif", "gif"),
        ("JPEG_QUALITY", "high", "JPEG_QUALITY"),
        ("WEBP_QUALITY", "99", "WEBP_QUALITY"),
    ],
)
def test_a_bad_environment_fails_naming_the_variable(variable: str, value: str, complaint: str) -> None:
    with pytest.raises(SettingsError, match=complaint):
        AvatarSpec.from_environ({variable: value})


def test_direct_construction_is_checked_too() -> None:
    with pytest.raises(ValueError, match="jpeg"):
        AvatarSpec(formats=("webp",))
    with pytest.raises(ValueError, match="distinct"):
        AvatarSpec(renditions=(Rendition(64, 64), Rendition(64, 64, "contain")))
    with pytest.raises(ValueError, match=r"1\.\.4096"):
        Rendition(9999, 9999)


def test_the_environment_names_the_spec_it_was_read_from() -> None:
    custom = AvatarSpec.from_environ({"RENDITIONS": "300x200:contain", "OUTPUT_FORMATS": "jpeg,avif"})
    for one in (AvatarSpec(), custom):
        assert AvatarSpec.from_environ(one.environment()) == one
    variables = {field.metadata["env"] for field in dataclasses.fields(AvatarSpec)}
    assert set(custom.environment()) == variables


def test_canonical_text_round_trips_and_names_the_spec() -> None:
    default = AvatarSpec()
    assert spec.parse_renditions(spec.format_renditions(default.renditions)) == default.renditions
    assert default.canonical() == (
        "renditions=512x512:cover,256x256:cover,128x128:cover;formats=jpeg,webp;jpeg=82;webp=80"
    )
    assert re.fullmatch("[0-9a-f]{16}", default.digest())
    # Written differently, the same spec: the same digest.
    same = AvatarSpec.from_environ(
        {"RENDITIONS": " 512x512 ,256x256:cover,128x128", "OUTPUT_FORMATS": "jpeg, webp"}
    )
    assert same.digest() == default.digest()
    # What changes output changes the digest; limits do not.
    assert AvatarSpec(jpeg_quality=83).digest() != default.digest()
    assert AvatarSpec(formats=("webp", "jpeg")).digest() != default.digest()
    assert AvatarSpec(max_upload_bytes=2048).digest() == default.digest()

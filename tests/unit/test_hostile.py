"""Hostile structures (bench/hostile_images.py): refused before any decoder runs, and what the
pre-scan does not know is stopped by the decode backstop within its budget.

Resources are asserted through the kernel's accounting of the decoding child (wait4), never
wall-clock time; the full-size cases' costs are measured by `make bench` (bench/hostile.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from bench import hostile_images
from bench.hostile_images import Case
from imgpipe import bounded, imaging, structure

REFUSED = [case for case in hostile_images.CASES if case.reason == "too_complex"]
OTHERS = [case for case in hostile_images.CASES if case.reason != "too_complex"]
# ITIMER_PROF fires on the scheduler tick after the limit; pickling the verdict follows.
CPU_SLACK_SECONDS = 0.3


def _name(case: Case) -> str:
    return case.name


@pytest.fixture
def no_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails the test if the decoding child is started: the verdict must come before it."""

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("a decoder was started")

    monkeypatch.setattr(bounded, "call", refuse)


@pytest.mark.usefixtures("no_decoder")
@pytest.mark.parametrize("case", REFUSED, ids=_name)
def test_hostile_structure_is_refused_before_any_decoder(case: Case) -> None:
    data = hostile_images.build(case, case.test_size)
    with pytest.raises(imaging.ImageRejected) as caught:
        imaging.process(data, imaging.Options())
    assert caught.value.reason == "too_complex"
    # A message for people: what the file is and which structure was too much.
    named = {"jpeg": "The JPEG", "png": "The PNG", "gif": "The GIF", "webp": "WebP", "avif": "The image"}
    assert named[case.format] in str(caught.value)


@pytest.mark.parametrize("case", OTHERS, ids=_name)
def test_structures_that_cost_nothing_are_left_to_the_decoder(case: Case) -> None:
    data = hostile_images.build(case, case.test_size)
    assert structure.scan(data, case.format).problem is None
    if case.reason is None:
        assert imaging.process(data, imaging.Options()).outputs
    else:
        with pytest.raises(imaging.ImageRejected) as caught:
            imaging.process(data, imaging.Options())
        assert caught.value.reason == case.reason


@pytest.mark.parametrize(
    ("name", "size"),
    [
        ("jpeg-repeated-scans", 300_000),  # libjpeg: CPU inside one C call
        ("jpeg-empty-segments", 4_000_000),  # Pillow's header parser: memory and CPU in Python
        ("gif-comment-subblocks", 3_000_000),  # memory: a bytes object per sub-block
        ("png-text-keys", 3_000_000),  # dicts of a hundred thousand keys
    ],
)
def test_the_backstop_stops_structures_the_prescan_does_not_know(
    monkeypatch: pytest.MonkeyPatch, name: str, size: int
) -> None:
    # Given a pre-scan that knows nothing (it still reports the header's size: the budget)
    case = hostile_images.BY_NAME[name]
    monkeypatch.setattr(structure, "scan", lambda data, fmt: structure.Verdict(size=case.declared))
    # and a small budget, so the test stays short (the bench measures the real one)
    monkeypatch.setattr(imaging, "CPU_SECONDS_BASE", 0.3)
    monkeypatch.setattr(imaging, "CPU_SECONDS_PER_MEGAPIXEL", 0.02)
    monkeypatch.setattr(imaging, "MEMORY_BASE", 48 << 20)
    options = imaging.Options()
    data = hostile_images.build(case, size)
    cpu, memory = imaging.decode_budget(case.format, case.declared, len(data), options)

    # When it is processed
    with pytest.raises(imaging.ImageRejected) as caught:
        imaging.process(data, options)

    # Then it is a clean too_complex rejection, and the child stayed within its budget
    assert caught.value.reason == "too_complex"
    overrun = caught.value.__cause__
    assert isinstance(overrun, bounded.Overrun)
    assert str(overrun) in str(caught.value)
    assert overrun.usage.cpu_seconds <= cpu + CPU_SLACK_SECONDS
    assert overrun.usage.peak_above_parent <= memory + (16 << 20)


def test_budget_grows_with_pixels_and_never_passes_the_functions_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    options = imaging.Options()
    small = imaging.decode_budget("jpeg", (1600, 1200), 500_000, options)
    large = imaging.decode_budget("png", (8064, 6048), 97_000_000, options)
    unknown = imaging.decode_budget("png", None, 1_000, options)
    assert small[0] < 1.5
    assert small[1] < 160 << 20
    assert large[0] > 4
    assert large[1] > 800 << 20
    assert unknown[0] >= large[0] - 0.2  # no size found: the pixel cap's budget
    # In a 1024 MB Lambda the child gets what is left of the sandbox, not the model's 900 MB.
    monkeypatch.setattr(imaging, "_FUNCTION_MEMORY_MB", 1024)
    capped = imaging.decode_budget("png", (8064, 6048), 97_000_000, options)
    assert capped[1] <= (1024 << 20) - bounded.rss_bytes()


def test_a_little_junk_and_fill_between_jpeg_segments_is_tolerated() -> None:
    # Pillow skips junk and 0xFF fill between segments, and real files have a few bytes of it
    # (Pillow's junk_jpeg_header.jpg): only floods are refused.
    base = hostile_images._jpeg((64, 64))
    sof = base.index(b"\xff\xc0")
    padded = base[:sof] + b"junk!" + b"\xff" * 100 + base[sof:]
    assert structure.scan(padded, "jpeg") == structure.Verdict(size=(64, 64))
    assert imaging.process(padded, imaging.Options()).source_width == 64

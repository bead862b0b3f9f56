"""`imgpipe process` on real files: what it writes, prints and exits with."""

from __future__ import annotations

import base64
import io
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from imgpipe_local import cli, process_cmd
from tests.unit import imaging_fixtures as fx


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "in" / "photo.jpg"
    path.parent.mkdir()
    path.write_bytes(fx.orientation(6))
    return path


def test_writes_every_rendition_and_the_placeholder(
    photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert process_cmd.main([str(photo), "--out", str(out)]) == 0

    folder = out / "photo"
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(
        [f"{s}x{s}.{ext}" for s in (512, 256, 128) for ext in ("jpg", "webp")] + ["placeholder.txt"]
    )
    for size in (512, 256, 128):
        for ext, fmt in (("jpg", "JPEG"), ("webp", "WEBP")):
            with Image.open(folder / f"{size}x{size}.{ext}") as im:
                assert (im.format, im.size) == (fmt, (size, size))
                # The EXIF-rotated photo arrives upright: red top-left.
                assert fx.close_rgb(im.convert("RGB").getpixel((3, 3)), fx.RED)
    uri = (folder / "placeholder.txt").read_text().strip()
    Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).load()

    printed = capsys.readouterr().out
    assert "jpeg 1200x800" in printed
    size_512 = (folder / "512x512.jpg").stat().st_size
    assert f"512x512.jpg\tjpeg\t512x512\t{size_512} bytes" in printed


def test_options_shape_the_outputs(photo: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = [
        str(photo),
        "--out",
        str(out),
        "--renditions",
        "300x100:contain",
        "--formats",
        "webp",
        "--quality",
        "50",
    ]
    assert process_cmd.main(args) == 0
    assert sorted(p.name for p in (out / "photo").iterdir()) == ["300x100.webp", "placeholder.txt"]
    with Image.open(out / "photo" / "300x100.webp") as im:
        assert im.size == (150, 100)  # 1200x800 contained in 300x100


def test_rejection_makes_the_exit_status_non_zero(
    photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given one good photo, a text file named like a picture and a missing file
    fake = tmp_path / "in" / "fake.png"
    fake.write_bytes(b"hello, not an image")
    missing = tmp_path / "in" / "missing.jpg"
    out = tmp_path / "out"

    status = process_cmd.main([str(photo), str(fake), str(missing), "--out", str(out)])

    # Then the good one is still processed, the others are reported, and the status says so
    assert status == 1
    assert (out / "photo" / "512x512.jpg").is_file()
    assert not (out / "fake").exists()
    err = capsys.readouterr().err
    assert f"{fake}: rejected (not_an_image)" in err
    assert f"{missing}: cannot read" in err


def test_too_big_files_are_refused_before_reading(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = tmp_path / "big.png"
    big.write_bytes(fx.wrong_extension())
    assert process_cmd.main([str(big), "--out", str(tmp_path / "out"), "--max-bytes", "100"]) == 1
    assert "rejected (too_many_bytes)" in capsys.readouterr().err


def test_same_stem_files_get_separate_folders(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(fx.orientation(1))
    (tmp_path / "a.png").write_bytes(fx.wrong_extension())
    out = tmp_path / "out"
    assert process_cmd.main([str(tmp_path / "a.jpg"), str(tmp_path / "a.png"), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a", "a-2"]


@pytest.mark.parametrize("bad", [["--renditions", "512"], ["--formats", "gif"], ["--quality", "0"]])
def test_bad_options_are_usage_errors(photo: Path, tmp_path: Path, bad: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        process_cmd.main([str(photo), "--out", str(tmp_path / "out"), *bad])
    assert exited.value.code == 2


def test_the_imgpipe_command_routes_here(photo: Path, tmp_path: Path) -> None:
    assert cli.main(["process", str(photo), "--out", str(tmp_path / "out")]) == 0
    # And as an installed console entry point, in a fresh interpreter:
    done = subprocess.run(
        [sys.executable, "-m", "imgpipe_local", "process", str(photo), "--out", str(tmp_path / "cli")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "cli" / "photo" / "128x128.webp").is_file()

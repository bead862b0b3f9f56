"""`imgpipe process FILE... --out DIR`: the processor's imaging core on local files.

Each input gets its own folder DIR/<stem>/ holding exactly what the processor would upload
(`<WxH>.<ext>`) plus `placeholder.txt` (the LQIP data: URI of the manifest). Exit status
is 1 when any file is rejected or unreadable, so the command can vet a folder in a script.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from imgpipe import imaging, spec


def _options(args: argparse.Namespace) -> imaging.Options:
    quality = {}
    if args.quality is not None:
        quality = {"jpeg_quality": args.quality, "webp_quality": args.quality, "avif_quality": args.quality}
    return imaging.Options(
        renditions=spec.parse_renditions(args.renditions),
        formats=imaging.parse_formats(args.formats),
        max_bytes=args.max_bytes,
        max_pixels=args.max_pixels,
        **quality,
    )


def _parser() -> argparse.ArgumentParser:
    defaults = imaging.Options()
    parser = argparse.ArgumentParser(prog="imgpipe process", description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR")
    parser.add_argument("--renditions", default=spec.DEFAULT_RENDITIONS, metavar="SPEC")
    parser.add_argument("--formats", default=",".join(defaults.formats), metavar="LIST")
    parser.add_argument("--quality", type=int, metavar="N", help="quality for every output format (1-100)")
    parser.add_argument("--max-bytes", type=int, default=defaults.max_bytes)
    parser.add_argument("--max-pixels", type=int, default=defaults.max_pixels)
    return parser


def _folder(out: Path, source: Path, used: set[str]) -> Path:
    name, n = source.stem or "image", 1
    while name in used:
        n += 1
        name = f"{source.stem}-{n}"
    used.add(name)
    return out / name


def _read(path: Path, max_bytes: int) -> bytes:
    # Refuse before reading a huge file into memory, as the processor does with S3's size.
    size = path.stat().st_size
    if size > max_bytes:
        raise imaging.ImageRejected("too_many_bytes", f"The file is {size} bytes; at most {max_bytes}.")
    return path.read_bytes()


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        options = _options(args)
    except ValueError as exc:
        parser.error(str(exc))

    failed = 0
    used: set[str] = set()
    for path in args.files:
        try:
            result = imaging.process(_read(path, options.max_bytes), options)
        except imaging.ImageRejected as exc:
            failed += 1
            print(f"{path}: rejected ({exc.reason}): {exc}", file=sys.stderr)
            continue
        except OSError as exc:
            failed += 1
            print(f"{path}: cannot read: {exc.strerror or exc}", file=sys.stderr)
            continue

        folder = _folder(args.out, path, used)
        folder.mkdir(parents=True, exist_ok=True)
        print(
            f"{path}: {result.source_format} {result.source_width}x{result.source_height} "
            f"version {result.version} -> {folder}"
        )
        for output in result.outputs:
            (folder / output.filename).write_bytes(output.data)
            size = f"{output.width}x{output.height}"
            print(f"  {output.filename}\t{output.format}\t{size}\t{len(output.data)} bytes")
        (folder / "placeholder.txt").write_text(result.placeholder + "\n")
        print(f"  placeholder.txt\t{len(result.placeholder)} bytes")
        for note in result.notes:
            print(f"  note: {note}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

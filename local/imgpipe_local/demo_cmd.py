"""`imgpipe demo` (`make demo`): the whole flow once, headless, over real HTTP.

Starts the local stack, signs in as the demo user, asks for an upload, posts a 12 MP
photo to the presigned URL, waits for the renditions, fetches each through the CDN,
prints what came back with timings, and stops. Exit 0 on success; otherwise a message
naming the step that failed and exit 1.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import mimetypes
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from PIL import Image

from imgpipe_local import samples
from imgpipe_local.client import Client, StepFailed, Target, renditions
from imgpipe_local.stack import LocalStack

ROOT = Path(__file__).resolve().parents[2]
LOG_FILE = ROOT / ".imgpipe-local" / "demo.log"
SERVED = "upload → served"  # from the first byte sent to the last rendition fetched


@dataclass
class Report:
    timings: dict[str, float] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    source: dict[str, Any] = field(default_factory=dict)
    upload_bytes: int = 0
    label: str = ""
    step: str = "start the local stack"  # the step under way, named if anything fails

    def timings_with_total(self) -> dict[str, float]:
        return {**self.timings, SERVED: sum(self.timings[s] for s in ("upload", "processing", "CDN fetch"))}

    @contextmanager
    def timed(self, step: str) -> Iterator[None]:
        self.step = step
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[step] = time.perf_counter() - start


def fetch_renditions(client: Client, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """GET every rendition from the CDN and check it is what the manifest says it is.

    The versioned URLs, as the web page uses them: they hold exactly this upload's bytes,
    where a stable URL may still hold the previous avatar for a moment (the processor
    copies to it after publishing avatar.json, and a CDN keeps it for its max-age).
    """
    rows = []
    for entry in renditions(manifest):
        response = client.cdn_get(entry["url"])
        if response.status_code != 200:
            raise StepFailed("cdn", f"{entry['url']}: HTTP {response.status_code}", response.status_code)
        content_type = response.headers.get("Content-Type", "")
        with Image.open(io.BytesIO(response.content)) as image:
            size = image.size
            actual_format = (image.format or "").lower()
        served = (content_type, size, len(response.content))
        expected = (entry["contentType"], (entry["width"], entry["height"]), entry["bytes"])
        if served != expected:
            raise StepFailed("cdn", f"{entry['url']}: served {served}, the manifest says {expected}")
        rows.append(
            {
                "rendition": entry["name"],
                "format": actual_format,
                "size": f"{size[0]}x{size[1]}",
                "bytes": len(response.content),
                "content_type": content_type,
                "cache_control": response.headers.get("Cache-Control", ""),
            }
        )
    if not rows:
        raise StepFailed("cdn", "the manifest lists no renditions")
    return rows


def run_flow(
    client: Client, username: str, password: str, image: bytes, content_type: str, report: Report
) -> None:
    """Sign in, upload `image`, wait for it, fetch its renditions: the demo's measured flow."""
    report.upload_bytes = len(image)
    with report.timed("sign-in"):
        token = client.sign_in(username, password)["AccessToken"]
    with report.timed("key_upload"):
        upload = client.key_upload(token, content_type)
    if len(image) > upload.max_bytes:
        raise StepFailed(
            "upload", f"the image is {len(image)} bytes; the stack accepts at most {upload.max_bytes}"
        )
    with report.timed("upload"):
        client.upload(upload, image, content_type)
    with report.timed("processing"):
        # Polled every 20 ms at most: the step measures the pipeline, not the backoff.
        manifest = client.wait_for_avatar(upload, max_poll=0.02)
    latest = manifest["latest"]
    if latest["state"] != "ready":
        raise StepFailed(
            "processing", f"upload {latest['state']}: {latest.get('reason')} - {latest.get('message')}"
        )
    with report.timed("CDN fetch"):
        report.rows = fetch_renditions(client, manifest)
    report.source = manifest["avatar"]["source"]


def print_report(reports: list[Report], out: TextIO) -> None:
    """The renditions of the last upload, then the timings of each upload side by side."""
    last = reports[-1]
    src = last.source
    print(
        f"\nuploaded {last.upload_bytes / 1e6:.1f} MB {src.get('format')} "
        f"{src.get('width')}x{src.get('height')}; served from the CDN:\n",
        file=out,
    )
    columns = [
        ("rendition", "rendition"),
        ("format", "format"),
        ("WxH", "size"),
        ("bytes", "bytes"),
        ("Content-Type", "content_type"),
        ("Cache-Control", "cache_control"),
    ]
    widths = [max(len(title), *(len(str(row[key])) for row in last.rows)) for title, key in columns]
    print("  ".join(title.ljust(w) for (title, _), w in zip(columns, widths, strict=True)), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for row in last.rows:
        print(
            "  ".join(str(row[key]).ljust(w) for (_, key), w in zip(columns, widths, strict=True)), file=out
        )
    print(f"\n{'timings':<16}" + "".join(f"{r.label:>16}" for r in reports), file=out)
    for step in [*last.timings, SERVED]:
        cells = "".join(f"{r.timings_with_total()[step] * 1000:>13.0f} ms" for r in reports)
        print(f"  {step:<14}{cells}", file=out)


def load_images(path: str | None, count: int) -> list[tuple[bytes, str]]:
    """`count` uploads of one photo, each with other bytes (a new version) that display the same."""
    if path is None:
        data, content_type = samples.photo_jpeg(orientation=6), "image/jpeg"
        return [(samples.with_comment(data, f"upload {n}"), content_type) for n in range(count)]
    content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
    return [(Path(path).read_bytes(), content_type)] * count


def main(argv: list[str] | None = None, *, out: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(prog="imgpipe demo", description=__doc__.splitlines()[0])
    parser.add_argument("--image", help="upload this file instead of a generated 12 MP photo")
    parser.add_argument(
        "--aws-latency-ms",
        type=float,
        default=30,
        metavar="N",
        help="also run the flow with every AWS call of the functions waiting N ms, as in Lambda "
        "(default 30; 0 = only at moto's speed)",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="show the functions' logs instead of filing them"
    )
    args = parser.parse_args(argv)

    # A cold start, then warm, at moto's speed; the same at Lambda-like latency.
    latencies = [0.0, args.aws_latency_ms] if args.aws_latency_ms else [0.0]
    runs = [(ms, temperature) for ms in latencies for temperature in ("cold", "warm")]
    reports = [Report(label=f"{temperature} +{ms:g}ms" if ms else temperature) for ms, temperature in runs]
    current = reports[0]
    LOG_FILE.parent.mkdir(exist_ok=True)
    try:
        with LOG_FILE.open("w") as log, contextlib.ExitStack() as quiet:
            if not args.verbose:
                # The functions log JSON to stdout as they do in Lambda; keep it beside the report.
                quiet.enter_context(contextlib.redirect_stdout(log))
            images = load_images(args.image, len(runs))
            print("starting the local stack…", file=out, flush=True)
            with LocalStack(root=ROOT, ports=LocalStack.free_ports()) as stack:
                client = Client(Target.from_outputs(stack.outputs, cognito_url=stack.moto_url))
                print(f"API {client.target.api_url}  CDN {client.target.cdn_url}", file=out, flush=True)
                user = stack.demo_user
                for (ms, temperature), current, (image, content_type) in zip(
                    runs, reports, images, strict=True
                ):
                    if temperature == "cold" and ms:
                        assert stack.runtime is not None
                        stack.runtime.set_aws_latency(ms)
                    run_flow(client, user.username, user.password, image, content_type, current)
                current.step = "stop the local stack"
    except StepFailed as failure:
        print(f"\nimgpipe demo FAILED at step {failure.step!r}: {failure.message}", file=out)
        print_log_tail(out, args.verbose)
        return 1
    except Exception as exc:  # noqa: BLE001 - the command's contract: any failure is a message and exit 1
        print(f"\nimgpipe demo FAILED at step {current.step!r}: {type(exc).__name__}: {exc}", file=out)
        traceback.print_exc(file=sys.stderr)
        print_log_tail(out, args.verbose)
        return 1
    print_report(reports, out)
    if len(latencies) > 1:
        fast, slow = (reports[i].timings_with_total()[SERVED] * 1000 for i in (1, 3))
        print(
            f"\n{SERVED} (warm): {fast:.0f} ms at moto's speed, {slow:.0f} ms with "
            f"{args.aws_latency_ms:g} ms per AWS call ({slow / fast:.1f}x)",
            file=out,
        )
    print(f"\ndemo OK (function logs: {LOG_FILE.relative_to(ROOT)})", file=out)
    return 0


def print_log_tail(out: TextIO, verbose: bool, lines: int = 8) -> None:
    if verbose or not LOG_FILE.exists():
        return
    tail = LOG_FILE.read_text(errors="replace").splitlines()[-lines:]
    if tail:
        print(f"\nlast lines of {LOG_FILE.relative_to(ROOT)}:", *tail, sep="\n  ", file=out)

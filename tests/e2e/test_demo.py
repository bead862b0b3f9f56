"""`imgpipe demo`'s flow and report, run against the session's stack."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from imgpipe_local import demo_cmd, samples
from imgpipe_local.client import Client, StepFailed
from imgpipe_local.demo_cmd import Report, print_report, run_flow
from tests.e2e.conftest import E2EStack


def test_the_demo_flow_reports_every_rendition_served(stack: E2EStack, client: Client) -> None:
    report = Report(label="once")

    run_flow(client, stack.username, stack.password, samples.photo_jpeg(900, 1200), "image/jpeg", report)

    assert {(row["rendition"], row["format"]) for row in report.rows} >= {
        ("512x512", "jpeg"),
        ("512x512", "webp"),
    }
    assert all(row["size"] == row["rendition"] for row in report.rows)  # cover renditions are exact
    assert list(report.timings) == ["sign-in", "key_upload", "upload", "processing", "CDN fetch"]
    assert report.source["width"] == 900
    assert report.source["height"] == 1200
    out = io.StringIO()
    print_report([report], out)
    assert "upload → served" in out.getvalue()
    assert "512x512    webp" in out.getvalue()


def test_the_demo_flow_names_the_step_that_failed(stack: E2EStack, client: Client) -> None:
    report = Report(label="once")

    with pytest.raises(StepFailed) as failure:
        run_flow(client, stack.username, stack.password, samples.not_an_image(), "image/jpeg", report)

    assert failure.value.step == "processing"
    assert "rejected" in failure.value.message
    assert report.step == "processing"


def test_the_demo_compares_upload_to_served_without_and_with_aws_latency(tmp_path: Path) -> None:
    photo = tmp_path / "small.jpg"
    photo.write_bytes(samples.photo_jpeg(300, 400))
    out = io.StringIO()

    code = demo_cmd.main(["--image", str(photo), "--aws-latency-ms", "30"], out=out)

    report = out.getvalue()
    assert code == 0, report
    assert re.search(r"timings\s+cold\s+warm\s+cold \+30ms\s+warm \+30ms", report), report
    assert re.search(
        r"upload → served \(warm\): \d+ ms at moto's speed, \d+ ms with 30 ms per AWS call", report
    )

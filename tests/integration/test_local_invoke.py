"""`imgpipe invoke`: one function of a template, once, with an event file, no Docker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from imgpipe_local import invoke_cmd
from imgpipe_local.stack import LocalStack
from tests.conftest import ROOT
from tests.integration.local_support import TRIGGER_TEMPLATE, write_project

ENV_HANDLER = """\
import os

import boto3


def lambda_handler(event, context):
    if event.get("fail"):
        raise KeyError("no such thing")
    s3 = boto3.client("s3")
    buckets = sorted(b["Name"] for b in s3.list_buckets()["Buckets"])
    print("a log line")
    return {"event": event, "record_dir": os.environ["RECORD_DIR"], "buckets": buckets,
            "function": context.function_name}
"""


def project(tmp_path: Path) -> Path:
    path = write_project(tmp_path, TRIGGER_TEMPLATE, {"recorder": ENV_HANDLER})
    (tmp_path / "event.json").write_text(json.dumps({"hello": "world"}))
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = invoke_cmd.main(list(argv))
    return code, json.loads(capsys.readouterr().out)


def test_invoke_runs_the_function_against_an_embedded_moto_with_the_template_s_buckets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = project(tmp_path)

    code, result = run(
        capsys,
        "Recorder",
        "-e",
        str(tmp_path / "event.json"),
        "-t",
        str(path),
        "--parameter-overrides",
        "RecordDir=/x",
    )

    assert code == 0
    assert result["event"] == {"hello": "world"}
    assert result["record_dir"] == "/x"
    assert "imgpipe-inbox" in result["buckets"]
    assert result["function"] == "imgpipe-Recorder"


def test_env_vars_file_overrides_like_sam(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = project(tmp_path)
    (tmp_path / "env.json").write_text(json.dumps({"Recorder": {"RECORD_DIR": "/from-env-file"}}))

    code, result = run(
        capsys,
        "Recorder",
        "-e",
        str(tmp_path / "event.json"),
        "-t",
        str(path),
        "--parameter-overrides",
        "RecordDir=/x",
        "--env-vars",
        str(tmp_path / "env.json"),
    )

    assert code == 0
    assert result["record_dir"] == "/from-env-file"


def test_a_function_error_is_reported_as_lambda_does_with_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = project(tmp_path)
    (tmp_path / "event.json").write_text(json.dumps({"fail": True}))

    code, result = run(
        capsys,
        "Recorder",
        "-e",
        str(tmp_path / "event.json"),
        "-t",
        str(path),
        "--parameter-overrides",
        "RecordDir=/x",
    )

    assert code == 1
    assert result["errorType"] == "KeyError"
    assert "no such thing" in result["errorMessage"]


def test_invoke_against_a_running_dev_stack_sees_its_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = project(tmp_path)
    with LocalStack(root=tmp_path, ports=LocalStack.free_ports(), parameters={"RecordDir": "/x"}) as stack:
        code, result = run(
            capsys,
            "Recorder",
            "-e",
            str(tmp_path / "event.json"),
            "-t",
            str(path),
            "--dev",
            stack.web_url,
            "--parameter-overrides",
            "RecordDir=/y",
        )
        stack_name = stack.stack_name

    assert code == 0
    assert f"{stack_name}-inbox" in result["buckets"]


def test_the_real_presign_function_answers_its_sample_event(capsys: pytest.CaptureFixture[str]) -> None:
    code, result = run(
        capsys, "PresignUploadFunction", "-e", str(ROOT / "events" / "presign_upload_key_upload.json")
    )

    assert code == 0
    assert result["statusCode"] == 200
    body = json.loads(result["body"])
    assert body["key"].startswith("avatars/")
    assert body["key"].endswith("/original")
    assert body["url"].endswith("/imgpipe-uploads-123456789012-us-east-1")


def test_an_unknown_function_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit, match="NoSuchFunction"):
        invoke_cmd.main(["NoSuchFunction", "-e", str(ROOT / "events" / "presign_upload_key_upload.json")])

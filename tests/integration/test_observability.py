"""What each function logs and imports, seen from a fresh process as Lambda would start it.

A fresh interpreter per case: Powertools' Logger configures the stdlib logger of its service once
per process, and a module once imported stays imported, so neither question can be answered
inside the test process.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from typing import Any

import boto3
import pytest
from PIL import Image

from imgpipe import keys
from tests.conftest import FUNCTIONS, ROOT, load_event

UPLOADS = "imgpipe-uploads-logs"
ASSETS = "imgpipe-assets-logs"
USER = "3f1c2a9e-8b7d-4e6f-9a01-23456789abcd"
REQUEST_ID = "8c7d1e2f-0a1b-4c3d-9e8f-7a6b5c4d3e2f"

FUNCTION_ENV = {
    "presign_upload": {
        "UPLOADS_BUCKET": UPLOADS,
        "UPLOAD_URL_TTL_SECONDS": "120",
        "ASSETS_BASE_URL": "https://cdn.example.com",
    },
    "delete_avatar": {"UPLOADS_BUCKET": UPLOADS, "ASSETS_BUCKET": ASSETS},
    "process_image": {"UPLOADS_BUCKET": UPLOADS, "ASSETS_BUCKET": ASSETS, "RENDITIONS": "64x64:cover"},
}
LAMBDA_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "POWERTOOLS_METRICS_NAMESPACE": "imgpipe",
}

INVOKE = """
import json, sys
from imgpipe_local.handlers import load_handler
from tests.conftest import FakeLambdaContext
handler = load_handler(sys.argv[1])
handler(json.loads(sys.argv[2]), FakeLambdaContext(aws_request_id=sys.argv[3]))
"""

IMPORT = """
import json, sys
from imgpipe_local.handlers import load_module
module = load_module(sys.argv[1])
print(json.dumps({"xray": "aws_xray_sdk" in sys.modules, "tracer": type(module.tracer).__name__}))
"""


def run(code: str, environment: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("layers/shared", "local", ".")),
        **LAMBDA_ENV,
        **environment,
    }
    completed = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert completed.returncode == 0, completed.stderr
    return completed


def uploaded_event(moto_url: str, user: str) -> dict[str, Any]:
    """An S3 event for an original really stored in moto, as the processor receives it."""
    s3 = boto3.client(
        "s3", endpoint_url=moto_url, region_name="us-east-1", aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )  # fmt: skip
    for bucket in (UPLOADS, ASSETS):
        s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=UPLOADS, VersioningConfiguration={"Status": "Enabled"})
    data = io.BytesIO()
    Image.new("RGB", (96, 80), (20, 140, 200)).save(data, "JPEG")
    put = s3.put_object(
        Bucket=UPLOADS, Key=keys.upload_key(user), Body=data.getvalue(), Metadata={"upload-id": "u-1"}
    )
    event = load_event("process_image_put")
    record = event["Records"][0]["s3"]
    record["bucket"]["name"] = UPLOADS
    record["object"].update(
        key=keys.upload_key(user),
        size=len(data.getvalue()),
        eTag=put["ETag"].strip('"'),
        versionId=put["VersionId"],
    )
    return event


@pytest.mark.parametrize("service", ["imgpipe", "avatars"])
def test_domain_log_lines_carry_the_handlers_shape_and_request_id(moto_url: str, service: str):
    # Given the processor in its own process (the service name need not match the package's)
    environment = {
        **FUNCTION_ENV["process_image"],
        "POWERTOOLS_SERVICE_NAME": service,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "AWS_ENDPOINT_URL": moto_url,
    }

    # When it processes an upload
    completed = run(
        INVOKE,
        environment,
        str(FUNCTIONS / "process_image"),
        json.dumps(uploaded_event(moto_url, user=f"{USER}-{service}")),
        REQUEST_ID,
    )

    # Then imgpipe.avatars' stdlib line is a JSON line like the handler's, with the request id
    lines = [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]
    logs = [line for line in lines if "level" in line]
    [domain] = [line for line in logs if line["message"] == "avatar processed"]
    assert domain["name"] == "imgpipe.avatars"
    assert domain["function_request_id"] == REQUEST_ID
    assert domain["service"] == service
    assert domain["level"] == "INFO"
    assert domain["cold_start"] is True
    # the keys every line of the handler's own carries, the domain line carries too
    handler_keys = {"level", "location", "message", "timestamp", "service", "cold_start", "function_name",
                    "function_memory_size", "function_arn", "function_request_id", "name"}  # fmt: skip
    assert handler_keys <= domain.keys()
    assert "avatar processed" not in completed.stderr  # not also printed by another handler


@pytest.mark.parametrize("function", sorted(FUNCTION_ENV))
def test_no_xray_sdk_unless_tracing_is_on(function: str):
    code_uri = str(FUNCTIONS / function)
    in_lambda = {**FUNCTION_ENV[function], "LAMBDA_TASK_ROOT": code_uri, "POWERTOOLS_SERVICE_NAME": "imgpipe"}

    off = json.loads(run(IMPORT, {**in_lambda, "POWERTOOLS_TRACE_DISABLED": "true"}, code_uri).stdout)
    on = json.loads(run(IMPORT, in_lambda, code_uri).stdout)

    assert off == {"xray": False, "tracer": "Untraced"}
    assert on == {"xray": True, "tracer": "Tracer"}

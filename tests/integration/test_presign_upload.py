"""POST /avatars/key_upload through the real handler, then the browser's multipart POST into S3.

moto server stands in for S3 on 127.0.0.1. It does not check POST policies (the unit tests
decode and verify those); here the handler's URL and fields must be enough to land the
object at the caller's key with its Content-Type and upload id.
"""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import boto3
import pytest
import requests
from PIL import Image

from imgpipe.settings import SettingsError
from imgpipe_local.handlers import Handler, load_handler
from tests.conftest import FUNCTIONS, load_event
from tests.openapi_support import check_function_answer

BUCKET = "imgpipe-uploads-test"
SUB = "3f1c2a9e-8b7d-4e6f-9a01-23456789abcd"  # the sub in events/presign_upload_key_upload.json
CDN = "https://d111111abcdef8.cloudfront.net"

# Refused requests publish no metric, which Powertools mentions once per flush.
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")


@pytest.fixture
def s3(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing-session-token",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        # What the local stack sets for its functions (imgpipe_local.runtime.aws_environment)
        "AWS_ENDPOINT_URL": moto_url,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    client = boto3.client("s3")
    if not any(b["Name"] == BUCKET for b in client.list_buckets()["Buckets"]):
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return client


@pytest.fixture
def handler_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "UPLOADS_BUCKET": BUCKET,
        "MAX_UPLOAD_BYTES": "1048576",
        "UPLOAD_URL_TTL_SECONDS": "120",
        "ASSETS_BASE_URL": CDN + "/",
        "RENDITIONS": "512x512:cover,256x256:cover,128x128:cover",
        "POWERTOOLS_SERVICE_NAME": "imgpipe",
        "POWERTOOLS_METRICS_NAMESPACE": "imgpipe",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def handler(s3: Any, handler_env: None) -> Handler:
    return load_handler(FUNCTIONS / "presign_upload")


def png_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 90)).save(out, format="PNG")
    return out.getvalue()


def invoke(
    handler: Handler, event: dict[str, Any], lambda_context: Any, *, documented: bool = True
) -> tuple[int, dict[str, Any]]:
    response = handler(event, lambda_context)
    assert response["headers"]["Content-Type"] == "application/json"
    if documented:
        # Every answer these tests provoke is held to docs/openapi.yaml.
        check_function_answer(event, response)
    return int(response["statusCode"]), json.loads(response["body"])


def test_presigned_post_lands_the_upload_at_the_callers_key(handler: Handler, s3: Any, lambda_context: Any):
    # Given the API Gateway event of a signed-in user asking to upload a PNG
    status, body = invoke(handler, load_event("presign_upload_key_upload"), lambda_context)

    # Then the answer describes one upload for that user's key
    assert status == 200
    key = f"avatars/{SUB}/original"
    assert body["key"] == body["fields"]["key"] == key
    assert body["maxBytes"] == 1048576
    assert body["avatarUrl"] == f"{CDN}/avatars/{SUB}/512x512.jpg"
    assert body["manifestUrl"] == f"{CDN}/avatars/{SUB}/avatar.json"
    # Path-style on the IP endpoint, although the handler asks for virtual addressing (for AWS)
    assert body["url"] == f"{s3.meta.endpoint_url}/{BUCKET}"
    assert body["fields"]["x-amz-security-token"] == "testing-session-token"

    # When the browser posts the form exactly as given, the file last as S3 requires
    # (the file part's own type is not what S3 stores: the pinned field is)
    image = png_bytes()
    upload = requests.post(
        body["url"],
        data=body["fields"],
        files={"file": ("me.png", image, "application/octet-stream")},
        timeout=10,
    )

    # Then S3 stores it at the key, with the pinned Content-Type and upload id
    assert upload.status_code == 204, upload.text
    stored = s3.get_object(Bucket=BUCKET, Key=key)
    assert stored["Body"].read() == image
    assert stored["ContentType"] == "image/png"
    assert stored["Metadata"] == {"upload-id": body["uploadId"]}
    assert stored["VersionId"]


def test_a_second_upload_adds_a_version_of_the_same_key(handler: Handler, s3: Any, lambda_context: Any):
    event = load_event("presign_upload_key_upload")
    ids = []
    for _ in range(2):
        _, body = invoke(handler, event, lambda_context)
        response = requests.post(
            body["url"], data=body["fields"], files={"file": ("me.png", png_bytes(), "image/png")}, timeout=10
        )
        assert response.status_code == 204
        ids.append(body["uploadId"])

    key = f"avatars/{SUB}/original"
    assert ids[0] != ids[1]
    assert s3.head_object(Bucket=BUCKET, Key=key)["Metadata"] == {"upload-id": ids[1]}
    versions = s3.list_object_versions(Bucket=BUCKET, Prefix=key)["Versions"]
    assert len(versions) >= 2


def test_request_fields_cannot_move_the_key(handler: Handler, lambda_context: Any):
    event = load_event("presign_upload_key_upload")
    event["body"] = json.dumps(
        {"contentType": "image/jpeg", "key": "avatars/victim/original", "user": "victim", "sub": "victim"}
    )
    event["queryStringParameters"] = {"key": "avatars/victim/original"}
    event["rawQueryString"] = "key=avatars/victim/original"

    status, body = invoke(handler, event, lambda_context)

    assert status == 200
    assert body["key"] == body["fields"]["key"] == f"avatars/{SUB}/original"
    assert body["fields"]["Content-Type"] == "image/jpeg"


def test_user_comes_from_the_authorizer_context(handler: Handler, lambda_context: Any):
    event = load_event("presign_upload_key_upload")
    event["requestContext"]["authorizer"]["lambda"]["sub"] = "auth0|../../other"

    status, body = invoke(handler, event, lambda_context)

    assert status == 200
    assert body["key"].startswith("avatars/u-")
    assert body["key"].count("/") == 2
    assert ".." not in body["key"]


def test_unknown_content_type_is_a_400_naming_the_allowed_ones(handler: Handler, lambda_context: Any):
    status, body = invoke(handler, load_event("presign_upload_bad_content_type"), lambda_context)

    assert status == 400
    assert "image/svg+xml" in body["message"]
    for allowed in ("image/jpeg", "image/png", "image/webp", "image/gif", "image/avif"):
        assert allowed in body["message"]


@pytest.mark.parametrize(
    ("raw_body", "message"),
    [
        ("{not json", "body must be JSON"),
        ("", "body must be JSON"),
        (None, "body must be JSON"),
        ('["image/png"]', "body must be JSON"),
        ('"image/png"', "body must be JSON"),
        ("{}", "body must be JSON"),
        ('{"content_type": "image/png"}', "body must be JSON"),
        ('{"contentType": 42}', "contentType must be a string"),
        ('{"contentType": null}', "contentType must be a string"),
        ('{"contentType": ["image/png"]}', "contentType must be a string"),
    ],
)
def test_malformed_bodies_are_a_400_with_a_message(
    handler: Handler, lambda_context: Any, raw_body: str | None, message: str
):
    event = load_event("presign_upload_key_upload")
    if raw_body is None:
        del event["body"]
    else:
        event["body"] = raw_body

    status, body = invoke(handler, event, lambda_context)

    assert status == 400
    assert message in body["message"]


def test_base64_encoded_body_is_decoded(handler: Handler, lambda_context: Any):
    # API Gateway base64-encodes bodies it does not consider text (e.g. a missing content-type).
    event = load_event("presign_upload_key_upload")
    event["body"] = base64.b64encode(b'{"contentType": "image/gif"}').decode()
    event["isBase64Encoded"] = True

    status, body = invoke(handler, event, lambda_context)

    assert status == 200
    assert body["fields"]["Content-Type"] == "image/gif"


@pytest.mark.parametrize(
    "authorizer", [None, {}, {"lambda": {}}, {"lambda": {"sub": ""}}, {"lambda": {"sub": 7}}]
)
def test_without_an_authorizer_subject_it_is_a_401(
    handler: Handler, lambda_context: Any, authorizer: dict[str, Any] | None
):
    event = load_event("presign_upload_key_upload")
    if authorizer is None:
        del event["requestContext"]["authorizer"]
    else:
        event["requestContext"]["authorizer"] = authorizer

    status, body = invoke(handler, event, lambda_context)

    assert status == 401
    assert body["message"] == "Unauthorized"


def test_other_routes_are_404(handler: Handler, lambda_context: Any):
    event = load_event("presign_upload_key_upload")
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/avatars/other"
    event["routeKey"] = event["requestContext"]["routeKey"] = "POST /avatars/other"

    # (a route the API does not have: API Gateway itself would answer, never the function)
    status, _ = invoke(handler, event, lambda_context, documented=False)

    assert status == 404


def test_missing_setting_fails_the_cold_start(s3: Any, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("UPLOADS_BUCKET", BUCKET)
    monkeypatch.setenv("MAX_UPLOAD_BYTES", "1048576")
    monkeypatch.setenv("ASSETS_BASE_URL", CDN)
    monkeypatch.setenv("RENDITIONS", "512x512:cover")
    monkeypatch.delenv("UPLOAD_URL_TTL_SECONDS", raising=False)

    with pytest.raises(RuntimeError, match="UPLOAD_URL_TTL_SECONDS"):
        load_handler(FUNCTIONS / "presign_upload")


def test_in_aws_the_url_is_the_buckets_regional_endpoint(
    handler_env: None, monkeypatch: pytest.MonkeyPatch, lambda_context: Any
):
    # The global endpoint 307-redirects a new bucket's POSTs to its region for hours,
    # and a browser's cross-origin form upload does not survive that redirect.
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    handler = load_handler(FUNCTIONS / "presign_upload")

    status, body = invoke(handler, load_event("presign_upload_key_upload"), lambda_context)

    assert status == 200
    assert body["url"] == f"https://{BUCKET}.s3.eu-west-1.amazonaws.com/"
    assert body["fields"]["x-amz-credential"].endswith("/eu-west-1/s3/aws4_request")


@pytest.mark.parametrize(
    ("renditions", "complaint"),
    [
        ("512 x 512:cover", "RENDITIONS: rendition '512 x 512:cover' is not WIDTHxHEIGHT"),
        ("0512x512:cover", "RENDITIONS: .* without leading zeros"),
        ("9999x9999:cover", r"RENDITIONS: rendition sides must be integers in 1\.\.4096"),
    ],
)
def test_a_rendition_spec_the_processor_refuses_fails_the_cold_start_too(
    handler_env: None, monkeypatch: pytest.MonkeyPatch, renditions: str, complaint: str
):
    # The same parser as the processor (imgpipe.spec), the same message: the two cannot disagree.
    monkeypatch.setenv("RENDITIONS", renditions)

    with pytest.raises(SettingsError, match=complaint):
        load_handler(FUNCTIONS / "presign_upload")


def test_the_avatar_url_names_the_first_rendition(
    s3: Any, handler_env: None, monkeypatch: pytest.MonkeyPatch, lambda_context: Any
):
    monkeypatch.setenv("RENDITIONS", " 640x480:contain, 96x96")
    handler = load_handler(FUNCTIONS / "presign_upload")

    status, body = invoke(handler, load_event("presign_upload_key_upload"), lambda_context)

    assert status == 200
    assert body["avatarUrl"] == f"{CDN}/avatars/{SUB}/640x480.jpg"

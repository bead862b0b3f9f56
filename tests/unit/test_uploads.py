"""imgpipe.uploads: the presigned POST policy is what bounds an upload, so it is decoded and checked
condition by condition, and its SigV4 signature is recomputed the way S3 verifies it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import boto3
import pytest
from botocore.config import Config

from imgpipe import keys, uploads

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # AWS's documented example key
REGION = "eu-west-1"
BUCKET = "imgpipe-uploads-123456789012"
USER = "3f1c2a9e-8b7d-4e6f-9a01-23456789abcd"
MAX_BYTES = 10 * 1024 * 1024
TTL = 300


@pytest.fixture(autouse=True)
def _no_local_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's shell may point boto3 at the local stack; these tests sign for real AWS.
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)


def s3_client(session_token: str | None = None) -> Any:
    return boto3.client(
        "s3",
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        aws_session_token=session_token,
        config=Config(signature_version="s3v4", s3={"addressing_style": "virtual"}),
    )


def presign(s3: Any = None, **overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "bucket": BUCKET,
        "user": USER,
        "content_type": "image/png",
        "max_bytes": MAX_BYTES,
        "expires_in": TTL,
        "assets_base_url": "https://d111111abcdef8.cloudfront.net",
        "avatar_filename": "512x512.jpg",
    } | overrides
    return uploads.presign_avatar_upload(s3 or s3_client(), **args)


def decode_policy(fields: dict[str, str]) -> dict[str, Any]:
    return json.loads(base64.b64decode(fields["policy"]))


def sigv4_post_signature(policy_b64: str, secret: str, date: str, region: str) -> str:
    """AWS SigV4 for browser POST: the string to sign is the base64 policy itself."""

    def sign(key: bytes, message: str) -> bytes:
        return hmac.new(key, message.encode(), hashlib.sha256).digest()

    key = sign(("AWS4" + secret).encode(), date)
    key = sign(key, region)
    key = sign(key, "s3")
    key = sign(key, "aws4_request")
    return hmac.new(key, policy_b64.encode(), hashlib.sha256).hexdigest()


def test_policy_pins_every_condition_exactly() -> None:
    # Given a presigned upload
    body = presign()
    fields = body["fields"]

    # When S3 reads the policy
    policy = decode_policy(fields)

    # Then every condition is an exact match except the size range, and nothing else is allowed
    expected = [
        {"bucket": BUCKET},
        {"key": f"avatars/{USER}/original"},
        ["content-length-range", 1, MAX_BYTES],
        {"Content-Type": "image/png"},
        {"x-amz-meta-upload-id": body["uploadId"]},
        {"x-amz-algorithm": "AWS4-HMAC-SHA256"},
        {"x-amz-credential": fields["x-amz-credential"]},
        {"x-amz-date": fields["x-amz-date"]},
    ]
    conditions = policy["conditions"]
    assert sorted(map(json.dumps, conditions)) == sorted(map(json.dumps, expected))
    assert not [c for c in conditions if isinstance(c, list) and c[0] == "starts-with"]
    assert "x-amz-security-token" not in fields


def test_fields_match_the_policy_and_the_response() -> None:
    body = presign(content_type="image/webp")
    fields = body["fields"]

    assert fields["key"] == body["key"] == f"avatars/{USER}/original"
    assert fields["Content-Type"] == "image/webp"
    assert fields["x-amz-meta-upload-id"] == body["uploadId"]
    assert re.fullmatch(r"[0-9a-f]{32}", body["uploadId"])
    assert body["maxBytes"] == MAX_BYTES
    assert body["url"] == f"https://{BUCKET}.s3.{REGION}.amazonaws.com/"
    assert body["avatarUrl"] == f"https://d111111abcdef8.cloudfront.net/avatars/{USER}/512x512.jpg"
    assert body["manifestUrl"] == f"https://d111111abcdef8.cloudfront.net/avatars/{USER}/avatar.json"


def test_upload_ids_are_unique_per_presign() -> None:
    s3 = s3_client()
    ids = {presign(s3)["uploadId"] for _ in range(20)}
    assert len(ids) == 20


def test_sigv4_fields_and_signature_verify_with_the_signing_secret() -> None:
    fields = presign()["fields"]

    assert fields["x-amz-algorithm"] == "AWS4-HMAC-SHA256"
    access_key, date, region, service, terminal = fields["x-amz-credential"].split("/")
    assert (access_key, region, service, terminal) == (ACCESS_KEY, REGION, "s3", "aws4_request")
    assert fields["x-amz-date"].startswith(date)
    assert re.fullmatch(r"[0-9a-f]{64}", fields["x-amz-signature"])

    # S3 recomputes this from the policy and the secret; any edit to the policy breaks it.
    assert fields["x-amz-signature"] == sigv4_post_signature(fields["policy"], SECRET_KEY, date, REGION)
    assert fields["x-amz-signature"] != sigv4_post_signature(fields["policy"], SECRET_KEY + "x", date, REGION)
    tampered = decode_policy(fields)
    tampered["conditions"] = [c for c in tampered["conditions"] if not isinstance(c, list)]
    tampered_b64 = base64.b64encode(json.dumps(tampered).encode()).decode()
    assert fields["x-amz-signature"] != sigv4_post_signature(tampered_b64, SECRET_KEY, date, REGION)


def test_lambda_role_session_token_is_sent_and_pinned() -> None:
    # Lambda signs with temporary role credentials; S3 needs the token in the form.
    body = presign(s3_client(session_token="FwoGZXIvYXdzEXAMPLETOKEN"))
    fields = body["fields"]
    assert fields["x-amz-security-token"] == "FwoGZXIvYXdzEXAMPLETOKEN"
    assert {"x-amz-security-token": "FwoGZXIvYXdzEXAMPLETOKEN"} in decode_policy(fields)["conditions"]


def test_expiry_is_the_ttl_and_never_later_than_the_policy() -> None:
    # Given the clock floored to the second before the call, as the handler's default does
    before = datetime.now(UTC).replace(microsecond=0)

    # When presigning
    body = presign()
    after = datetime.now(UTC)

    # Then the policy expires TTL seconds after signing and expiresAt does not promise more
    expires_at = datetime.strptime(body["expiresAt"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    policy_expiry = datetime.strptime(decode_policy(body["fields"])["expiration"], "%Y-%m-%dT%H:%M:%SZ")
    policy_expiry = policy_expiry.replace(tzinfo=UTC)
    assert before + timedelta(seconds=TTL) <= expires_at <= policy_expiry <= after + timedelta(seconds=TTL)


def test_injected_now_gives_an_exact_iso_utc_expiry() -> None:
    now = datetime(2026, 11, 28, 15, 30, 0, 999_999, tzinfo=UTC)
    assert presign(now=now, expires_in=60)["expiresAt"] == "2026-11-28T15:31:00Z"
    # A non-UTC clock is still reported in UTC.
    paris = now.astimezone(ZoneInfo("Europe/Paris"))
    assert presign(now=paris, expires_in=60)["expiresAt"] == "2026-11-28T15:31:00Z"


@pytest.mark.parametrize("content_type", uploads.ALLOWED_CONTENT_TYPES)
def test_every_allowed_type_is_pinned(content_type: str) -> None:
    body = presign(content_type=content_type)
    assert body["fields"]["Content-Type"] == content_type
    assert {"Content-Type": content_type} in decode_policy(body["fields"])["conditions"]


def test_content_type_is_normalized() -> None:
    assert presign(content_type=" Image/JPEG ")["fields"]["Content-Type"] == "image/jpeg"


@pytest.mark.parametrize(
    "content_type",
    ["image/svg+xml", "text/html", "image/png; charset=utf-8", "image/*", "", "application/octet-stream"],
)
def test_other_types_are_refused_with_the_allowed_list(content_type: str) -> None:
    with pytest.raises(uploads.UploadRequestError) as error:
        presign(content_type=content_type)
    for allowed in uploads.ALLOWED_CONTENT_TYPES:
        assert allowed in str(error.value)


@pytest.mark.parametrize("value", [None, 1, ["image/png"], {"type": "image/png"}])
def test_non_string_content_type_is_refused(value: object) -> None:
    with pytest.raises(uploads.UploadRequestError, match="must be a string"):
        uploads.normalize_content_type(value)


@pytest.mark.parametrize(
    "sub",
    [
        "../../etc/passwd",
        "a/../../b",
        "..",
        "auth0|5f7c8ec7c33c6c004bbafe82",
        "google-oauth2|1234/original",
        "x" * 200,
        "ユーザー",
        "user\x00name",
        "user\nname",
        " leading-space",
        "avatars/other-user/original",
        "%2e%2e%2fescape",
        "a..b",
        "${filename}",
    ],
)
def test_weird_subjects_cannot_leave_their_own_prefix(sub: str) -> None:
    user = keys.user_key(sub)
    body = presign(user=user)
    key = body["fields"]["key"]

    assert key == body["key"] == f"avatars/{user}/original"
    assert re.fullmatch(r"avatars/[A-Za-z0-9][A-Za-z0-9_.@-]*/original", key)
    assert ".." not in key
    assert keys.user_from_upload_key(key) == user
    assert {"key": key} in decode_policy(body["fields"])["conditions"]


def test_distinct_weird_subjects_get_distinct_keys() -> None:
    subs = ["auth0|1", "auth0|2", "a/b", "a\\b", "../x", "../y"]
    assert len({keys.upload_key(keys.user_key(s)) for s in subs}) == len(subs)


def test_size_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        presign(max_bytes=0)


@pytest.mark.parametrize(
    ("body", "base64_encoded", "content_type"),
    [
        ('{"contentType": "image/png"}', False, "image/png"),
        ('{"contentType": " IMAGE/JPEG "}', False, "image/jpeg"),
        (base64.b64encode(b'{"contentType": "image/gif"}').decode(), True, "image/gif"),
    ],
)
def test_requested_content_type(body: str, base64_encoded: bool, content_type: str) -> None:
    assert uploads.requested_content_type(body, base64_encoded=base64_encoded) == content_type


@pytest.mark.parametrize(
    ("body", "base64_encoded", "message"),
    [
        (None, False, "body must be JSON"),
        ("", False, "body must be JSON"),
        ("{not json", False, "body must be JSON"),
        ('["image/png"]', False, "body must be JSON"),
        ('{"content_type": "image/png"}', False, "body must be JSON"),
        ("not base64!", True, "body must be JSON"),
        (base64.b64encode(b"\xff\xfe{").decode(), True, "body must be JSON"),
        ('{"contentType": 42}', False, "contentType must be a string"),
        ('{"contentType": "image/svg+xml"}', False, "is not accepted"),
    ],
)
def test_requested_content_type_refuses_with_a_message(
    body: str | None, base64_encoded: bool, message: str
) -> None:
    with pytest.raises(uploads.UploadRequestError, match=message):
        uploads.requested_content_type(body, base64_encoded=base64_encoded)

"""S3 itself bounds every upload: nine multipart POSTs into an S3 that enforces POST policies.

SeaweedFS's S3 gateway checks a presigned POST's conditions, expiry and signature as AWS does
(moto checks none of them). The upload each case starts from is the project's own: the presign
function with the template's environment, invoked with API Gateway's event for a caller whose
verified sub is the case's own, so each case has a folder of its own to find empty afterwards.
"""

from __future__ import annotations

import base64
import io
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
import requests
from PIL import Image

from imgpipe import keys
from tests.conftest import ROOT
from tests.seaweedfs_support import UploadsOnSeaweed


@dataclass(frozen=True)
class Post:
    url: str
    fields: dict[str, str]
    data: bytes


def avatar_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 90)).save(out, format="PNG")
    return out.getvalue()


PNG = avatar_png()


def as_signed(uploads: UploadsOnSeaweed, sub: str) -> Post:
    body = uploads.presign(sub)
    return Post(body["url"], body["fields"], PNG)


def too_big(uploads: UploadsOnSeaweed, sub: str) -> Post:
    body = uploads.presign(sub)
    return Post(body["url"], body["fields"], PNG + b"\0" * (body["maxBytes"] + 1 - len(PNG)))


def changed(field: str, value: Callable[[str], str]) -> Callable[[UploadsOnSeaweed, str], Post]:
    def post(uploads: UploadsOnSeaweed, sub: str) -> Post:
        body = uploads.presign(sub)
        return Post(body["url"], {**body["fields"], field: value(sub)}, PNG)

    return post


def expired(uploads: UploadsOnSeaweed, sub: str) -> Post:
    body = uploads.presign(sub, ttl_seconds=1)
    expires_at = datetime.strptime(body["expiresAt"], "%Y-%m-%dT%H:%M:%S%z").timestamp()
    time.sleep(max(0.0, expires_at - time.time()) + 1.1)  # the policy's expiration has whole seconds
    return Post(body["url"], body["fields"], PNG)


def tampered_signature(uploads: UploadsOnSeaweed, sub: str) -> Post:
    body = uploads.presign(sub)
    signature = body["fields"]["x-amz-signature"]
    flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    return Post(body["url"], {**body["fields"], "x-amz-signature": flipped}, PNG)


def tampered_policy(uploads: UploadsOnSeaweed, sub: str) -> Post:
    # The classic attack on a signed form: widen the size limit and keep the signature.
    body = uploads.presign(sub)
    policy = json.loads(base64.b64decode(body["fields"]["policy"]))
    for condition in policy["conditions"]:
        if isinstance(condition, list) and condition[0] == "content-length-range":
            condition[2] = 5 * 1024**3
    forged = base64.b64encode(json.dumps(policy).encode()).decode()
    return Post(body["url"], {**body["fields"], "policy": forged}, PNG)


def wrong_secret(uploads: UploadsOnSeaweed, sub: str) -> Post:
    body = uploads.presign(sub, secret_key=uploads.server.secret_key[::-1])
    return Post(body["url"], body["fields"], PNG)


# case -> (how the POST is made, S3's status, S3's error code, a phrase of its message)
CASES: dict[str, tuple[Callable[[UploadsOnSeaweed, str], Post], int, str | None, str]] = {
    "valid": (as_signed, 204, None, ""),
    "too_big": (too_big, 400, "EntityTooLarge", "exceeds the maximum allowed"),
    "other_content_type": (
        changed("Content-Type", lambda _: "image/svg+xml"),
        403,
        "AccessDenied",
        "Policy Condition failed",
    ),
    "other_key": (
        changed("key", lambda sub: keys.upload_key(f"victim-of-{sub}")),
        403,
        "AccessDenied",
        "Policy Condition failed",
    ),
    "other_upload_id": (
        changed("x-amz-meta-upload-id", lambda _: uuid.uuid4().hex),
        403,
        "AccessDenied",
        "Policy Condition failed",
    ),
    "expired": (expired, 403, "AccessDenied", "Policy expired"),
    "tampered_signature": (tampered_signature, 403, "SignatureDoesNotMatch", "signature"),
    "tampered_policy": (tampered_policy, 403, "SignatureDoesNotMatch", "signature"),
    "wrong_secret": (wrong_secret, 403, "SignatureDoesNotMatch", "signature"),
}


def error_code(response: requests.Response) -> str | None:
    if not response.content:
        return None
    start, end = response.text.find("<Code>"), response.text.find("</Code>")
    return response.text[start + len("<Code>") : end] if 0 <= start < end else None


@pytest.fixture(scope="module")
def matrix() -> Iterator[dict[str, dict[str, Any]]]:
    """What S3 answered each case, kept in test-artifacts/upload-policy-matrix.json."""
    seen: dict[str, dict[str, Any]] = {}
    yield seen
    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    (ROOT / "test-artifacts" / "upload-policy-matrix.json").write_text(json.dumps(seen, indent=2) + "\n")


@pytest.mark.parametrize("case", list(CASES))
def test_s3_stores_only_the_upload_its_policy_allows(
    seaweed_uploads: UploadsOnSeaweed, matrix: dict[str, dict[str, Any]], case: str
) -> None:
    make_post, status, code, phrase = CASES[case]
    sub = f"e2e-{case.replace('_', '-')}-{uuid.uuid4().hex[:8]}"
    user = keys.user_key(sub)

    # Given the presign function's answer for this caller, as the case changes it
    post = make_post(seaweed_uploads, sub)

    # When the browser's multipart form reaches S3 (every field, then the file: S3 ignores what follows)
    response = requests.post(
        post.url,
        data=post.fields,
        files={"file": ("me.png", post.data, "application/octet-stream")},
        timeout=30,
    )

    # Then S3 answers as AWS does
    stored = seaweed_uploads.stored(keys.user_prefix(user))
    message = response.text.partition("<Message>")[2].partition("</Message>")[0]
    matrix[case] = {"status": response.status_code, "code": error_code(response), "message": message}
    matrix[case]["stored"] = len(stored)
    assert (response.status_code, error_code(response)) == (status, code), response.text
    assert phrase in response.text
    if status != 204:
        # And a refused upload leaves nothing behind, at the caller's key or any other
        assert stored == []
        assert seaweed_uploads.stored(keys.user_prefix(f"victim-of-{sub}")) == []
        return
    # And the allowed one is stored at the caller's key with the type and upload id that were signed
    assert [entry["Key"] for entry in stored] == [keys.upload_key(user)]
    head = seaweed_uploads.server.client().head_object(
        Bucket=seaweed_uploads.bucket.name, Key=keys.upload_key(user)
    )
    assert head["ContentType"] == "image/png"
    assert head["Metadata"] == {"upload-id": post.fields["x-amz-meta-upload-id"]}
    assert head["ContentLength"] == len(PNG)


def test_the_signed_policy_is_the_one_the_suite_attacks(seaweed_uploads: UploadsOnSeaweed) -> None:
    # The cases above change what this policy pins: exact key, type, upload id, size, expiry.
    body: dict[str, Any] = seaweed_uploads.presign("e2e-policy-shape")
    policy = json.loads(base64.b64decode(body["fields"]["policy"]))
    conditions = policy["conditions"]

    assert {"key": body["key"]} in conditions
    assert {"Content-Type": "image/png"} in conditions
    assert {"x-amz-meta-upload-id": body["uploadId"]} in conditions
    assert ["content-length-range", 1, seaweed_uploads.max_bytes] in conditions
    assert policy["expiration"].startswith(body["expiresAt"][:-1])

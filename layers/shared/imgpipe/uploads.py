"""Presigned avatar uploads: one browser POST straight into the uploads bucket, bounded by S3.

S3 checks every condition of the signed policy when the form arrives, so the size
limit, the content type, the key and the upload id hold even though the bytes never
pass through Lambda. The key comes only from the verified subject (`keys`); nothing
the caller sends can move it.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from imgpipe import keys, spec

# The formats the processor opens; anything else would be stored only to be rejected.
ALLOWED_CONTENT_TYPES: tuple[str, ...] = tuple(spec.INPUT_FORMATS.values())
UPLOAD_ID_META = "x-amz-meta-upload-id"
_BODY_EXAMPLE = 'body must be JSON like {"contentType": "image/png"}'


class UploadRequestError(ValueError):
    """The request cannot be turned into an upload; str(e) is safe to show the caller."""


def normalize_content_type(value: object) -> str:
    """The allow-listed media type `value` names, lower-cased; UploadRequestError otherwise."""
    if not isinstance(value, str):
        raise UploadRequestError(f"contentType must be a string, one of: {', '.join(ALLOWED_CONTENT_TYPES)}")
    content_type = value.strip().lower()
    if content_type not in ALLOWED_CONTENT_TYPES:
        raise UploadRequestError(
            f"contentType {value[:100]!r} is not accepted; use one of: {', '.join(ALLOWED_CONTENT_TYPES)}"
        )
    return content_type


def requested_content_type(body: str | None, *, base64_encoded: bool = False) -> str:
    """The content type a `POST /avatars/key_upload` body asks for; UploadRequestError otherwise.

    API Gateway base64-encodes bodies it does not take for text (e.g. without a Content-Type).
    """
    try:
        request = json.loads(base64.b64decode(body or "", validate=True) if base64_encoded else body or "")
    except ValueError:  # not JSON, not base64, not UTF-8
        raise UploadRequestError(_BODY_EXAMPLE) from None
    if not isinstance(request, dict) or "contentType" not in request:
        raise UploadRequestError(_BODY_EXAMPLE)
    return normalize_content_type(request["contentType"])


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def presign_avatar_upload(
    s3: Any,
    *,
    bucket: str,
    user: str,
    content_type: str,
    max_bytes: int,
    expires_in: int,
    assets_base_url: str,
    avatar_filename: str,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The JSON body of `POST /avatars/key_upload` for `user` (already `keys.user_key(sub)`).

    `s3` must sign with SigV4 (`Config(signature_version="s3v4")`; regions opened since
    2014 accept nothing else) and should use virtual addressing so the URL names the
    bucket's regional endpoint. `content_type` is checked here as well, so no caller
    reaches S3 with a value off the allow-list.
    """
    content_type = normalize_content_type(content_type)
    if max_bytes < 1:
        raise ValueError("max_bytes must be at least 1")
    # botocore stamps the policy's expiration from its own clock, floored to the second,
    # just after this; flooring `now` before signing keeps expiresAt at or before it.
    now = (now or _utc_now()).replace(microsecond=0)
    upload_id = uuid.uuid4().hex
    key = keys.upload_key(user)
    # botocore appends {"bucket": ...} and the exact {"key": ...} itself (a starts-with
    # only for keys ending in ${filename}, which ours never do); the unit tests decode the
    # policy to hold it to that.
    presigned = s3.generate_presigned_post(
        Bucket=bucket,
        Key=key,
        Fields={"Content-Type": content_type, UPLOAD_ID_META: upload_id},
        Conditions=[
            ["content-length-range", 1, max_bytes],
            {"Content-Type": content_type},
            {UPLOAD_ID_META: upload_id},
        ],
        ExpiresIn=expires_in,
    )
    return {
        "url": presigned["url"],
        "fields": presigned["fields"],
        "key": key,
        "uploadId": upload_id,
        "expiresAt": _iso(now + timedelta(seconds=expires_in)),
        "maxBytes": max_bytes,
        "avatarUrl": keys.public_url(assets_base_url, keys.stable_key(user, avatar_filename)),
        "manifestUrl": keys.public_url(assets_base_url, keys.manifest_key(user)),
    }

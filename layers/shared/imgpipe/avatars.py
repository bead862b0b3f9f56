"""Turn one upload event into renditions, a manifest and a status in the assets bucket.

The S3 client and bucket names are passed in (`Config`), so the same code runs in
Lambda, in the local stack and in tests against moto. Everything that decides *what*
to write (sequencer order, the avatar.json document) is a small pure function; the
rest moves bytes.

Ordering and idempotency rest on S3's per-key event `sequencer`, stored in
avatar.json with the upload it describes:
- an event whose sequencer is not newer than the stored one is a duplicate or an
  older upload arriving late, and changes nothing;
- avatar.json is committed with a conditional write against the ETag read, so two
  concurrent processors cannot both win; the loser re-reads and re-decides;
- stable copies are written just before the commit (so "ready" never names a picture the
  stable URL does not show yet) and checked against the committed document afterwards,
  so a slow older writer can never leave its renditions at the stable URLs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from botocore.exceptions import ClientError

from imgpipe import imaging, keys

logger = logging.getLogger(__name__)

SCHEMA = 1
CACHE_IMMUTABLE = "public, max-age=31536000, immutable"
CACHE_STABLE = "public, max-age=10"
CACHE_MANIFEST = "no-cache"
MANIFEST_CONTENT_TYPE = "application/json"
UPLOAD_ID_METADATA = "upload-id"
# Stable copies name the version they hold, so a repair can tell a stale copy
# from a current one with a HEAD instead of rewriting everything.
VERSION_METADATA = "imgpipe-version"
STATUS_TAG = "imgpipe-status"
REASON_TAG = "imgpipe-reason"

# A conflict means another upload of the same user committed in between; a few
# rounds settle any realistic burst, and beyond that S3's retry of the event will.
COMMIT_ATTEMPTS = 5
SETTLE_ATTEMPTS = 5

_NOT_FOUND = {"NoSuchKey", "NoSuchVersion", "404", "NotFound"}
# S3 answers 409 ConditionalRequestConflict when two conditional writes race.
_CONFLICT = {"PreconditionFailed", "ConditionalRequestConflict"}

Status = Literal["processed", "rejected", "skipped"]


@dataclass(frozen=True)
class Config:
    uploads_bucket: str
    assets_bucket: str
    options: imaging.Options


@dataclass(frozen=True)
class Outcome:
    status: Status
    # rejected: the imaging reason code; skipped: duplicate|stale|gone|not_an_upload_key
    reason: str | None = None
    user: str | None = None
    upload_id: str | None = None
    version: str | None = None
    message: str | None = None
    bytes_in: int = 0
    bytes_out: int = 0


class CommitConflict(RuntimeError):
    """avatar.json kept changing under us; raised so S3 retries the event later."""


# ---------------------------------------------------------------- pure helpers


def sequencer_key(sequencer: str, width: int) -> str:
    return sequencer.upper().ljust(width, "0")


def compare_sequencers(a: str | None, b: str | None) -> int:
    """-1, 0 or 1 as S3 sequencer `a` is older than, the same as, or newer than `b`.

    AWS's rule: right-pad the shorter hex string with zeros, then compare as strings.
    A missing sequencer sorts before every real one.
    """
    if not a or not b:
        return bool(a) - bool(b)
    width = max(len(a), len(b))
    left, right = sequencer_key(a, width), sequencer_key(b, width)
    return (left > right) - (left < right)


def skip_reason(event_sequencer: str, doc: dict[str, Any] | None) -> str | None:
    """Why an event must not be applied on top of `doc` ('duplicate'/'stale'), or None."""
    if doc is None:
        return None
    order = compare_sequencers(event_sequencer, doc.get("sequencer"))
    if order == 0:
        return "duplicate"
    if order < 0:
        return "stale"
    return None


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def avatar_section(user: str, result: imaging.Result) -> dict[str, Any]:
    return {
        "version": result.version,
        "source": {
            "format": result.source_format,
            "width": result.source_width,
            "height": result.source_height,
        },
        "placeholder": result.placeholder,
        "renditions": [
            {
                "name": output.rendition.name,
                "format": output.format,
                "contentType": output.content_type,
                "width": output.width,
                "height": output.height,
                "bytes": len(output.data),
                "url": keys.versioned_key(user, result.version, output.filename),
                "stableUrl": keys.stable_key(user, output.filename),
            }
            for output in result.outputs
        ],
    }


def ready_doc(
    *, user: str, upload_id: str | None, sequencer: str, avatar: dict[str, Any], at: str
) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "user": user,
        "latest": {"uploadId": upload_id, "state": "ready", "reason": None, "message": None, "at": at},
        "avatar": avatar,
        "sequencer": sequencer,
    }


def rejected_doc(
    previous: dict[str, Any] | None,
    *,
    user: str,
    upload_id: str | None,
    sequencer: str,
    reason: str,
    message: str,
    at: str,
) -> dict[str, Any]:
    """The status of a refused upload; the avatar already shown stays as it was."""
    return {
        "schema": SCHEMA,
        "user": user,
        "latest": {
            "uploadId": upload_id,
            "state": "rejected",
            "reason": reason,
            "message": message,
            "at": at,
        },
        "avatar": previous.get("avatar") if previous else None,
        "sequencer": sequencer,
    }


def too_big_message(size: int, limit: int) -> str:
    return f"The file is {size:,} bytes; the largest accepted upload is {limit:,} bytes."


# ---------------------------------------------------------------- S3 adapters


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def read_manifest(s3: Any, bucket: str, user: str) -> tuple[dict[str, Any] | None, str | None]:
    """The current avatar.json and its ETag, or (None, None) when there is none yet."""
    try:
        response = s3.get_object(Bucket=bucket, Key=keys.manifest_key(user))
    except ClientError as error:
        if _error_code(error) in _NOT_FOUND:
            return None, None
        raise
    with response["Body"] as body:
        doc = json.loads(body.read())
    return doc, response["ETag"]


def write_manifest(s3: Any, bucket: str, user: str, doc: dict[str, Any], etag: str | None) -> bool:
    """Conditionally replace avatar.json; False when someone else changed it since `etag`."""
    condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
    try:
        s3.put_object(
            Bucket=bucket,
            Key=keys.manifest_key(user),
            Body=json.dumps(doc, separators=(",", ":")).encode(),
            ContentType=MANIFEST_CONTENT_TYPE,
            CacheControl=CACHE_MANIFEST,
            **condition,
        )
    except ClientError as error:
        # If-Match on a document deleted meanwhile answers 404 rather than 412.
        if _error_code(error) in _CONFLICT or (etag and _error_code(error) in _NOT_FOUND):
            return False
        raise
    return True


def _tag_rejected(s3: Any, bucket: str, key: str, version_id: str | None, reason: str) -> None:
    version = {"VersionId": version_id} if version_id else {}
    s3.put_object_tagging(
        Bucket=bucket,
        Key=key,
        **version,
        Tagging={"TagSet": [{"Key": STATUS_TAG, "Value": "rejected"}, {"Key": REASON_TAG, "Value": reason}]},
    )


def _copy_stable(s3: Any, bucket: str, avatar: dict[str, Any], *, only_stale: bool) -> int:
    """Point the stable URLs at `avatar`'s immutable renditions (server-side copies)."""
    version = avatar["version"]
    copied = 0
    for rendition in avatar["renditions"]:
        if only_stale and _stable_version(s3, bucket, rendition["stableUrl"]) == version:
            continue
        copied += 1
        s3.copy_object(
            Bucket=bucket,
            Key=rendition["stableUrl"],
            CopySource={"Bucket": bucket, "Key": rendition["url"]},
            MetadataDirective="REPLACE",
            ContentType=rendition["contentType"],
            CacheControl=CACHE_STABLE,
            Metadata={VERSION_METADATA: version},
        )
    return copied


def _stable_version(s3: Any, bucket: str, key: str) -> str | None:
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if _error_code(error) in _NOT_FOUND:
            return None
        raise
    return head.get("Metadata", {}).get(VERSION_METADATA)


def settle_stable(s3: Any, bucket: str, user: str, written: str | None) -> None:
    """Make the stable copies match the committed avatar.json, whoever committed it.

    `written` is the version this caller last put at the stable keys (None: unknown,
    check each copy). Every writer calls this after its own stable writes, so the
    last one to run leaves the copies of the version the document names.
    """
    for _ in range(SETTLE_ATTEMPTS):
        doc, _ = read_manifest(s3, bucket, user)
        avatar = doc.get("avatar") if doc else None
        if avatar is None or avatar["version"] == written:
            return
        copied = _copy_stable(s3, bucket, avatar, only_stale=written is None)
        if copied:
            logger.info(
                "stable copies reset to the committed version",
                extra={"user": user, "version": avatar["version"], "replaced": written, "copies": copied},
            )
        written = avatar["version"]
    # Still changing: a newer writer is mid-flight and will settle it after its commit.
    logger.warning("stable copies still changing; leaving them to the newest writer", extra={"user": user})


# ---------------------------------------------------------------- orchestration


@dataclass
class _Upload:
    """One event being applied, and what has been learnt about it so far."""

    user: str
    key: str
    version_id: str | None
    sequencer: str
    upload_id: str | None = None

    def log(self, **extra: Any) -> dict[str, Any]:
        return {
            "user": self.user,
            "key": self.key,
            "versionId": self.version_id,
            "sequencer": self.sequencer,
            "uploadId": self.upload_id,
            **extra,
        }


def handle_upload(
    s3: Any,
    cfg: Config,
    *,
    key: str,
    version_id: str | None,
    sequencer: str,
    size: int | None,
    etag: str | None,
) -> Outcome:
    """Apply one ObjectCreated event of the uploads bucket (key already URL-decoded)."""
    user = keys.user_from_upload_key(key)
    if user is None:
        logger.warning("not an upload key; ignored", extra={"key": key, "etag": etag})
        return Outcome("skipped", "not_an_upload_key")

    upload = _Upload(user, key, version_id, sequencer)

    doc, doc_etag = read_manifest(s3, cfg.assets_bucket, user)
    reason = skip_reason(sequencer, doc)
    if reason is not None:
        if reason == "duplicate":
            # A retry of an event whose commit landed but whose stable copies may not have.
            settle_stable(s3, cfg.assets_bucket, user, written=None)
        logger.info(
            "event already applied or superseded; skipped", extra=upload.log(reason=reason, etag=etag)
        )
        return Outcome("skipped", reason, user=user)

    limit = cfg.options.max_bytes
    version = {"VersionId": version_id} if version_id else {}
    try:
        if size is not None and size > limit:
            # Refused without downloading; the HEAD is for the upload id the client polls for.
            head = s3.head_object(Bucket=cfg.uploads_bucket, Key=key, **version)
            upload.upload_id = head.get("Metadata", {}).get(UPLOAD_ID_METADATA)
            data = None
        else:
            response = s3.get_object(Bucket=cfg.uploads_bucket, Key=key, **version)
            upload.upload_id = response.get("Metadata", {}).get(UPLOAD_ID_METADATA)
            size = response.get("ContentLength", size)
            with response["Body"] as body:
                # limit + 1 bytes are enough to tell "too big" without holding a huge body.
                data = None if size is not None and size > limit else body.read(limit + 1)
    except ClientError as error:
        if _error_code(error) in _NOT_FOUND:
            logger.info("upload no longer exists; skipped", extra=upload.log())
            return Outcome("skipped", "gone", user=user)
        raise

    if data is None or len(data) > limit:
        actual = len(data) if data is not None else size or 0
        return _reject(s3, cfg, upload, doc, doc_etag, "too_many_bytes", too_big_message(actual, limit))
    try:
        result = imaging.process(data, cfg.options)
    except imaging.ImageRejected as rejected:
        return _reject(s3, cfg, upload, doc, doc_etag, rejected.reason, str(rejected), bytes_in=len(data))
    return _publish(s3, cfg, upload, doc, doc_etag, result, bytes_in=len(data))


def _publish(
    s3: Any,
    cfg: Config,
    upload: _Upload,
    doc: dict[str, Any] | None,
    doc_etag: str | None,
    result: imaging.Result,
    *,
    bytes_in: int,
) -> Outcome:
    user, bucket = upload.user, cfg.assets_bucket
    # Immutable copies first: once avatar.json names a version, its files exist.
    for output in result.outputs:
        s3.put_object(
            Bucket=bucket,
            Key=keys.versioned_key(user, result.version, output.filename),
            Body=output.data,
            ContentType=output.content_type,
            CacheControl=CACHE_IMMUTABLE,
        )
    avatar = avatar_section(user, result)

    def build(_current: dict[str, Any] | None) -> dict[str, Any]:
        return ready_doc(
            user=user, upload_id=upload.upload_id, sequencer=upload.sequencer, avatar=avatar, at=utc_now()
        )

    # Stable copies before the commit, so a client that sees "ready" in avatar.json and
    # loads the stable URL gets the new picture. If this upload turns out to be stale,
    # settle_stable puts the committed version back.
    for output in result.outputs:
        s3.put_object(
            Bucket=bucket,
            Key=keys.stable_key(user, output.filename),
            Body=output.data,
            ContentType=output.content_type,
            CacheControl=CACHE_STABLE,
            Metadata={VERSION_METADATA: result.version},
        )
    skipped = _commit(s3, bucket, upload, doc, doc_etag, build)
    if skipped == "gone":
        # The user erased their avatar meanwhile: take back what this run wrote.
        written = [keys.versioned_key(user, result.version, o.filename) for o in result.outputs]
        written += [keys.stable_key(user, o.filename) for o in result.outputs]
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in written], "Quiet": True})
    else:
        # written=None: check every copy, since a concurrent writer may have replaced
        # ours between our writes and our commit.
        settle_stable(s3, bucket, user, written=None)
    if skipped is not None:
        logger.info("a newer upload was committed meanwhile; skipped", extra=upload.log(reason=skipped))
        return Outcome("skipped", skipped, user=user, upload_id=upload.upload_id, bytes_in=bytes_in)
    bytes_out = sum(len(output.data) for output in result.outputs)
    logger.info("avatar processed", extra=upload.log(version=result.version, bytesOut=bytes_out))
    return Outcome(
        "processed",
        user=user,
        upload_id=upload.upload_id,
        version=result.version,
        bytes_in=bytes_in,
        bytes_out=bytes_out,
    )


def _reject(
    s3: Any,
    cfg: Config,
    upload: _Upload,
    doc: dict[str, Any] | None,
    doc_etag: str | None,
    reason: str,
    message: str,
    *,
    bytes_in: int = 0,
) -> Outcome:
    """A permanent refusal: mark the original, tell the client, return normally (no retry storm)."""
    logger.warning("upload rejected", extra=upload.log(reason=reason, detail=message))
    _tag_rejected(s3, cfg.uploads_bucket, upload.key, upload.version_id, reason)

    def build(current: dict[str, Any] | None) -> dict[str, Any]:
        return rejected_doc(
            current,
            user=upload.user,
            upload_id=upload.upload_id,
            sequencer=upload.sequencer,
            reason=reason,
            message=message,
            at=utc_now(),
        )

    skipped = _commit(s3, cfg.assets_bucket, upload, doc, doc_etag, build)
    if skipped is not None:
        return Outcome("skipped", skipped, user=upload.user, upload_id=upload.upload_id, bytes_in=bytes_in)
    return Outcome(
        "rejected", reason, user=upload.user, upload_id=upload.upload_id, message=message, bytes_in=bytes_in
    )


def _commit(
    s3: Any,
    bucket: str,
    upload: _Upload,
    doc: dict[str, Any] | None,
    etag: str | None,
    build: Callable[[dict[str, Any] | None], dict[str, Any]],
) -> str | None:
    """Write build(current doc) while this event is still the newest; else the skip reason."""
    for _ in range(COMMIT_ATTEMPTS):
        if write_manifest(s3, bucket, upload.user, build(doc), etag):
            return None
        logger.info("avatar.json changed since it was read; re-deciding", extra=upload.log())
        had_doc = doc is not None
        doc, etag = read_manifest(s3, bucket, upload.user)
        if had_doc and doc is None:
            # Only an erase deletes avatar.json: the user removed their avatar meanwhile.
            return "gone"
        reason = skip_reason(upload.sequencer, doc)
        if reason is not None:
            return reason
    raise CommitConflict(f"avatar.json of {upload.user} kept changing; S3 will retry the event")

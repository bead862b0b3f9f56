"""How an avatar's bytes move: the S3 requests of the processor, one method each.

The client and bucket names are passed in, so Lambda, the local stack and tests hand in
whatever client they have. Each method is one request (S3's "not there" answers turned into
None/False, everything else raised), so the orchestration in `imgpipe.avatars` decides which
run side by side: `submit` runs a request on the run's bounded thread pool (boto3 clients are
thread-safe), `all` runs a batch and waits for every request of it before raising the first
failure, so no request of a failed step is still in flight when the step's error propagates.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future, wait
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from botocore.exceptions import ClientError

from imgpipe import avatar_doc, keys
from imgpipe.avatar_doc import Doc, RenditionWrite, StableCopy, StoredObject

logger = logging.getLogger(__name__)

# The widest step puts every rendition twice and lists the old ones: 3 sizes x 3 formats x 2 + 1
# = 19 with AVIF (a longer rendition list queues the rest behind these). The S3 client's
# connection pool should be as wide, or extra connections are opened and dropped every step.
PARALLEL_REQUESTS = 20

# One listing page of a user's versioned renditions is plenty (6 objects per version); what
# does not fit is expired by the next upload.
LIST_LIMIT = 1000

_NOT_FOUND = {"NoSuchKey", "NoSuchVersion", "404", "NotFound"}
# S3 answers 409 ConditionalRequestConflict when two conditional writes race.
_CONFLICT = {"PreconditionFailed", "ConditionalRequestConflict", "412"}

S3Client = Any


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def wait_all(*futures: Future[Any]) -> None:
    """Wait for every future, then raise the first failure among them (in the order given)."""
    wait(futures)
    for future in futures:
        future.result()


@dataclass(frozen=True)
class OriginalRef:
    """One stored version of an upload: what an S3 event names."""

    user: str
    key: str
    version_id: str | None

    def version(self) -> dict[str, str]:
        return {"VersionId": self.version_id} if self.version_id else {}


@dataclass(frozen=True)
class Manifest:
    doc: Doc
    etag: str


class Original:
    """An upload's metadata, and its body not yet read (None when only its head was asked for)."""

    def __init__(self, upload_id: str | None, size: int | None, body: Any | None) -> None:
        self.upload_id = upload_id
        self.size = size
        self._body = body

    def read(self, limit: int) -> bytes:
        """At most `limit` bytes: enough to tell "too big" without holding a huge body."""
        if self._body is None:
            raise ValueError("only the head of this original was fetched")
        data: bytes = self._body.read(limit)
        return data

    def close(self) -> None:
        if self._body is not None:
            self._body.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


class AvatarStore:
    def __init__(self, s3: S3Client, *, uploads_bucket: str, assets_bucket: str, pool: Executor) -> None:
        self.s3 = s3
        self.uploads_bucket = uploads_bucket
        self.assets_bucket = assets_bucket
        self._pool = pool

    # ------------------------------------------------------------ running requests side by side

    def submit[T](self, call: Callable[[], T]) -> Future[T]:
        return self._pool.submit(call)

    def all[T](self, calls: Iterable[Callable[[], T]]) -> list[T]:
        futures = [self._pool.submit(call) for call in calls]
        wait_all(*futures)
        return [future.result() for future in futures]

    # ------------------------------------------------------------ originals (uploads bucket)

    def open_original(self, ref: OriginalRef, *, head_only: bool) -> Original | None:
        """The original's upload id and size, and its body unless `head_only`; None when gone."""
        try:
            if head_only:
                head = self.s3.head_object(Bucket=self.uploads_bucket, Key=ref.key, **ref.version())
                return Original(_upload_id(head), head.get("ContentLength"), None)
            response = self.s3.get_object(Bucket=self.uploads_bucket, Key=ref.key, **ref.version())
        except ClientError as error:
            if error_code(error) in _NOT_FOUND:
                return None
            raise
        return Original(_upload_id(response), response.get("ContentLength"), response["Body"])

    def original_exists(self, ref: OriginalRef) -> bool:
        try:
            self.s3.head_object(Bucket=self.uploads_bucket, Key=ref.key, **ref.version())
        except ClientError as error:
            if error_code(error) in _NOT_FOUND:
                return False
            raise
        return True

    def tag_rejected(self, ref: OriginalRef, reason: str) -> bool:
        """Mark a refused original (kept for inspection); False when it no longer exists."""
        tags = [
            {"Key": avatar_doc.STATUS_TAG, "Value": "rejected"},
            {"Key": avatar_doc.REASON_TAG, "Value": reason},
        ]
        try:
            self.s3.put_object_tagging(
                Bucket=self.uploads_bucket, Key=ref.key, **ref.version(), Tagging={"TagSet": tags}
            )
        except ClientError as error:
            if error_code(error) in _NOT_FOUND:
                return False
            raise
        return True

    # ------------------------------------------------------------ avatar.json (assets bucket)

    def read_manifest(self, user: str) -> Manifest | None:
        try:
            response = self.s3.get_object(Bucket=self.assets_bucket, Key=keys.manifest_key(user))
        except ClientError as error:
            if error_code(error) in _NOT_FOUND:
                return None
            raise
        with response["Body"] as body:
            doc: Doc = json.loads(body.read())
        return Manifest(doc, response["ETag"])

    def write_manifest(self, user: str, doc: Doc, etag: str | None) -> str | None:
        """Replace avatar.json if it is still `etag` (create it if None): its new ETag, or None
        when someone else changed (or deleted) it first."""
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            response = self.s3.put_object(
                Bucket=self.assets_bucket,
                Key=keys.manifest_key(user),
                Body=json.dumps(doc, separators=(",", ":")).encode(),
                ContentType=avatar_doc.MANIFEST_CONTENT_TYPE,
                CacheControl=avatar_doc.CACHE_MANIFEST,
                **condition,
            )
        except ClientError as error:
            # If-Match on a document deleted meanwhile answers 404 rather than 412.
            if error_code(error) in _CONFLICT or (etag and error_code(error) in _NOT_FOUND):
                return None
            raise
        new_etag: str = response["ETag"]
        return new_etag

    # ------------------------------------------------------------ renditions (assets bucket)

    def put_rendition(self, write: RenditionWrite) -> str:
        """Write one rendition: immutable under its versioned key, or a short-lived stable copy
        that names the version it holds. Returns its ETag."""
        if write.stable_version is None:
            extra: dict[str, Any] = {"CacheControl": avatar_doc.CACHE_IMMUTABLE}
        else:
            extra = {
                "CacheControl": avatar_doc.CACHE_STABLE,
                "Metadata": {avatar_doc.VERSION_METADATA: write.stable_version},
            }
        response = self.s3.put_object(
            Bucket=self.assets_bucket, Key=write.key, Body=write.data, ContentType=write.content_type, **extra
        )
        etag: str = response["ETag"]
        return etag

    def stable_version(self, key: str) -> str | None:
        """The version a stable copy holds, or None when there is none."""
        try:
            head = self.s3.head_object(Bucket=self.assets_bucket, Key=key)
        except ClientError as error:
            if error_code(error) in _NOT_FOUND:
                return None
            raise
        version: str | None = head.get("Metadata", {}).get(avatar_doc.VERSION_METADATA)
        return version

    def copy_to_stable(self, copy: StableCopy, version: str) -> str | None:
        """Point a stable URL at an immutable rendition (server-side copy): the copy's ETag,
        or None when the rendition is gone (the avatar was erased or expired meanwhile)."""
        try:
            response = self.s3.copy_object(
                Bucket=self.assets_bucket,
                Key=copy.stable_key,
                CopySource={"Bucket": self.assets_bucket, "Key": copy.versioned_key},
                MetadataDirective="REPLACE",
                ContentType=copy.content_type,
                CacheControl=avatar_doc.CACHE_STABLE,
                Metadata={avatar_doc.VERSION_METADATA: version},
            )
        except ClientError as error:
            if error_code(error) in _NOT_FOUND:
                return None
            raise
        etag: str = response["CopyObjectResult"]["ETag"]
        return etag

    def list_renditions(self, user: str) -> list[StoredObject] | None:
        """The user's versioned renditions (first page), or None if S3 would not list them:
        expiring old renditions is housekeeping, never a reason to fail an upload."""
        try:
            response = self.s3.list_objects_v2(
                Bucket=self.assets_bucket, Prefix=keys.versions_prefix(user), MaxKeys=LIST_LIMIT
            )
        except ClientError as error:
            logger.warning(
                "could not list renditions; none expired this time",
                extra={"user": user, "code": error_code(error)},
            )
            return None
        return [StoredObject(o["Key"], o["LastModified"]) for o in response.get("Contents", ())]

    def expire(self, keys_: list[str]) -> int:
        """Delete renditions no reader needs (one request); failures are logged, not raised:
        the next upload's run tries again."""
        if not keys_:
            return 0
        try:
            response = self.s3.delete_objects(
                Bucket=self.assets_bucket,
                Delete={"Objects": [{"Key": key} for key in keys_[:LIST_LIMIT]], "Quiet": True},
            )
        except ClientError as error:
            logger.warning(
                "could not expire renditions", extra={"code": error_code(error), "keys": len(keys_)}
            )
            return 0
        errors = response.get("Errors") or []
        if errors:
            logger.warning(
                "some renditions were not expired",
                extra={"failed": len(errors), "sample": [(e.get("Key"), e.get("Code")) for e in errors[:3]]},
            )
        return min(len(keys_), LIST_LIMIT) - len(errors)

    def delete_if_unchanged(self, key: str, etag: str) -> bool:
        """Delete `key` only if it still holds what this run wrote there (`etag`); False when
        it is gone already or someone has written it since."""
        try:
            self.s3.delete_object(Bucket=self.assets_bucket, Key=key, IfMatch=etag)
        except ClientError as error:
            if error_code(error) in _NOT_FOUND | _CONFLICT:
                return False
            raise
        return True


def _upload_id(response: dict[str, Any]) -> str | None:
    upload_id: str | None = response.get("Metadata", {}).get(avatar_doc.UPLOAD_ID_METADATA)
    return upload_id

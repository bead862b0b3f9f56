"""Erase one user's avatar everywhere S3 stores it: originals (all versions), renditions, manifest.

Idempotent: a second erase finds nothing and deletes nothing, so a client may retry
after any failure. Everything is scoped by `keys.user_prefix(user)`, which ends in
"/" so user "ab" can never reach "abc"'s objects. The CDN's copies are the caller's
next step, once the objects are gone (`imgpipe.invalidation`).

Originals go first, then the assets are listed and deleted: an upload being processed
meanwhile checks its original after its last write, and either finds it (so this listing
comes later and sees all it wrote) or takes back what it wrote itself (imgpipe.avatars).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import batched
from typing import Any

from imgpipe import keys

# DeleteObjects takes at most 1000 keys per request.
DELETE_BATCH = 1000


class EraseError(RuntimeError):
    """S3 refused to delete some objects; nothing is reported as erased that was not."""


@dataclass(frozen=True)
class EraseResult:
    uploads_deleted: int
    assets_deleted: int


def _uploads_versions(s3: Any, bucket: str, prefix: str) -> Iterator[dict[str, str]]:
    # Versions and delete markers both hold the key; only deleting each by VersionId
    # removes it for good (a plain delete would just add another marker).
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        for entry in (*page.get("Versions", ()), *page.get("DeleteMarkers", ())):
            if entry["Key"].startswith(prefix):
                yield {"Key": entry["Key"], "VersionId": entry["VersionId"]}


def _asset_objects(s3: Any, bucket: str, prefix: str) -> Iterator[dict[str, str]]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for entry in page.get("Contents", ()):
            if entry["Key"].startswith(prefix):
                yield {"Key": entry["Key"]}


def _delete_all(s3: Any, bucket: str, objects: Iterable[dict[str, str]]) -> int:
    deleted = 0
    for batch in batched(objects, DELETE_BATCH, strict=False):
        # Quiet mode: the response lists only failures, so a missing "Errors" means all went.
        response = s3.delete_objects(Bucket=bucket, Delete={"Objects": list(batch), "Quiet": True})
        errors = response.get("Errors") or []
        if errors:
            sample = ", ".join(f"{e.get('Key')}: {e.get('Code')}" for e in errors[:5])
            raise EraseError(f"{len(errors)} of {len(batch)} objects in {bucket} not deleted ({sample})")
        deleted += len(batch)
    return deleted


def erase_avatar(s3: Any, *, user: str, uploads_bucket: str, assets_bucket: str) -> EraseResult:
    """Delete everything stored for `user` (already `keys.user_key(sub)`)."""
    # Anything but a user key ("", "a/b", "..") could widen the prefix.
    if not keys.is_user_key(user):
        raise ValueError(f"refusing to erase for {user!r}: not a user key")
    prefix = keys.user_prefix(user)
    uploads_deleted = _delete_all(s3, uploads_bucket, _uploads_versions(s3, uploads_bucket, prefix))
    assets_deleted = _delete_all(s3, assets_bucket, _asset_objects(s3, assets_bucket, prefix))
    return EraseResult(uploads_deleted, assets_deleted)

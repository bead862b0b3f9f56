"""Erase one user's avatar everywhere it is stored: originals (all versions), renditions, CDN copies.

Idempotent: a second erase finds nothing and deletes nothing, so a client may retry
after any failure. Everything is scoped by `keys.user_prefix(user)`, which ends in
"/" so user "ab" can never reach "abc"'s objects.

Originals go first, then the assets are listed and deleted: an upload being processed
meanwhile checks its original after its last write, and either finds it (so this listing
comes later and sees all it wrote) or takes back what it wrote itself (imgpipe.avatars).
"""

from __future__ import annotations

import uuid
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
    invalidation_id: str | None


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


def invalidation_paths(user: str) -> list[str]:
    return [f"/{keys.user_prefix(user)}*"]


def erase_avatar(
    s3: Any,
    cloudfront: Any | None,
    *,
    user: str,
    uploads_bucket: str,
    assets_bucket: str,
    distribution_id: str | None,
) -> EraseResult:
    """Delete everything stored for `user` (already `keys.user_key(sub)`).

    The invalidation runs on every call with a distribution, even one that deleted
    nothing: an earlier call may have deleted the objects and then failed before
    invalidating, and the CDN would otherwise keep serving erased images (versioned
    copies are cached as immutable for a year).
    """
    # Anything but a user key ("", "a/b", "..") could widen the prefix.
    if not keys.is_user_key(user):
        raise ValueError(f"refusing to erase for {user!r}: not a user key")
    prefix = keys.user_prefix(user)
    uploads_deleted = _delete_all(s3, uploads_bucket, _uploads_versions(s3, uploads_bucket, prefix))
    assets_deleted = _delete_all(s3, assets_bucket, _asset_objects(s3, assets_bucket, prefix))
    invalidation_id = None
    if distribution_id and cloudfront is not None:
        paths = invalidation_paths(user)
        response = cloudfront.create_invalidation(
            DistributionId=distribution_id,
            InvalidationBatch={
                "Paths": {"Quantity": len(paths), "Items": paths},
                "CallerReference": f"imgpipe-erase-{uuid.uuid4().hex}",
            },
        )
        invalidation_id = response["Invalidation"]["Id"]
    return EraseResult(uploads_deleted, assets_deleted, invalidation_id)

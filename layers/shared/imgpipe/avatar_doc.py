"""What the processor writes and when: event ordering, replays, avatar.json, which renditions expire.

Pure: no S3, no clock of its own where a decision depends on time (`now` is passed in), no
Pillow at run time (imaging's types are only named in annotations). `imgpipe.avatars`
orchestrates these decisions; `imgpipe.avatar_store` moves the bytes.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from imgpipe import keys

if TYPE_CHECKING:
    from imgpipe import imaging

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

# avatar.json as stored: plain JSON, shaped by ready_doc / rejected_doc.
Doc = dict[str, Any]
SkipReason = Literal[
    "duplicate", "stale", "replayed", "gone", "not_an_upload_key", "current", "no_avatar", "source_unknown"
]


# ---------------------------------------------------------------- ordering


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


def skip_reason(event_sequencer: str, doc: Doc | None, *, rerender: bool = False) -> SkipReason | None:
    """Why an event must not be applied on top of `doc` ('duplicate'/'stale'), or None.

    `rerender` (a backfill re-rendering the original `doc` was made from) applies on top of
    the same sequencer; only a newer upload stops it.
    """
    if doc is None:
        # A re-render only ever rewrites an avatar.json; without one the avatar was erased.
        return "gone" if rerender else None
    order = compare_sequencers(event_sequencer, doc.get("sequencer"))
    if order == 0 and not rerender:
        return "duplicate"
    if order < 0:
        return "stale"
    return None


def is_replay(doc: Doc | None, *, upload_id: str | None, original_version: str | None) -> bool:
    """Whether this original is a presigned POST sent again: a new S3 version of an upload id
    avatar.json already reports on.

    The form stays valid for its whole TTL, so a browser retry or a replayed request stores
    another version with the same `x-amz-meta-upload-id`; processing it again would only
    rewrite (or, with other bytes, silently replace) what the client was already told about.
    The same S3 version under a newer sequencer is not a replay.
    """
    latest = (doc or {}).get("latest") or {}
    applied_version = latest.get("originalVersionId")
    return (
        upload_id is not None
        and original_version is not None
        and latest.get("uploadId") == upload_id
        and applied_version is not None
        and applied_version != original_version
    )


# ---------------------------------------------------------------- avatar.json


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def avatar_section(
    user: str,
    result: imaging.Result,
    *,
    spec: Mapping[str, Any] | None = None,
    original_version: str | None = None,
) -> dict[str, Any]:
    """The avatar part of avatar.json. `spec`: the record of the spec that made it
    (`imgpipe.spec.Rendering.record()`); `original_version`: the S3 version it was made from."""
    return {
        "version": result.version,
        "spec": dict(spec) if spec is not None else None,
        "originalVersionId": original_version,
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
    *,
    user: str,
    upload_id: str | None,
    sequencer: str,
    avatar: dict[str, Any],
    at: str,
    original_version: str | None = None,
) -> Doc:
    return {
        "schema": SCHEMA,
        "user": user,
        "latest": {
            "uploadId": upload_id,
            "state": "ready",
            "reason": None,
            "message": None,
            "at": at,
            "originalVersionId": original_version,
        },
        "avatar": avatar,
        "sequencer": sequencer,
    }


def rejected_doc(
    previous: Doc | None,
    *,
    user: str,
    upload_id: str | None,
    sequencer: str,
    reason: str,
    message: str,
    at: str,
    original_version: str | None = None,
) -> Doc:
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
            "originalVersionId": original_version,
        },
        "avatar": previous.get("avatar") if previous else None,
        "sequencer": sequencer,
    }


def rerendered_doc(current: Doc, avatar: dict[str, Any]) -> Doc:
    """`current` showing a re-rendered avatar: the status of the latest upload (what its client was
    told) and the ordering state stay; a refusal recorded by an earlier re-render goes."""
    doc = {key: value for key, value in current.items() if key != "rerender"}
    doc["avatar"] = avatar
    return doc


def rerender_rejected_doc(current: Doc, *, made_by: MadeBy, reason: str, message: str, at: str) -> Doc:
    """`current` with a note that re-rendering its avatar as `made_by` says was refused.

    The avatar shown and the upload's status stay as they were (the upload was accepted when it
    was made); the note is what tells the next backfill run not to decode it again for this spec
    and pipeline.
    """
    rerender = {
        "spec": made_by.spec,
        "pipeline": made_by.pipeline,
        "state": "rejected",
        "reason": reason,
        "message": message,
        "at": at,
    }
    return {**current, "rerender": rerender}


# ---------------------------------------------------------------- backfill: what is stale


@dataclass(frozen=True)
class MadeBy:
    """What makes an avatar what it is, as avatar.json records it (`avatar.spec`): the spec's
    digest (renditions, formats, qualities) and the renderer's output revision
    (`imaging.PIPELINE_VERSION`). An avatar that either differs from is stale. Pillow's version
    is not part of it: an upgrade changes new avatars' bytes, never what a stored one should be."""

    spec: str
    pipeline: str


@dataclass(frozen=True)
class RerenderPlan:
    """What a backfill does with one user's avatar.json.

    `skip` is why nothing is rendered (None: re-render). `current`: made by this spec and
    pipeline already; `no_avatar`: nothing shown (never processed, only rejected uploads, or erased);
    `source_unknown`: a document written before avatars recorded their original, whose latest
    upload was rejected, so which original made the avatar is unknown; `rejected`: re-rendering
    it with this spec and pipeline was refused before (`rejected` holds that note).
    To re-render: read `source_version` of the original, apply under `sequencer` (the document's
    own, so the re-render can never pass a newer upload), and take the disappearance of
    `guard_version` (the latest upload's original, which lifecycle rules never expire while it
    is current) as erasure.
    """

    skip: SkipReason | Literal["rejected"] | None
    source_version: str | None = None
    sequencer: str = ""
    guard_version: str | None = None
    recorded: MadeBy | None = None
    rejected: Mapping[str, Any] | None = None


def rerender_plan(doc: Doc | None, made_by: MadeBy) -> RerenderPlan:
    """Whether the avatar `doc` shows was made as `made_by` says (spec and pipeline), and if not,
    what to re-render. Reads nothing but the document. An avatar recorded without a pipeline (or
    without a spec) is stale: nothing says what made it."""
    avatar = (doc or {}).get("avatar")
    if doc is None or not avatar:
        return RerenderPlan("no_avatar")
    spec = avatar.get("spec") or {}
    recorded = MadeBy(spec["digest"], str(spec.get("pipeline"))) if spec.get("digest") else None
    if recorded == made_by:
        return RerenderPlan("current", recorded=recorded)
    note = doc.get("rerender") or {}
    noted = MadeBy(str(note.get("spec")), str(note.get("pipeline")))
    if noted == made_by and note.get("state") == "rejected":
        return RerenderPlan("rejected", recorded=recorded, rejected=note)
    latest = doc.get("latest") or {}
    if "originalVersionId" in avatar:
        source = avatar["originalVersionId"]
    elif latest.get("state") == "ready":
        # Written before avatars named their original: a ready document's avatar is its latest upload's.
        source = latest.get("originalVersionId")
    else:
        return RerenderPlan("source_unknown", recorded=recorded)
    return RerenderPlan(
        None,
        source_version=source,
        sequencer=str(doc.get("sequencer") or ""),
        guard_version=latest.get("originalVersionId") or source,
        recorded=recorded,
    )


def too_big_message(size: int, limit: int) -> str:
    return f"The file is {size:,} bytes; the largest accepted upload is {limit:,} bytes."


def shown_version(doc: Doc | None) -> str | None:
    """The version of the avatar `doc` shows (a rejected upload's doc shows the previous one)."""
    avatar = (doc or {}).get("avatar")
    return avatar["version"] if avatar else None


# ---------------------------------------------------------------- renditions and stable copies


@dataclass(frozen=True)
class RenditionWrite:
    """One object to put: a rendition under its versioned key (immutable), or a stable copy
    (`stable_version`: the version it holds, for later checks)."""

    key: str
    data: bytes = field(repr=False)
    content_type: str
    stable_version: str | None = None


def rendition_writes(user: str, result: imaging.Result) -> list[RenditionWrite]:
    """Every file an avatar.json naming `result` needs: each rendition twice."""
    return [
        write
        for output in result.outputs
        for write in (
            RenditionWrite(
                keys.versioned_key(user, result.version, output.filename), output.data, output.content_type
            ),
            RenditionWrite(
                keys.stable_key(user, output.filename), output.data, output.content_type, result.version
            ),
        )
    ]


@dataclass(frozen=True)
class StableCopy:
    """One stable URL and the immutable rendition it must hold."""

    stable_key: str
    versioned_key: str
    content_type: str


def stable_copies(avatar: Mapping[str, Any]) -> list[StableCopy]:
    return [StableCopy(r["stableUrl"], r["url"], r["contentType"]) for r in avatar["renditions"]]


def stale_copies(avatar: Mapping[str, Any], held: Mapping[str, str | None]) -> list[StableCopy]:
    """The stable copies that do not hold `avatar`'s version (`held`: stable key -> version)."""
    return [copy for copy in stable_copies(avatar) if held.get(copy.stable_key) != avatar["version"]]


# ---------------------------------------------------------------- expiry of replaced renditions


@dataclass(frozen=True)
class StoredObject:
    key: str
    last_modified: datetime


def renditions_to_expire(
    user: str, stored: Iterable[StoredObject], *, keep: Collection[str | None], written_before: datetime
) -> list[str]:
    """The versioned renditions of `user` that no reader needs any more.

    Kept: the versions in `keep` (the one just committed and the one it replaced, which a
    client that read avatar.json a moment ago, or a cache, may still fetch), and every version
    with an object written at or after `written_before`: a concurrent upload writes its
    renditions before it commits, so a young version may be about to become the current one.
    Everything else (replaced avatars, renditions of uploads that lost a race or crashed) goes.
    """
    by_version: dict[str, list[StoredObject]] = {}
    for obj in stored:
        version = keys.version_in_key(user, obj.key)
        if version is not None:
            by_version.setdefault(version, []).append(obj)
    return sorted(
        obj.key
        for version, objects in by_version.items()
        if version not in keep and all(o.last_modified < written_before for o in objects)
        for obj in objects
    )

"""Apply one stored upload: renditions, stable copies and avatar.json in the assets bucket.

`imgpipe.avatar_doc` decides what to write (pure), `imgpipe.avatar_store` moves the bytes (S3);
this module is the order of the steps. `handle_upload` takes an S3 event's fields;
`apply_upload` is the unit itself, for anything else that names an original (a backfill).

The common path is four S3 round trips, whatever the number of renditions:

1. read avatar.json  ||  get the original
   (decode, resize, encode: no S3)
2. put every versioned rendition  ||  put every stable copy  ||  list the versioned renditions
3. commit avatar.json: a conditional PUT (If-Match the ETag read in 1, If-None-Match: * when
   there was none)
4. HEAD every stable copy  ||  HEAD the original  ||  delete expired renditions

Why this order is safe (S3 is strongly consistent: a read that starts after a write completed
sees it, LIST included; conditional writes are atomic):

- Order and idempotency. avatar.json stores the S3 `sequencer` of the upload it describes. An
  event not newer than it is a duplicate or arrived late and changes nothing. The commit is
  conditional on the document read in step 1, so of two concurrent runs only one commits on top
  of a given document; the other re-reads it and re-decides (a newer run retries on top of it,
  an older one gives up). A new S3 version of an upload id avatar.json already reports on is a
  replayed presigned POST and is skipped.
- Files before the document. Versioned renditions and stable copies are all written (step 2)
  before the commit (step 3), so once avatar.json says "ready", every URL it names serves the
  new picture.
- Who settles the stable copies. They are shared by every run of the user and written before
  the commit, so a run that loses a race may have overwritten the winner's. Every run that
  writes stable copies checks them afterwards, reading state that is newer than its own writes:
  - a run that committed HEADs its stable copies after the commit (step 4). This cannot be
    skipped even when the commit succeeded at the first attempt: a settling run (a duplicate
    event, or a loser) may have read the previous document and copied *its* renditions over
    ours between our step 2 and our step 3 — it re-read avatar.json before we committed, saw
    its own version still current, and stopped. Only we can see that after our commit.
  - a run that did not commit (stale, duplicate, lost the race) settles: it reads avatar.json,
    HEADs the stable copies, copies the committed renditions over the stale ones, and re-reads
    avatar.json; it stops when the document read after its copies names the version it copied
    (any later commit's own step 4 then sees and fixes whatever it left behind).
  So the last write to each stable copy is followed by a check that would have rewritten it if
  it did not match the final document: when every run has finished, the stable copies show
  what avatar.json names. Only when that check finds a mismatch does a run re-read anything.
- Erase is final. DELETE /avatars (imgpipe.erase) deletes every original version first, then
  lists and deletes the assets. A run HEADs its original after its last write (step 4, or after
  settling): if the original is still there, the erase's listing of the assets has not started,
  so it will see and delete everything the run wrote; if it is gone, the run takes back what it
  wrote itself — each object deleted only if it still holds the ETag this run wrote (a
  conditional delete), so nothing a later upload wrote is touched. A vanished original, a
  vanished avatar.json or rendition met on the way is a clean skip ("gone"), never an error.
- Replaced renditions expire. After its commit a run deletes the versioned renditions that are
  neither its own nor those of the avatar it replaced (a client that read avatar.json just
  before, or a cache, may still fetch them) and that were all written more than `retire_after`
  ago — a concurrent upload writes its renditions before it commits, so a young version may be
  about to become current. The listing rides along with step 2 and the delete with step 4: no
  round trip is added, and runs that publish nothing list nothing.

Exceptions a retry could fix (throttling, network, a conflict that did not settle) propagate,
so S3 retries the event and then dead-letters it; a bad image is a normal return (rejected).

Known limits, both needing byte-identical pictures within milliseconds: ETags are content
hashes, so a take-back can delete a byte-identical object that an upload made right after the
erase wrote in the same instant; and an expiry can delete the renditions of a version that a
concurrent upload of the very same picture (a version at least two avatars old) is re-writing
(its stable copies are unaffected). Step 2 is one round for up to PARALLEL_REQUESTS requests; a
longer rendition list queues the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Literal

from imgpipe import avatar_doc, imaging, keys, settings
from imgpipe.avatar_doc import Doc, RerenderPlan, SkipReason
from imgpipe.avatar_store import PARALLEL_REQUESTS, AvatarStore, Manifest, OriginalRef, S3Client, wait_all
from imgpipe.settings import SettingsError, env
from imgpipe.spec import AvatarSpec, Rendering

logger = logging.getLogger(__name__)

# A conflict means another upload of the same user committed in between; a few
# rounds settle any realistic burst, and beyond that S3's retry of the event will.
COMMIT_ATTEMPTS = 5
SETTLE_ATTEMPTS = 5
# Longer than any run takes from its first rendition write to its commit (the function's
# timeout is 60 s; a retried run writes its renditions afresh).
RETIRE_AFTER = timedelta(minutes=15)

Status = Literal["processed", "rejected", "skipped"]


@dataclass(frozen=True)
class Config:
    uploads_bucket: str
    assets_bucket: str
    options: imaging.Options
    retire_after: timedelta = RETIRE_AFTER

    @property
    def rendering(self) -> Rendering:
        """The spec these options render, as avatar.json records it and a backfill compares it."""
        o = self.options
        return Rendering(o.renditions, o.formats, o.jpeg_quality, o.webp_quality)

    @property
    def made_by(self) -> avatar_doc.MadeBy:
        """What an avatar rendered now is made by: this spec and this code's pipeline revision."""
        return avatar_doc.MadeBy(self.rendering.digest(), imaging.PIPELINE_VERSION)

    def spec_record(self) -> dict[str, str | int]:
        """avatar.json's `avatar.spec`: the spec spelt out and its digest, and the pipeline revision."""
        return {**self.rendering.record(), "pipeline": imaging.PIPELINE_VERSION}


@dataclass(frozen=True)
class Outcome:
    status: Status
    # rejected: the imaging reason code; skipped: duplicate|stale|replayed|gone|not_an_upload_key
    reason: str | None = None
    user: str | None = None
    upload_id: str | None = None
    version: str | None = None
    message: str | None = None
    bytes_in: int = 0
    bytes_out: int = 0


@dataclass(frozen=True)
class Upload:
    """One stored original to apply, and where it stands in its key's order of uploads."""

    user: str
    key: str
    version_id: str | None
    sequencer: str
    size: int | None = None
    etag: str | None = None
    # The version whose disappearance means the user erased their avatar (default: version_id).
    # A re-render may read an older version than the latest upload's, which a lifecycle rule can
    # expire; the latest upload's own version goes only with an erase.
    guard_version_id: str | None = None


class CommitConflict(RuntimeError):
    """avatar.json kept changing under us; raised so S3 retries the event later."""


class SettleConflict(RuntimeError):
    """The stable copies kept changing under us; raised so a retry settles them later."""


def config_from_spec(*, uploads_bucket: str, assets_bucket: str, spec: AvatarSpec) -> Config:
    """The processor's configuration for a deployment's spec (every function that renders reads it
    this one way); SettingsError when this Pillow cannot render it (e.g. avif without libavif)."""
    try:
        options = imaging.Options(
            renditions=spec.renditions,
            formats=spec.formats,
            jpeg_quality=spec.jpeg_quality,
            webp_quality=spec.webp_quality,
            max_bytes=spec.max_upload_bytes,
            max_pixels=spec.max_image_pixels,
        )
    except ValueError as error:
        raise SettingsError(f"processor settings are invalid: {error}") from None
    return Config(uploads_bucket=uploads_bucket, assets_bucket=assets_bucket, options=options)


@dataclass(frozen=True)
class _Buckets:
    uploads_bucket: str = env("UPLOADS_BUCKET")
    assets_bucket: str = env("ASSETS_BUCKET")


def config_from_environment() -> Config:
    """The configuration of a function that renders (the processor, the backfill), read at cold
    start from the variables the template gives both: the buckets and the spec."""
    buckets = settings.load(_Buckets)
    return config_from_spec(
        uploads_bucket=buckets.uploads_bucket,
        assets_bucket=buckets.assets_bucket,
        spec=AvatarSpec.from_environ(),
    )


def handle_upload(
    s3: S3Client,
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
    return apply_upload(s3, cfg, Upload(user, key, version_id, sequencer, size, etag))


def apply_upload(s3: S3Client, cfg: Config, upload: Upload, *, rerender: bool = False) -> Outcome:
    """Apply `upload` through the ordering rule. `rerender` re-renders the original avatar.json
    was made from (same sequencer) with `cfg.options`, e.g. after a rendition spec change: only
    the avatar changes, the latest upload's status and the ordering state stay."""
    with ThreadPoolExecutor(PARALLEL_REQUESTS, thread_name_prefix="imgpipe-s3") as pool:
        store = _store(s3, cfg, pool)
        return _Run(store, cfg, upload, rerender).apply()


def check_avatar(s3: S3Client, cfg: Config, user: str) -> RerenderPlan:
    """Whether `user`'s avatar was made by `cfg`'s spec, from avatar.json alone (one GET)."""
    # One request on this thread: the executor never starts one of its own.
    with ThreadPoolExecutor(1) as pool:
        manifest = _store(s3, cfg, pool).read_manifest(user)
    return avatar_doc.rerender_plan(manifest.doc if manifest else None, cfg.made_by)


def rerender_avatar(s3: S3Client, cfg: Config, user: str) -> Outcome:
    """Bring `user`'s avatar to `cfg`'s spec: the backfill's unit.

    Reads avatar.json; an avatar already made by this spec and pipeline revision (or whose
    re-render with them was refused before) is left alone. Otherwise the original it was made
    from is re-rendered through `apply_upload(rerender=True)` under the document's own
    sequencer: the processor's core and ordering rule, so a newer upload committed meanwhile is
    never overwritten (its sequencer is greater; the conditional commit re-reads and gives up),
    a repeat is harmless, and the stable copies are settled as after any upload. A refusal is
    recorded in avatar.json (`rerender`), the avatar shown stays, and no later run decodes it
    again for this spec and pipeline.
    """
    plan = check_avatar(s3, cfg, user)
    if plan.skip == "rejected":
        note = plan.rejected or {}
        return Outcome("rejected", note.get("reason"), user=user, message=note.get("message"))
    if plan.skip is not None:
        return Outcome("skipped", plan.skip, user=user)
    upload = Upload(
        user,
        keys.upload_key(user),
        plan.source_version,
        plan.sequencer,
        guard_version_id=plan.guard_version,
    )
    return apply_upload(s3, cfg, upload, rerender=True)


def _store(s3: S3Client, cfg: Config, pool: ThreadPoolExecutor) -> AvatarStore:
    return AvatarStore(s3, uploads_bucket=cfg.uploads_bucket, assets_bucket=cfg.assets_bucket, pool=pool)


@dataclass
class _Committed:
    manifest: Manifest
    replaced: Doc | None


@dataclass
class _Run:
    """One upload being applied, and what this run has written so far (key -> ETag)."""

    store: AvatarStore
    cfg: Config
    upload: Upload
    rerender: bool
    upload_id: str | None = None
    written: dict[str, str] = field(default_factory=dict)

    @property
    def user(self) -> str:
        return self.upload.user

    @property
    def ref(self) -> OriginalRef:
        return OriginalRef(self.upload.user, self.upload.key, self.upload.version_id)

    @property
    def guard(self) -> OriginalRef:
        """The original whose disappearance means the avatar was erased."""
        version = self.upload.guard_version_id or self.upload.version_id
        return OriginalRef(self.upload.user, self.upload.key, version)

    def log(self, **extra: Any) -> dict[str, Any]:
        upload = self.upload
        return {
            "user": upload.user,
            "key": upload.key,
            "versionId": upload.version_id,
            "sequencer": upload.sequencer,
            "uploadId": self.upload_id,
            **extra,
        }

    def skipped(self, reason: SkipReason, *, bytes_in: int = 0) -> Outcome:
        return Outcome("skipped", reason, user=self.user, upload_id=self.upload_id, bytes_in=bytes_in)

    # ------------------------------------------------------------ the steps

    def apply(self) -> Outcome:
        store, limit = self.store, self.cfg.options.max_bytes
        # An event that already says "too big" is refused from the original's head alone.
        head_only = self.upload.size is not None and self.upload.size > limit
        # Step 1.
        manifest_f = store.submit(partial(store.read_manifest, self.user))
        original_f = store.submit(partial(store.open_original, self.ref, head_only=head_only))
        try:
            wait_all(manifest_f, original_f)
        except BaseException:
            if original_f.exception() is None and (opened := original_f.result()) is not None:
                opened.close()
            raise
        original, manifest = original_f.result(), manifest_f.result()
        if original is None:
            logger.info("upload no longer exists; skipped", extra=self.log())
            return self.skipped("gone")
        doc = manifest.doc if manifest else None
        with original:
            self.upload_id = original.upload_id
            reason = avatar_doc.skip_reason(self.upload.sequencer, doc, rerender=self.rerender)
            if reason is None and not self.rerender and self.is_replay(doc):
                reason = "replayed"
            if reason is None and self.rerender and self.is_current(doc):
                reason = "current"
            size = original.size if original.size is not None else self.upload.size
            too_big = head_only or (size is not None and size > limit)
            # The body of a skipped original is never read (closing it drops the transfer).
            data = None if reason is not None or too_big else original.read(limit + 1)
        if reason == "replayed":
            logger.info("presigned upload sent again; skipped", extra=self.log(reason=reason))
            return self.skipped(reason)
        if reason is not None:
            logger.info("event already applied or superseded; skipped", extra=self.log(reason=reason))
            # A retry of a run that crashed after writing stable copies must leave them right.
            return self.skipped(reason if self.settle_and_check(manifest, None) else "gone")
        if data is None or len(data) > limit:
            actual = len(data) if data is not None else size or 0
            return self.reject(manifest, "too_many_bytes", avatar_doc.too_big_message(actual, limit))
        try:
            result = imaging.process(data, self.cfg.options)
        except imaging.ImageRejected as rejected:
            return self.reject(manifest, rejected.reason, str(rejected), bytes_in=len(data))
        return self.publish(manifest, result, bytes_in=len(data))

    def is_current(self, doc: Doc | None) -> bool:
        """Whether `doc`'s avatar is already made by this run's spec (another run re-rendered it)."""
        return avatar_doc.rerender_plan(doc, self.cfg.made_by).skip == "current"

    def is_replay(self, doc: Doc | None) -> bool:
        return avatar_doc.is_replay(doc, upload_id=self.upload_id, original_version=self.upload.version_id)

    def publish(self, manifest: Manifest | None, result: imaging.Result, *, bytes_in: int) -> Outcome:
        store, user, version = self.store, self.user, result.version
        # Step 2: every file the document will name, before the document names it.
        writes = avatar_doc.rendition_writes(user, result)
        listed_f = store.submit(partial(store.list_renditions, user))
        etags = store.all(partial(store.put_rendition, write) for write in writes)
        self.written.update((write.key, etag) for write, etag in zip(writes, etags, strict=True))
        wait_all(listed_f)
        avatar = avatar_doc.avatar_section(
            user, result, spec=self.cfg.spec_record(), original_version=self.upload.version_id
        )

        def ready(current: Doc | None) -> Doc:
            if self.rerender:
                assert current is not None  # skip_reason stops a re-render without a document
                return avatar_doc.rerendered_doc(current, avatar)
            return avatar_doc.ready_doc(
                user=user,
                upload_id=self.upload_id,
                sequencer=self.upload.sequencer,
                avatar=avatar,
                at=avatar_doc.utc_now(),
                original_version=self.upload.version_id,
            )

        # Step 3.
        committed = self.commit(manifest, ready)
        if not isinstance(committed, _Committed):
            if committed == "gone":
                self.take_back()
                return self.skipped("gone", bytes_in=bytes_in)
            logger.info("avatar.json moved on meanwhile; skipped", extra=self.log(reason=committed))
            if not self.settle_and_check(None, None):
                committed = "gone"
            return self.skipped(committed, bytes_in=bytes_in)

        # Step 4: check the stable copies and that the original survived; expire old renditions.
        expired = avatar_doc.renditions_to_expire(
            user,
            listed_f.result() or (),
            keep={version, avatar_doc.shown_version(committed.replaced)},
            written_before=datetime.now(UTC) - self.cfg.retire_after,
        )
        copies = avatar_doc.stable_copies(avatar)
        held_f = [store.submit(partial(store.stable_version, c.stable_key)) for c in copies]
        exists_f = store.submit(partial(store.original_exists, self.guard))
        expire_f = store.submit(partial(store.expire, expired)) if expired else None
        wait_all(*held_f, exists_f, *([expire_f] if expire_f else []))
        if expire_f is not None:
            logger.info("replaced renditions expired", extra=self.log(objects=expire_f.result()))
        held = {c.stable_key: f.result() for c, f in zip(copies, held_f, strict=True)}
        if not self.settle_and_check(committed.manifest, held, original_exists=exists_f.result()):
            return self.skipped("gone", bytes_in=bytes_in)
        bytes_out = sum(len(output.data) for output in result.outputs)
        logger.info("avatar processed", extra=self.log(version=version, bytesOut=bytes_out))
        return Outcome(
            "processed",
            user=user,
            upload_id=self.upload_id,
            version=version,
            bytes_in=bytes_in,
            bytes_out=bytes_out,
        )

    def reject(self, manifest: Manifest | None, reason: str, message: str, *, bytes_in: int = 0) -> Outcome:
        """A permanent refusal: mark the original, tell the client, return normally (no retry storm)."""
        if self.rerender:
            return self.reject_rerender(manifest, reason, message, bytes_in=bytes_in)
        logger.warning("upload rejected", extra=self.log(reason=reason, detail=message))
        # Tagged before it is reported, so whoever reads "rejected" finds the tag.
        if not self.store.tag_rejected(self.ref, reason):
            logger.info("upload no longer exists; skipped", extra=self.log())
            return self.skipped("gone", bytes_in=bytes_in)

        def rejected(current: Doc | None) -> Doc:
            return avatar_doc.rejected_doc(
                current,
                user=self.user,
                upload_id=self.upload_id,
                sequencer=self.upload.sequencer,
                reason=reason,
                message=message,
                at=avatar_doc.utc_now(),
                original_version=self.upload.version_id,
            )

        return self.commit_rejection(manifest, rejected, reason, message, bytes_in=bytes_in)

    def reject_rerender(
        self, manifest: Manifest | None, reason: str, message: str, *, bytes_in: int = 0
    ) -> Outcome:
        """This spec cannot re-render an avatar that was accepted once (e.g. a lower pixel limit):
        the avatar shown and the upload's status stay, the original is not tagged (it was not
        refused as an upload); avatar.json notes the refusal so later runs do not decode it again."""
        logger.warning("re-render rejected", extra=self.log(reason=reason, detail=message))
        made_by = self.cfg.made_by

        def noted(current: Doc | None) -> Doc:
            assert current is not None  # skip_reason stops a re-render without a document
            return avatar_doc.rerender_rejected_doc(
                current, made_by=made_by, reason=reason, message=message, at=avatar_doc.utc_now()
            )

        return self.commit_rejection(manifest, noted, reason, message, bytes_in=bytes_in)

    def commit_rejection(
        self,
        manifest: Manifest | None,
        build: Callable[[Doc | None], Doc],
        reason: str,
        message: str,
        *,
        bytes_in: int,
    ) -> Outcome:
        """Commit a refusal's document, then make sure no erase ran meanwhile (else take it back)."""
        committed = self.commit(manifest, build)
        if not isinstance(committed, _Committed):
            if committed == "gone":
                self.take_back()
            return self.skipped(committed, bytes_in=bytes_in)
        if not self.store.original_exists(self.guard):
            self.take_back()
            return self.skipped("gone", bytes_in=bytes_in)
        return Outcome(
            "rejected", reason, user=self.user, upload_id=self.upload_id, message=message, bytes_in=bytes_in
        )

    def commit(
        self, manifest: Manifest | None, build: Callable[[Doc | None], Doc]
    ) -> _Committed | SkipReason:
        """Write build(current doc) while this upload is still the newest; else the skip reason."""
        doc, etag = (manifest.doc, manifest.etag) if manifest else (None, None)
        for _ in range(COMMIT_ATTEMPTS):
            new = build(doc)
            new_etag = self.store.write_manifest(self.user, new, etag)
            if new_etag is not None:
                self.written[keys.manifest_key(self.user)] = new_etag
                return _Committed(Manifest(new, new_etag), replaced=doc)
            logger.info("avatar.json changed since it was read; re-deciding", extra=self.log())
            had_doc = doc is not None
            current = self.store.read_manifest(self.user)
            doc, etag = (current.doc, current.etag) if current else (None, None)
            if had_doc and doc is None:
                # Only an erase deletes avatar.json: the user removed their avatar meanwhile.
                return "gone"
            reason = avatar_doc.skip_reason(self.upload.sequencer, doc, rerender=self.rerender)
            if reason is not None:
                return reason
            if not self.rerender and self.is_replay(doc):
                return "replayed"
            if self.rerender and self.is_current(doc):
                return "current"
        raise CommitConflict(f"avatar.json of {self.user} kept changing; S3 will retry the event")

    # ------------------------------------------------------------ stable copies and erasure

    def settle_and_check(
        self,
        manifest: Manifest | None,
        held: dict[str, str | None] | None,
        *,
        original_exists: bool | None = None,
    ) -> bool:
        """Settle the stable copies, then make sure no erase missed what this run wrote.

        `manifest`/`held`: the document, and the versions its stable copies were seen holding
        after this run's last write, when already read (None: read them). `original_exists`:
        a HEAD of the original made after every write so far, if one was. False when the
        original was erased meanwhile and what this run wrote has been taken back.
        """
        before = len(self.written)
        if original_exists is not False:
            self.settle(manifest, held)
        if len(self.written) != before or (original_exists is None and self.written):
            original_exists = self.store.original_exists(self.guard)
        if original_exists is False:
            self.take_back()
            return False
        return True

    def settle(self, manifest: Manifest | None, held: dict[str, str | None] | None) -> None:
        """Make the stable copies hold the version avatar.json names (see the module docstring)."""
        store = self.store
        copied: str | None = None
        missing: str | None = None
        for _ in range(SETTLE_ATTEMPTS):
            if manifest is None:
                manifest = store.read_manifest(self.user)
            avatar = manifest.doc.get("avatar") if manifest else None
            manifest = None
            # The renditions of the avatar.json still current are gone: only an erase deletes
            # those, and whoever is left to check the original takes back what was copied.
            if avatar is None or avatar["version"] in (copied, missing):
                return
            if held is None:
                copies = avatar_doc.stable_copies(avatar)
                versions = store.all(partial(store.stable_version, c.stable_key) for c in copies)
                held = {c.stable_key: v for c, v in zip(copies, versions, strict=True)}
            stale = avatar_doc.stale_copies(avatar, held)
            held = None
            if not stale:
                return
            version = avatar["version"]
            etags = store.all(partial(store.copy_to_stable, c, version) for c in stale)
            for copy, etag in zip(stale, etags, strict=True):
                if etag is not None:
                    self.written[copy.stable_key] = etag
            # A rendition gone from under the copy: erased, or expired once avatar.json moved on.
            copied, missing = (version, None) if None not in etags else (None, version)
            logger.info(
                "stable copies reset to the committed version",
                extra=self.log(version=version, copies=len(stale), complete=copied is not None),
            )
        raise SettleConflict(f"stable copies of {self.user} kept changing; S3 will retry the event")

    def take_back(self) -> None:
        """The avatar was erased while this run worked: delete what it wrote, where still its own."""
        written = list(self.written.items())
        deleted = self.store.all(partial(self.store.delete_if_unchanged, k, e) for k, e in written)
        logger.info(
            "avatar erased while processing; took back what this run wrote",
            extra=self.log(reason="gone", deleted=sum(deleted), written=len(written)),
        )
        self.written.clear()

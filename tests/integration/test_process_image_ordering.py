"""Ordering rules beyond one event at a time: concurrent repairs, replayed POSTs, re-renders."""

from __future__ import annotations

from dataclasses import replace
from types import ModuleType
from typing import Any

import boto3

from imgpipe import avatars, imaging, keys
from tests.integration.s3_interleave import Pause, in_thread
from tests.integration.test_process_image import (
    ASSETS,
    FILES,
    SEQ,
    UPLOADS,
    USER,
    app,
    assets_snapshot,
    aws,
    count_calls,
    image_bytes,
    manifest,
    stable_matches,
    upload,
)

# The processor's fixtures, found by pytest under these names.
FIXTURES = (aws, app)


def stable_versions(s3: Any) -> set[str]:
    return {
        s3.head_object(Bucket=ASSETS, Key=keys.stable_key(USER, name))["Metadata"]["imgpipe-version"]
        for name in FILES
    }


def test_a_repair_during_a_newer_upload_cannot_leave_the_older_avatar_at_the_stable_urls(
    aws: Any, app: ModuleType
) -> None:
    # Given avatar B (after A), and upload C held just before its commit, its stable copies written
    avatars.handle_upload(aws, app.CONFIG, sequencer=SEQ[0], **upload(aws, image_bytes((200, 0, 0)), "up-a"))
    b = upload(aws, image_bytes((0, 200, 0)), "up-b")
    version_b = avatars.handle_upload(aws, app.CONFIG, sequencer=SEQ[1], **b).version
    c = upload(aws, image_bytes((0, 0, 200)), "up-c")
    client = boto3.client("s3")
    commit = Pause(client, "PutObject", lambda params: params["Key"] == keys.manifest_key(USER))
    run = in_thread(lambda: avatars.handle_upload(client, app.CONFIG, sequencer=SEQ[2], **c))
    commit.wait()

    # When S3 delivers B's event again meanwhile: it finds copies avatar.json (still B) does not
    # name, puts B's back, re-reads avatar.json (still B) and stops
    repair = avatars.handle_upload(aws, app.CONFIG, sequencer=SEQ[1], **b)
    assert (repair.status, repair.reason) == ("skipped", "duplicate")
    assert stable_versions(aws) == {version_b}
    commit.release()
    outcome = run.result(timeout=30)

    # Then C, whose commit succeeded at the first attempt, still checked its stable copies
    # afterwards and put its own back: only it could see them go stale
    assert outcome.status == "processed"
    assert manifest(aws)["avatar"]["version"] == outcome.version
    assert stable_versions(aws) == {outcome.version}
    assert stable_matches(aws, outcome.version)


def test_a_replayed_presigned_post_is_not_processed_again(
    aws: Any, app: ModuleType, lambda_context: Any
) -> None:
    # Given an upload processed
    first = upload(aws, image_bytes((10, 20, 30)), "upload-1")
    assert avatars.handle_upload(aws, app.CONFIG, sequencer=SEQ[0], **first).status == "processed"
    before = assets_snapshot(aws)
    doc = manifest(aws)
    assert doc["latest"]["originalVersionId"] == first["version_id"]
    writes = count_calls(app.s3, "PutObject") + count_calls(app.s3, "CopyObject")

    # When the same form is POSTed again (another S3 version carrying the same upload id), with
    # the same file or another one
    for i, data in enumerate([image_bytes((10, 20, 30)), image_bytes((99, 0, 0))], start=1):
        replay = upload(aws, data, "upload-1")
        outcome = avatars.handle_upload(app.s3, app.CONFIG, sequencer=SEQ[i], **replay)

        # Then it is skipped: nothing written, the avatar the client was told about stays
        assert (outcome.status, outcome.reason) == ("skipped", "replayed")
    assert writes == []
    assert assets_snapshot(aws) == before
    assert manifest(aws) == doc
    # (Control: a new upload id is processed.)
    fresh = upload(aws, image_bytes((99, 0, 0)), "upload-2")
    assert avatars.handle_upload(aws, app.CONFIG, sequencer=SEQ[3], **fresh).status == "processed"


def test_a_replayed_rejected_upload_is_not_processed_again(aws: Any, app: ModuleType) -> None:
    bad = upload(aws, b"not an image" * 50, "upload-bad")
    assert avatars.handle_upload(aws, app.CONFIG, sequencer=SEQ[0], **bad).status == "rejected"
    doc = manifest(aws)

    replay = upload(aws, b"not an image" * 50, "upload-bad")
    outcome = avatars.handle_upload(aws, app.CONFIG, sequencer=SEQ[1], **replay)

    assert (outcome.status, outcome.reason) == ("skipped", "replayed")
    assert manifest(aws) == doc
    tags = aws.get_object_tagging(Bucket=UPLOADS, Key=replay["key"], VersionId=replay["version_id"])["TagSet"]
    assert tags == []


def test_the_same_stored_version_under_a_newer_sequencer_is_applied(aws: Any, app: ModuleType) -> None:
    # Not a replay: no new object was stored (what the e2e suite's control event sends).
    obj = upload(aws, image_bytes((10, 20, 30)), "upload-1")
    avatars.handle_upload(aws, app.CONFIG, sequencer=SEQ[0], **obj)

    outcome = avatars.handle_upload(aws, app.CONFIG, sequencer=SEQ[1], **obj)

    assert outcome.status == "processed"
    assert manifest(aws)["sequencer"] == SEQ[1]


# ---------------------------------------------------------------- re-rendering (the backfill's unit)


def current(obj: dict[str, Any]) -> avatars.Upload:
    return avatars.Upload(USER, obj["key"], obj["version_id"], SEQ[0], obj["size"], obj["etag"])


def test_a_rerender_applies_a_new_spec_to_the_original_avatar_json_was_made_from(
    aws: Any, app: ModuleType
) -> None:
    # Given an avatar made with the current spec
    obj = upload(aws, image_bytes((10, 120, 240)), "upload-1")
    old = avatars.handle_upload(aws, app.CONFIG, sequencer=SEQ[0], **obj)
    new_spec = replace(app.CONFIG, options=replace(app.CONFIG.options, jpeg_quality=60))
    assert imaging.version_of(b"", new_spec.options) != imaging.version_of(b"", app.CONFIG.options)

    # When the same original is re-rendered with another spec, outside any S3 event
    outcome = avatars.apply_upload(aws, new_spec, current(obj), rerender=True)

    # Then avatar.json names the new renditions, for the same upload and sequencer
    assert outcome.status == "processed"
    assert outcome.version != old.version
    doc = manifest(aws)
    assert (doc["avatar"]["version"], doc["sequencer"]) == (outcome.version, SEQ[0])
    assert doc["latest"]["uploadId"] == "upload-1"
    assert stable_matches(aws, outcome.version)
    # and the same event without `rerender` is still a duplicate
    again = avatars.apply_upload(aws, new_spec, current(obj))
    assert (again.status, again.reason) == ("skipped", "duplicate")


def test_a_rerender_never_overwrites_a_newer_upload(aws: Any, app: ModuleType) -> None:
    older = upload(aws, image_bytes((10, 120, 240)), "upload-1")
    avatars.handle_upload(aws, app.CONFIG, sequencer=SEQ[0], **older)
    newer = upload(aws, image_bytes((240, 120, 10)), "upload-2")
    avatars.handle_upload(aws, app.CONFIG, sequencer=SEQ[1], **newer)
    before = assets_snapshot(aws)

    outcome = avatars.apply_upload(aws, app.CONFIG, current(older), rerender=True)

    assert (outcome.status, outcome.reason) == ("skipped", "stale")
    assert assets_snapshot(aws) == before

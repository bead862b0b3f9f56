"""Erase is final: DELETE /avatars at any step of the processor leaves nothing published.

Real interleavings against moto: the processor runs on its own thread with one of its S3
requests held (tests/integration/s3_interleave.Pause) while imgpipe.erase runs, then goes on.
Every step of its sequence is tried, for a first upload (no avatar.json yet), a re-upload and a
rejected upload; and the erase is also held between listing the assets and deleting them while
the processor writes or repairs stable copies (the writes its listing cannot see).
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import boto3
import pytest

from imgpipe import avatars, erase, keys
from tests.integration.s3_interleave import Pause, in_thread
from tests.integration.test_process_image import (
    ASSETS,
    FILES,
    SEQ,
    UPLOADS,
    USER,
    app,
    aws,
    image_bytes,
    upload,
)

# The processor's fixtures, found by pytest under these names.
FIXTURES = (aws, app)
MANIFEST = keys.manifest_key(USER)
GOOD = image_bytes((30, 160, 90))
BAD = b"this is not an image\n" * 100


def erase_avatar(s3: Any) -> erase.EraseResult:
    return erase.erase_avatar(s3, user=USER, uploads_bucket=UPLOADS, assets_bucket=ASSETS)


def published(s3: Any) -> list[str]:
    """Everything of the user's left in either bucket."""
    assets = s3.list_objects_v2(Bucket=ASSETS, Prefix=keys.user_prefix(USER)).get("Contents", [])
    uploads = s3.list_object_versions(Bucket=UPLOADS, Prefix=keys.user_prefix(USER))
    return [o["Key"] for o in assets] + [
        f"{o['Key']}@{o['VersionId']}"
        for o in (*uploads.get("Versions", []), *uploads.get("DeleteMarkers", []))
    ]


def is_original(params: dict[str, Any]) -> bool:
    return bool(params["Bucket"] == UPLOADS)


def is_manifest(params: dict[str, Any]) -> bool:
    return bool(params["Key"] == MANIFEST)


def is_first_stable_copy(params: dict[str, Any]) -> bool:
    return bool(params["Key"] == keys.stable_key(USER, FILES[0]))


# (operation, which of its requests, after its answer?) for every gap in the sequence.
Point = tuple[str, Callable[[dict[str, Any]], bool], bool]
READ: Point = ("GetObject", is_original, False)
DECODE: Point = ("GetObject", is_original, True)
WRITE: Point = ("PutObject", is_first_stable_copy, False)
COMMIT: Point = ("PutObject", is_manifest, False)
COMMITTED: Point = ("PutObject", is_manifest, True)
CHECK: Point = ("HeadObject", is_original, False)
TAG: Point = ("PutObjectTagging", is_original, False)

PUBLISH_POINTS = {
    "before-the-original-is-read": READ,
    "while-it-is-decoded": DECODE,
    "while-renditions-are-written": WRITE,
    "before-the-commit": COMMIT,
    "just-after-the-commit": COMMITTED,
    "before-the-final-check": CHECK,
}
REJECT_POINTS = {
    "before-the-original-is-read": READ,
    "while-it-is-decoded": DECODE,
    "before-the-tag": TAG,
    "before-the-commit": COMMIT,
    "just-after-the-commit": COMMITTED,
    "before-the-final-check": CHECK,
}
CASES = [
    pytest.param(previous, data, point, id=f"{name}-{point_name}")
    for name, previous, data, points in [
        ("first-upload", False, GOOD, PUBLISH_POINTS),
        ("re-upload", True, GOOD, PUBLISH_POINTS),
        ("rejected-first-upload", False, BAD, REJECT_POINTS),
        ("rejected-re-upload", True, BAD, REJECT_POINTS),
    ]
    for point_name, point in points.items()
]


@pytest.mark.parametrize(("previous", "data", "point"), CASES)
def test_an_erase_at_any_step_of_processing_leaves_nothing_published(
    aws: Any, app: ModuleType, previous: bool, data: bytes, point: Point
) -> None:
    # Given a user (with or without an avatar already) whose upload is being processed
    if previous:
        avatars.handle_upload(
            aws, app.CONFIG, sequencer=SEQ[0], **upload(aws, image_bytes((9, 9, 9)), "up-0")
        )
    obj = upload(aws, data, "up-1")
    client = boto3.client("s3")
    operation, match, after = point
    pause = Pause(client, operation, match, after=after)
    run = in_thread(lambda: avatars.handle_upload(client, app.CONFIG, sequencer=SEQ[1], **obj))

    # When the user erases their avatar while the processor is held at that point
    pause.wait()
    erased = erase_avatar(aws)
    pause.release()
    outcome = run.result(timeout=30)

    # Then the processor stops cleanly (no exception, so no retry and no alarm)...
    assert erased.uploads_deleted >= 1
    assert (outcome.status, outcome.reason) == ("skipped", "gone")
    # ...and once both have finished nothing of the user's is left anywhere
    assert published(aws) == []


@pytest.mark.parametrize("previous", [False, True], ids=["first-upload", "re-upload"])
def test_writes_the_erase_listing_cannot_see_are_taken_back(
    aws: Any, app: ModuleType, previous: bool
) -> None:
    # Given an upload being processed, held while writing its renditions
    if previous:
        avatars.handle_upload(
            aws, app.CONFIG, sequencer=SEQ[0], **upload(aws, image_bytes((9, 9, 9)), "up-0")
        )
    obj = upload(aws, GOOD, "up-1")
    client, eraser = boto3.client("s3"), boto3.client("s3")
    writing = Pause(client, "PutObject", is_first_stable_copy)
    run = in_thread(lambda: avatars.handle_upload(client, app.CONFIG, sequencer=SEQ[1], **obj))
    writing.wait()
    # and an erase that has deleted the originals and listed the assets, not yet deleted them
    deleting = Pause(eraser, "DeleteObjects", lambda params: params["Bucket"] == ASSETS)
    erasing = in_thread(lambda: erase_avatar(eraser))
    deleting.wait()

    # When the processor writes the rest and commits (after the erase's listing), then the erase ends
    writing.release()
    outcome = run.result(timeout=30)
    deleting.release()
    erasing.result(timeout=30)

    # Then the processor took back what the erase could not see
    assert (outcome.status, outcome.reason) == ("skipped", "gone")
    assert published(aws) == []


def test_an_erase_between_the_commit_and_the_check_of_a_rejected_first_upload_leaves_no_status(
    aws: Any, app: ModuleType
) -> None:
    # The "rejected" avatar.json written after the erase (no document existed to conflict with).
    obj = upload(aws, BAD, "up-bad")
    client = boto3.client("s3")
    commit = Pause(client, "PutObject", is_manifest)
    run = in_thread(lambda: avatars.handle_upload(client, app.CONFIG, sequencer=SEQ[0], **obj))
    commit.wait()
    erase_avatar(aws)
    commit.release()

    assert (run.result(timeout=30).status, published(aws)) == ("skipped", [])


# ---------------------------------------------------------------- repairs racing an erase


def broken_stable_copies(aws: Any, app: Any) -> dict[str, Any]:
    """A user whose stable copies show an older avatar than avatar.json names (a crashed run's
    leftovers); returns the upload whose event, delivered again, repairs them."""
    first = upload(aws, image_bytes((200, 0, 0)), "up-0")
    old = avatars.handle_upload(aws, app.CONFIG, sequencer=SEQ[0], **first).version
    second = upload(aws, image_bytes((0, 0, 200)), "up-1")
    avatars.handle_upload(aws, app.CONFIG, sequencer=SEQ[1], **second)
    for name in FILES:
        aws.copy_object(
            Bucket=ASSETS,
            Key=keys.stable_key(USER, name),
            CopySource={"Bucket": ASSETS, "Key": keys.versioned_key(USER, old, name)},
            MetadataDirective="REPLACE",
            Metadata={"imgpipe-version": old},
        )
    return second


def test_a_repair_whose_renditions_were_erased_stops_cleanly(aws: Any, app: ModuleType) -> None:
    # Given a duplicate event repairing stable copies, held just before its server-side copy
    second = broken_stable_copies(aws, app)
    client = boto3.client("s3")
    copying = Pause(client, "CopyObject")
    run = in_thread(lambda: avatars.handle_upload(client, app.CONFIG, sequencer=SEQ[1], **second))
    copying.wait()

    # When the avatar is erased (the copy's source with it)
    erase_avatar(aws)
    copying.release()
    outcome = run.result(timeout=30)

    # Then the copy's NoSuchKey is a clean stop, not a retry, and nothing is left
    assert outcome.status == "skipped"
    assert published(aws) == []


def test_a_repair_copied_after_the_erase_listing_is_taken_back(aws: Any, app: ModuleType) -> None:
    # Given a duplicate event about to repair stable copies, held just before its copies
    second = broken_stable_copies(aws, app)
    client, eraser = boto3.client("s3"), boto3.client("s3")
    copying = Pause(client, "CopyObject")
    run = in_thread(lambda: avatars.handle_upload(client, app.CONFIG, sequencer=SEQ[1], **second))
    copying.wait()
    # and an erase that has deleted the originals and listed the assets, not yet deleted them
    deleting = Pause(eraser, "DeleteObjects", lambda params: params["Bucket"] == ASSETS)
    erasing = in_thread(lambda: erase_avatar(eraser))
    deleting.wait()

    # When the copies land in that gap (new objects the listing missed), then the erase ends
    copying.release()
    outcome = run.result(timeout=30)
    deleting.release()
    erasing.result(timeout=30)

    # Then the repair saw the original gone after its copies and took them back
    assert (outcome.status, outcome.reason) == ("skipped", "gone")
    assert published(aws) == []

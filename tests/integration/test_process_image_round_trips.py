"""The processor's S3 critical path: which requests it sends together, and how many rounds it waits.

Not timed: each request is held at a gate and released with the others the run sent alongside
it (tests/integration/s3_interleave.Rounds), so the rounds are what the code does, whatever the
machine's speed. bench/latency.py measures what they cost at 25-50 ms per request.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from types import ModuleType
from typing import Any

import boto3

from imgpipe import avatars, keys
from tests.integration.s3_interleave import Rounds
from tests.integration.test_process_image import (
    ASSETS,
    FILES,
    SEQ,
    UPLOADS,
    USER,
    app,
    aws,
    image_bytes,
    manifest,
    upload,
)

# The processor's fixtures, found by pytest under these names.
FIXTURES = (aws, app)
ORIGINAL = keys.upload_key(USER)
MANIFEST = keys.manifest_key(USER)
VERSIONS = keys.versions_prefix(USER)
STABLE = [keys.stable_key(USER, name) for name in FILES]


def rounds_of(
    cfg: avatars.Config, obj: dict[str, Any], sequencer: str
) -> tuple[avatars.Outcome, list[list[str]]]:
    client = boto3.client("s3")
    rounds = Rounds(client)
    outcome = rounds.run(lambda: avatars.handle_upload(client, cfg, sequencer=sequencer, **obj))
    return outcome, rounds.rounds


def ops(batch: list[str]) -> list[str]:
    return [request.split(" ")[0] for request in batch]


def test_first_upload_waits_for_four_rounds(aws: Any, app: ModuleType) -> None:
    obj = upload(aws, image_bytes((200, 30, 30)), "upload-1")

    outcome, rounds = rounds_of(app.CONFIG, obj, SEQ[0])

    assert outcome.status == "processed"
    version = outcome.version
    assert rounds == [
        # 1: what is there, read together
        sorted([f"GetObject {ASSETS}/{MANIFEST}", f"GetObject {UPLOADS}/{ORIGINAL}"]),
        # 2: every file avatar.json will name, written together (and the old renditions listed)
        sorted(
            [f"PutObject {ASSETS}/{keys.versioned_key(USER, version, name)}" for name in FILES]
            + [f"PutObject {ASSETS}/{key}" for key in STABLE]
            + [f"ListObjectsV2 {ASSETS}/{VERSIONS}"]
        ),
        # 3: the commit
        [f"PutObject {ASSETS}/{MANIFEST}"],
        # 4: the stable copies and the original checked together
        sorted([f"HeadObject {ASSETS}/{key}" for key in STABLE] + [f"HeadObject {UPLOADS}/{ORIGINAL}"]),
    ]


def test_reupload_waits_for_four_rounds_and_expires_old_renditions_in_the_last(
    aws: Any, app: ModuleType
) -> None:
    # Given two avatars already made, the first written long enough ago to expire
    for i, color in enumerate([(1, 2, 3), (4, 5, 6)]):
        avatars.handle_upload(aws, app.CONFIG, sequencer=SEQ[i], **upload(aws, image_bytes(color), f"up-{i}"))
    obj = upload(aws, image_bytes((7, 8, 9)), "up-2")

    outcome, rounds = rounds_of(replace(app.CONFIG, retire_after=timedelta(0)), obj, SEQ[2])

    assert outcome.status == "processed"
    assert [sorted(set(ops(batch))) for batch in rounds] == [
        ["GetObject"],
        ["ListObjectsV2", "PutObject"],
        ["PutObject"],
        ["DeleteObjects", "HeadObject"],
    ]
    assert len(rounds[1]) == 2 * len(FILES) + 1
    assert manifest(aws)["avatar"]["version"] == outcome.version


def test_rejected_upload_waits_for_four_rounds(aws: Any, app: ModuleType) -> None:
    obj = upload(aws, b"not an image at all" * 100, "upload-bad")

    outcome, rounds = rounds_of(app.CONFIG, obj, SEQ[0])

    assert (outcome.status, outcome.reason) == ("rejected", "not_an_image")
    assert rounds[1:] == [
        [f"PutObjectTagging {UPLOADS}/{ORIGINAL}"],  # tagged before it is reported
        [f"PutObject {ASSETS}/{MANIFEST}"],
        [f"HeadObject {UPLOADS}/{ORIGINAL}"],  # erased meanwhile?
    ]


def test_duplicate_waits_for_two_rounds_and_replay_for_one(aws: Any, app: ModuleType) -> None:
    obj = upload(aws, image_bytes((200, 30, 30)), "upload-1")
    avatars.handle_upload(aws, app.CONFIG, sequencer=SEQ[0], **obj)

    duplicate, duplicate_rounds = rounds_of(app.CONFIG, obj, SEQ[0])
    replay = upload(aws, image_bytes((200, 30, 30)), "upload-1")  # the same POST sent again
    replayed, replay_rounds = rounds_of(app.CONFIG, replay, SEQ[1])

    assert (duplicate.status, duplicate.reason) == ("skipped", "duplicate")
    assert [sorted(set(ops(batch))) for batch in duplicate_rounds] == [
        ["GetObject"],
        ["HeadObject"],  # the stable copies a crashed first run may have left wrong
    ]
    assert (replayed.status, replayed.reason) == ("skipped", "replayed")
    assert [sorted(set(ops(batch))) for batch in replay_rounds] == [["GetObject"]]

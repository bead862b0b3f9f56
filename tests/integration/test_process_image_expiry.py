"""Renditions of replaced avatars expire: the current and the previous version stay, older ones go."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from imgpipe import avatars, keys
from tests.integration.test_process_image import (
    ASSETS,
    FILES,
    SEQ,
    USER,
    app,
    aws,
    image_bytes,
    manifest,
    stable_matches,
    upload,
)

# The processor's fixtures, found by pytest under these names.
FIXTURES = (aws, app)
COLORS = [(200, 0, 0), (0, 200, 0), (0, 0, 200), (90, 90, 0)]


@pytest.fixture
def expire_at_once(app: Any) -> avatars.Config:
    """The processor's config with renditions old enough to expire as soon as they are written."""
    return replace(app.CONFIG, retire_after=timedelta(0))


def versions_stored(s3: Any) -> dict[str, int]:
    """Version -> how many renditions are stored under it."""
    listing = s3.list_objects_v2(Bucket=ASSETS, Prefix=keys.versions_prefix(USER)).get("Contents", [])
    found: dict[str, int] = {}
    for obj in listing:
        version = keys.version_in_key(USER, obj["Key"])
        assert version is not None, obj["Key"]
        found[version] = found.get(version, 0) + 1
    return found


def process(s3: Any, cfg: avatars.Config, i: int, data: bytes | None = None) -> avatars.Outcome:
    obj = upload(s3, data if data is not None else image_bytes(COLORS[i]), f"upload-{i}")
    return avatars.handle_upload(s3, cfg, sequencer=SEQ[i], **obj)


def test_replaced_renditions_expire_keeping_the_current_and_the_previous(
    aws: Any, expire_at_once: avatars.Config
) -> None:
    # Given three avatars in a row
    versions = [process(aws, expire_at_once, i).version for i in range(3)]

    # Then the first one's renditions are gone; the current and the one it replaced stay whole
    assert versions_stored(aws) == {versions[1]: len(FILES), versions[2]: len(FILES)}
    doc = manifest(aws)
    assert doc["avatar"]["version"] == versions[2]
    for rendition in doc["avatar"]["renditions"]:
        aws.head_object(Bucket=ASSETS, Key=rendition["url"])
    assert stable_matches(aws, versions[2])


def test_young_renditions_are_kept(aws: Any, app: ModuleType) -> None:
    # A concurrent upload writes its renditions before committing: a version written minutes
    # ago may be about to become current, so the default grace keeps it.
    assert app.CONFIG.retire_after == avatars.RETIRE_AFTER >= timedelta(minutes=1)
    versions = [process(aws, app.CONFIG, i).version for i in range(3)]

    assert set(versions_stored(aws)) == set(versions)


def test_the_avatar_a_rejection_kept_showing_counts_as_the_previous(
    aws: Any, expire_at_once: avatars.Config
) -> None:
    # Given avatar A, then a rejected upload (avatar.json still shows A)
    a = process(aws, expire_at_once, 0).version
    assert process(aws, expire_at_once, 1, b"not an image" * 40).status == "rejected"

    # When B replaces it
    b = process(aws, expire_at_once, 2).version

    # Then A (what the replaced avatar.json showed) is kept beside B
    assert versions_stored(aws) == {a: len(FILES), b: len(FILES)}


def test_renditions_no_avatar_ever_named_expire_too(aws: Any, expire_at_once: avatars.Config) -> None:
    # Given renditions of an upload that lost a race or crashed before its commit
    orphan = keys.versioned_key(USER, "0123456789abcdef", "128x128.jpg")
    aws.put_object(Bucket=ASSETS, Key=orphan, Body=b"x")
    unrelated = keys.stable_key(USER, "notes.txt")
    aws.put_object(Bucket=ASSETS, Key=unrelated, Body=b"x")

    current = process(aws, expire_at_once, 0).version

    assert versions_stored(aws) == {current: len(FILES)}
    aws.head_object(Bucket=ASSETS, Key=unrelated)  # only versioned renditions are ever expired


def test_an_expiry_s3_refuses_does_not_fail_the_upload(aws: Any, expire_at_once: avatars.Config) -> None:
    versions = [process(aws, expire_at_once, i).version for i in range(2)]
    client = boto3.client("s3")

    def refuse(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "DeleteObjects")

    client.meta.events.register("before-call.s3.DeleteObjects", refuse)
    obj = upload(aws, image_bytes(COLORS[2]), "upload-2")

    outcome = avatars.handle_upload(client, expire_at_once, sequencer=SEQ[2], **obj)

    # Housekeeping failed (and is logged); the upload did not, and the next one will try again
    assert outcome.status == "processed"
    assert set(versions_stored(aws)) == {*versions, outcome.version}
    nxt = process(aws, expire_at_once, 3).version
    assert set(versions_stored(aws)) == {outcome.version, nxt}

"""imgpipe.erase against moto's in-process S3: exactly one user's objects, every version."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from imgpipe import erase, keys
from tests.aws_support import create_avatar_buckets, use_test_aws

UPLOADS = "erase-uploads"
ASSETS = "erase-assets"
LOCKED = "erase-locked"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    use_test_aws(monkeypatch)
    with mock_aws():
        s3 = boto3.client("s3")
        create_avatar_buckets(s3, UPLOADS, ASSETS)
        yield s3


def seed_user(s3: Any, user: str, uploads: int = 3) -> None:
    """A user with several originals, a delete marker among them, and a full set of assets."""
    key = f"avatars/{user}/original"
    for n in range(uploads):
        s3.put_object(Bucket=UPLOADS, Key=key, Body=f"original {n} of {user}".encode())
        if n == 0:
            s3.delete_object(Bucket=UPLOADS, Key=key)
    for name in ("avatar.json", "512x512.jpg", "512x512.webp", "v/0123456789abcdef/512x512.jpg"):
        s3.put_object(Bucket=ASSETS, Key=f"avatars/{user}/{name}", Body=b"asset")


def uploads_entries(s3: Any, prefix: str) -> list[tuple[str, str]]:
    page = s3.list_object_versions(Bucket=UPLOADS, Prefix=prefix)
    return [(e["Key"], e["VersionId"]) for e in (*page.get("Versions", ()), *page.get("DeleteMarkers", ()))]


def asset_keys(s3: Any, prefix: str) -> list[str]:
    return [e["Key"] for e in s3.list_objects_v2(Bucket=ASSETS, Prefix=prefix).get("Contents", ())]


def run(s3: Any, user: str = "ab") -> erase.EraseResult:
    return erase.erase_avatar(s3, user=user, uploads_bucket=UPLOADS, assets_bucket=ASSETS)


def test_erases_every_version_and_marker_and_only_that_users(aws: Any):
    s3 = aws
    # Given "ab" and users whose names start with "ab" or sit beside it
    for user in ("ab", "abc", "ab-c", "ab.c", "a", "b"):
        seed_user(s3, user)
    others_before = {
        u: (uploads_entries(s3, f"avatars/{u}/"), asset_keys(s3, f"avatars/{u}/"))
        for u in ("abc", "ab-c", "ab.c", "a", "b")
    }
    assert len(uploads_entries(s3, "avatars/ab/")) == 4  # 3 versions + 1 delete marker

    # When "ab" is erased
    result = run(s3)

    # Then all of ab's versions, markers and assets are gone, and nobody else lost anything
    assert result == erase.EraseResult(uploads_deleted=4, assets_deleted=4)
    assert uploads_entries(s3, "avatars/ab/") == []
    assert asset_keys(s3, "avatars/ab/") == []
    for user, before in others_before.items():
        assert (uploads_entries(s3, f"avatars/{user}/"), asset_keys(s3, f"avatars/{user}/")) == before


def test_second_erase_succeeds_and_deletes_nothing(aws: Any):
    s3 = aws
    seed_user(s3, "ab")
    seed_user(s3, "abc")

    run(s3)
    again = run(s3)

    assert again == erase.EraseResult(uploads_deleted=0, assets_deleted=0)
    assert len(uploads_entries(s3, "avatars/abc/")) == 4


def test_nothing_stored_is_not_an_error(aws: Any):
    s3 = aws
    assert run(s3, user="never-uploaded") == erase.EraseResult(0, 0)


def test_deletes_in_batches_s3_accepts(aws: Any):
    s3 = aws
    # Given more assets than one DeleteObjects call may carry (moto does not enforce the 1000 cap)
    for n in range(1001):
        s3.put_object(Bucket=ASSETS, Key=f"avatars/ab/v/{n:04x}/128x128.jpg", Body=b"")
    batches: list[int] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        batches.append(len(params["Delete"]["Objects"]))

    s3.meta.events.register("provide-client-params.s3.DeleteObjects", record)

    # When erasing
    result = run(s3)

    # Then every object went, in calls of at most 1000 keys
    assert result.assets_deleted == 1001
    assert batches == [1000, 1]
    assert asset_keys(s3, "avatars/ab/") == []


def test_batches_follow_the_batch_size_across_versions(aws: Any, monkeypatch: pytest.MonkeyPatch):
    s3 = aws
    seed_user(s3, "ab", uploads=6)  # 6 versions + 1 delete marker
    monkeypatch.setattr(erase, "DELETE_BATCH", 3)
    batches: list[int] = []
    s3.meta.events.register(
        "provide-client-params.s3.DeleteObjects",
        lambda params, **_: batches.append(len(params["Delete"]["Objects"])),
    )

    result = run(s3)

    assert result.uploads_deleted == 7
    assert batches[:3] == [3, 3, 1]  # uploads bucket; the assets bucket follows
    assert uploads_entries(s3, "avatars/ab/") == []


def test_refused_deletes_raise_with_the_keys(aws: Any):
    s3 = aws
    # Given an original that S3 refuses to delete (object lock in compliance mode)
    s3.create_bucket(Bucket=LOCKED, ObjectLockEnabledForBucket=True)
    s3.put_object(
        Bucket=LOCKED,
        Key="avatars/ab/original",
        Body=b"kept",
        ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=datetime.datetime(2099, 1, 1, tzinfo=datetime.UTC),
    )

    # When erasing, the per-key error is not swallowed
    with pytest.raises(
        erase.EraseError,
        match=r"1 of 1 objects in erase-locked not deleted \(avatars/ab/original: AccessDenied\)",
    ):
        erase.erase_avatar(s3, user="ab", uploads_bucket=LOCKED, assets_bucket=ASSETS)


def test_erases_a_user_whose_folder_is_a_digest(aws: Any) -> None:
    # Subjects that are not key-safe (and those shaped like a digest) live under their digest.
    s3 = aws
    user = keys.user_key("auth0|1")
    seed_user(s3, user)

    assert run(s3, user=user).uploads_deleted == 4
    assert uploads_entries(s3, "avatars/") == []


@pytest.mark.parametrize("user", ["", "a/b", "..", "ab/", "avatars/ab", "auth0|1"])
def test_refuses_anything_but_a_user_key(aws: Any, user: str):
    s3 = aws
    seed_user(s3, "ab")

    with pytest.raises(ValueError, match=r"subject must not be empty|not a user key"):
        run(s3, user=user)

    assert len(uploads_entries(s3, "avatars/")) == 4


def test_originals_are_gone_before_the_assets_are_listed(aws: Any) -> None:
    # The processor relies on this order: an upload being processed checks that its original
    # still exists after its last write; if it does, this listing has not happened yet and will
    # see everything the processor wrote (imgpipe.avatars).
    s3 = aws
    seed_user(s3, "ab")
    calls: list[tuple[str, str]] = []
    s3.meta.events.register(
        "provide-client-params.s3", lambda params, model, **_: calls.append((model.name, params["Bucket"]))
    )

    run(s3)

    first_assets_listing = calls.index(("ListObjectsV2", ASSETS))
    assert ("DeleteObjects", UPLOADS) in calls[:first_assets_listing]
    assert all(bucket == ASSETS for _, bucket in calls[first_assets_listing:])

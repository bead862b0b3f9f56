"""imgpipe.keys: a verified subject names exactly one folder, and no subject can name another's."""

from __future__ import annotations

import hashlib

import pytest

from imgpipe import keys

UUID_SUB = "3f1c2a9e-0000-4000-8000-000000000001"


def digest_of(sub: str) -> str:
    return "u-" + hashlib.sha256(sub.encode()).hexdigest()[:40]


def test_caller_user_comes_from_the_authorizer_context_only() -> None:
    assert keys.caller_user({"sub": UUID_SUB}) == UUID_SUB
    assert keys.caller_user({"sub": "auth0|123"}) == digest_of("auth0|123")
    assert keys.caller_user({}) is None
    assert keys.caller_user(None) is None
    assert keys.caller_user({"sub": ""}) is None
    assert keys.caller_user({"sub": 42}) is None


@pytest.mark.parametrize("sub", [UUID_SUB, "jane@example.com", "user_1.a-b", "x" * 128])
def test_safe_subjects_are_their_own_folder(sub: str) -> None:
    assert keys.user_key(sub) == sub
    assert keys.is_user_key(sub)


@pytest.mark.parametrize(
    "sub",
    [
        "../x",
        "a/b",
        "auth0|123",
        "x" * 129,
        "é",
        ".hidden",
        "a..b",
        # "$" would match before a final newline: the whole string must be safe.
        "a\n",
        UUID_SUB + "\n",
        "a\r",
        "a\x00",
        "\ud800",  # a lone surrogate, which JSON allows and UTF-8 cannot encode strictly
    ],
)
def test_unsafe_subjects_map_to_a_digest_that_cannot_leave_the_prefix(sub: str) -> None:
    user = keys.user_key(sub)

    assert user.startswith("u-")
    assert len(user) == 42
    assert keys.is_user_key(user)
    assert keys.user_from_upload_key(keys.upload_key(user)) == user


def test_a_subject_shaped_like_a_digest_is_hashed_too() -> None:
    # Given the folder an Auth0 user's digest names
    victim = keys.user_key("auth0|123")

    # When another issuer's subject is that very string, or anything in the digest namespace
    for sub in (victim, "u-", "u-1", "u-" + "0" * 40):
        user = keys.user_key(sub)

        # Then it gets a folder of its own
        assert user != victim
        assert user == digest_of(sub)
    assert keys.user_key(victim) != victim
    # S3 keys are case-sensitive: "U-…" is another folder, and a safe subject.
    assert keys.user_key(victim.upper()) == victim.upper()


def test_distinct_subjects_get_distinct_folders() -> None:
    subs = ["a", "a\n", "auth0|1", "auth0|2", keys.user_key("auth0|1"), "u-a", "U-a"]

    assert len({keys.user_key(sub) for sub in subs}) == len(subs)


@pytest.mark.parametrize("segment", ["", "a/b", "..", "a\n", "u-abc", "u-" + "A" * 40, "auth0|1", "ab/"])
def test_only_what_user_key_returns_is_a_user_key(segment: str) -> None:
    assert not keys.is_user_key(segment)


def test_upload_keys_round_trip_and_other_keys_are_not_uploads() -> None:
    assert keys.user_from_upload_key("avatars/abc/original") == "abc"
    assert keys.user_from_upload_key("avatars/abc/other") is None
    assert keys.user_from_upload_key("avatars/a/b/original") is None
    assert keys.user_from_upload_key("avatars/abc/original\n") is None
    assert keys.user_from_upload_key("avatars/a\n/original") is None
    assert keys.user_from_upload_key("avatars/../original") is None


def test_versioned_keys_name_their_version_and_nothing_else_does():
    key = keys.versioned_key("u1", "0123456789abcdef", "512x512.jpg")
    assert key == "avatars/u1/v/0123456789abcdef/512x512.jpg"
    assert key.startswith(keys.versions_prefix("u1"))
    assert keys.version_in_key("u1", key) == "0123456789abcdef"
    for other in (
        keys.stable_key("u1", "512x512.jpg"),
        keys.manifest_key("u1"),
        keys.versioned_key("u2", "0123456789abcdef", "512x512.jpg"),  # another user's
        "avatars/u1/v/0123456789abcdef/",
        "avatars/u1/v/0123456789abcdef/deeper/512x512.jpg",
        "avatars/u1/v//512x512.jpg",
    ):
        assert keys.version_in_key("u1", other) is None, other

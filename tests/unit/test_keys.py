import pytest

from imgpipe import keys


def test_caller_user_comes_from_the_authorizer_context_only():
    assert (
        keys.caller_user({"sub": "3f1c2a9e-0000-4000-8000-000000000001"})
        == "3f1c2a9e-0000-4000-8000-000000000001"
    )
    assert keys.caller_user({"sub": "auth0|123"}).startswith("u-")
    assert keys.caller_user({}) is None
    assert keys.caller_user(None) is None
    assert keys.caller_user({"sub": ""}) is None
    assert keys.caller_user({"sub": 42}) is None


@pytest.mark.parametrize("sub", ["../x", "a/b", "auth0|123", "x" * 200, "é", ".hidden", "a..b"])
def test_unsafe_subjects_map_to_a_digest_that_cannot_leave_the_prefix(sub):
    user = keys.user_key(sub)
    assert user.startswith("u-")
    assert keys.user_from_upload_key(keys.upload_key(user)) == user


def test_upload_keys_round_trip_and_other_keys_are_not_uploads():
    assert keys.user_from_upload_key("avatars/abc/original") == "abc"
    assert keys.user_from_upload_key("avatars/abc/other") is None
    assert keys.user_from_upload_key("avatars/a/b/original") is None


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

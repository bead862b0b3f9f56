"""Where things live: the one place that maps a user to object keys and URLs.

Uploads bucket (versioned, so every original is kept):
    avatars/<user>/original                         one key per user; S3's sequencer orders its events
Assets bucket (read only by CloudFront):
    avatars/<user>/avatar.json                      manifest + status of the latest upload, short cache
    avatars/<user>/<rendition>.<ext>                current avatar at a stable URL, short cache
    avatars/<user>/v/<version>/<rendition>.<ext>    immutable copy, cached for a year
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

PREFIX = "avatars/"
ORIGINAL_NAME = "original"
MANIFEST_NAME = "avatar.json"
VERSIONS_NAME = "v"

# Cognito subs are UUIDs; other issuers may use anything (Auth0's "auth0|123"), and
# a key must never be steerable by a claim, so unsafe subjects map to a digest. The digest
# form has a namespace of its own ("u-"): every subject starting with it is hashed too, so
# no subject can name the folder another subject's digest owns.
_SAFE_SUBJECT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}")
_DIGEST_PREFIX = "u-"
_DIGEST = re.compile(r"u-[0-9a-f]{40}")
_UPLOAD_KEY = re.compile(r"avatars/([^/]+)/original")


def _is_safe_subject(sub: str) -> bool:
    # fullmatch, not match with "$": "$" also matches before a final newline ("a\n").
    return _SAFE_SUBJECT.fullmatch(sub) is not None and ".." not in sub and not sub.startswith(_DIGEST_PREFIX)


def user_key(sub: str) -> str:
    """The path segment for a verified subject: the sub itself when key-safe, else a digest."""
    if not sub:
        raise ValueError("subject must not be empty")
    if _is_safe_subject(sub):
        return sub
    return _DIGEST_PREFIX + hashlib.sha256(sub.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def is_user_key(segment: str) -> bool:
    """Whether `segment` is something `user_key` returns (a safe subject or a digest)."""
    return _is_safe_subject(segment) or _DIGEST.fullmatch(segment) is not None


def caller_user(authorizer_context: Mapping[str, Any] | None) -> str | None:
    """The user key of an API caller, from the context our authorizer passed (None if absent).

    The authorizer verified the JWT; integrations never decode the token again.
    """
    sub = (authorizer_context or {}).get("sub")
    return user_key(sub) if isinstance(sub, str) and sub else None


def upload_key(user: str) -> str:
    return f"{PREFIX}{user}/{ORIGINAL_NAME}"


def user_from_upload_key(key: str) -> str | None:
    """The user an uploads-bucket key belongs to, or None if the key is not an upload key."""
    match = _UPLOAD_KEY.fullmatch(key)
    return match.group(1) if match and is_user_key(match.group(1)) else None


def user_prefix(user: str) -> str:
    return f"{PREFIX}{user}/"


def manifest_key(user: str) -> str:
    return f"{PREFIX}{user}/{MANIFEST_NAME}"


def stable_key(user: str, filename: str) -> str:
    return f"{PREFIX}{user}/{filename}"


def versions_prefix(user: str) -> str:
    """Where every versioned rendition of `user` lives (one folder per version below it)."""
    return f"{PREFIX}{user}/{VERSIONS_NAME}/"


def versioned_key(user: str, version: str, filename: str) -> str:
    return f"{versions_prefix(user)}{version}/{filename}"


def version_in_key(user: str, key: str) -> str | None:
    """The version a versioned rendition's key names, or None for any other key."""
    prefix = versions_prefix(user)
    version, slash, filename = key.removeprefix(prefix).partition("/")
    if not key.startswith(prefix) or not slash or not version or not filename or "/" in filename:
        return None
    return version


def public_url(base_url: str, key: str) -> str:
    return f"{base_url.rstrip('/')}/{key}"

"""CloudFront invalidation of erased avatars, queued so that an erasure never waits on CloudFront.

CloudFront keeps at most 15 wildcard paths in progress per distribution and refuses more with
TooManyInvalidationsInProgress; an invalidation takes minutes. DELETE /avatars therefore only
queues the erased user (`queue`, after the objects are gone), and the queue's consumer turns each
batch of users into one invalidation (`invalidate_batch`). While CloudFront is busy the whole
batch is handed back, and the queue offers it again after its visibility timeout.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from imgpipe import keys

# Wildcard paths CloudFront keeps in progress per distribution: a batch of this many users fits
# when nothing else is in flight (the template's BatchSize is this number).
MAX_WILDCARD_PATHS = 15
BUSY = "TooManyInvalidationsInProgress"


class CdnBusy(RuntimeError):
    """CloudFront has too many invalidations in progress; retry once some have completed."""


@dataclass(frozen=True)
class BatchOutcome:
    invalidation_id: str | None = None
    users: tuple[str, ...] = ()
    # Message ids to offer again later (CloudFront busy) and ids that can never succeed, with why.
    retry: tuple[str, ...] = ()
    rejected: dict[str, str] = field(default_factory=dict)

    @property
    def failed(self) -> list[str]:
        """What the event source mapping must not delete (ReportBatchItemFailures)."""
        return [*self.retry, *self.rejected]


def message_body(user: str) -> str:
    return json.dumps({"user": _checked(user)})


def user_from_message(body: str) -> str:
    try:
        data: Any = json.loads(body)
    except ValueError:
        raise ValueError("not JSON") from None
    user = data.get("user") if isinstance(data, dict) else None
    if isinstance(user, str):
        return _checked(user)
    raise ValueError('no "user" string')


def paths(users: Iterable[str]) -> list[str]:
    """One wildcard path per user: every rendition, version and manifest they ever had."""
    return sorted({f"/{keys.user_prefix(_checked(user))}*" for user in users})


def caller_reference(message_ids: Iterable[str]) -> str:
    """The same batch gets the same reference, so CloudFront answers a retried call with the
    invalidation it already created instead of creating another."""
    digest = hashlib.sha256("\n".join(sorted(message_ids)).encode()).hexdigest()
    return f"imgpipe-erase-{digest[:40]}"


def queue(sqs: Any, queue_url: str, user: str) -> str:
    """Ask for `user`'s CDN copies to be invalidated; the message id."""
    return str(sqs.send_message(QueueUrl=queue_url, MessageBody=message_body(user))["MessageId"])


def invalidate(cloudfront: Any, distribution_id: str, users: Iterable[str], reference: str) -> str:
    """One invalidation of every path of `users`; its id. CdnBusy while CloudFront is at its limit."""
    items = paths(users)
    if not 0 < len(items) <= MAX_WILDCARD_PATHS:
        raise ValueError(
            f"{len(items)} paths: an invalidation takes 1 to {MAX_WILDCARD_PATHS} wildcard paths"
        )
    try:
        response = cloudfront.create_invalidation(
            DistributionId=distribution_id,
            InvalidationBatch={
                "Paths": {"Quantity": len(items), "Items": items},
                "CallerReference": reference,
            },
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == BUSY:
            raise CdnBusy(str(error)) from error
        raise
    return str(response["Invalidation"]["Id"])


def invalidate_batch(cloudfront: Any, distribution_id: str, messages: Mapping[str, str]) -> BatchOutcome:
    """Invalidate the users named in `messages` (message id -> body) in one request.

    A malformed message is rejected on its own (it can only succeed never, so it ends in the
    dead-letter queue); the rest go together or, while CloudFront is busy, are all retried.
    Any other CloudFront error propagates: the whole batch is retried and the error shows.
    """
    users: dict[str, str] = {}
    rejected: dict[str, str] = {}
    for message_id, body in messages.items():
        try:
            users[message_id] = user_from_message(body)
        except ValueError as error:
            rejected[message_id] = str(error)
    if not users:
        return BatchOutcome(rejected=rejected)
    distinct = tuple(sorted(set(users.values())))
    try:
        invalidation_id = invalidate(cloudfront, distribution_id, distinct, caller_reference(users))
    except CdnBusy:
        return BatchOutcome(users=distinct, retry=tuple(users), rejected=rejected)
    return BatchOutcome(invalidation_id=invalidation_id, users=distinct, rejected=rejected)


def _checked(user: str) -> str:
    # Anything but a user key ("", "a/b", "*") could widen the path.
    if not keys.is_user_key(user):
        raise ValueError(f"{user!r} is not a user key")
    return user

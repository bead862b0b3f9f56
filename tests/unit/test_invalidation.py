"""imgpipe.invalidation: queue an erased user, invalidate a batch of them, back off while CloudFront is busy.

CloudFront is moto's, with CloudFront's limit of 15 wildcard paths in progress enforced on top
(tests.aws_support.CloudFrontInvalidationLimit); SQS is moto's.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from imgpipe import invalidation, keys
from tests.aws_support import CloudFrontInvalidationLimit, create_distribution, use_test_aws

DIGEST_USER = keys.user_key("auth0|1234")
USERS = [f"user-{n:02d}" for n in range(40)]


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    use_test_aws(monkeypatch)
    with mock_aws():
        cloudfront = boto3.client("cloudfront")
        yield {
            "cloudfront": cloudfront,
            "sqs": boto3.client("sqs"),
            "distribution_id": create_distribution(cloudfront, "assets"),
            "limit": CloudFrontInvalidationLimit(cloudfront),
        }


def bodies(*users: str) -> dict[str, str]:
    return {f"m-{n}": invalidation.message_body(user) for n, user in enumerate(users)}


def invalidated_paths(aws: dict[str, Any], invalidation_id: str) -> list[str]:
    got = aws["cloudfront"].get_invalidation(DistributionId=aws["distribution_id"], Id=invalidation_id)
    return list(got["Invalidation"]["InvalidationBatch"]["Paths"]["Items"])


# ---------------------------------------------------------------- messages and paths


@pytest.mark.parametrize("user", ["3f1c2a9e-8b7d-4e6f-9a01-23456789abcd", DIGEST_USER, "ab"])
def test_a_queued_user_reads_back_as_that_user(user: str) -> None:
    assert invalidation.user_from_message(invalidation.message_body(user)) == user


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", 'no "user" string'),
        ('{"user": 7}', 'no "user" string'),
        ('{"sub": "ab"}', 'no "user" string'),
        ('{"user": ""}', "not a user key"),
        ('{"user": "a/b"}', "not a user key"),
        ('{"user": "*"}', "not a user key"),
        ('{"user": ".."}', "not a user key"),
    ],
)
def test_a_message_that_names_no_user_key_is_refused(body: str, reason: str) -> None:
    # A user key maps to itself; anything else could widen the invalidated path.
    with pytest.raises(ValueError, match=reason):
        invalidation.user_from_message(body)


def test_paths_are_one_wildcard_per_distinct_user_under_their_prefix() -> None:
    assert invalidation.paths(["ab", "abc", "ab"]) == ["/avatars/ab/*", "/avatars/abc/*"]
    assert invalidation.paths([DIGEST_USER]) == [f"/{keys.user_prefix(DIGEST_USER)}*"]
    with pytest.raises(ValueError, match="not a user key"):
        invalidation.paths(["a/b"])


def test_caller_reference_names_the_batch_not_its_order() -> None:
    one = invalidation.caller_reference(["m-1", "m-2"])
    assert one == invalidation.caller_reference(["m-2", "m-1"])
    assert one != invalidation.caller_reference(["m-1", "m-3"])
    assert len(one) <= 128  # CloudFront's CallerReference limit


def test_queue_sends_the_user_to_the_queue(aws: dict[str, Any]) -> None:
    sqs = aws["sqs"]
    url = sqs.create_queue(QueueName="invalidations")["QueueUrl"]

    message_id = invalidation.queue(sqs, url, DIGEST_USER)

    [message] = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert message["MessageId"] == message_id
    assert invalidation.user_from_message(message["Body"]) == DIGEST_USER
    with pytest.raises(ValueError, match="not a user key"):
        invalidation.queue(sqs, url, "../other")


# ---------------------------------------------------------------- CloudFront


def test_invalidate_creates_one_invalidation_for_every_users_path(aws: dict[str, Any]) -> None:
    invalidation_id = invalidation.invalidate(
        aws["cloudfront"], aws["distribution_id"], ["ab", "cd"], "ref-1"
    )

    assert invalidated_paths(aws, invalidation_id) == ["/avatars/ab/*", "/avatars/cd/*"]


def test_invalidate_says_busy_when_cloudfront_has_too_many_in_progress(aws: dict[str, Any]) -> None:
    cloudfront, distribution = aws["cloudfront"], aws["distribution_id"]
    invalidation.invalidate(cloudfront, distribution, USERS[:15], "ref-1")

    with pytest.raises(invalidation.CdnBusy, match="TooManyInvalidationsInProgress"):
        invalidation.invalidate(cloudfront, distribution, USERS[15:16], "ref-2")

    aws["limit"].complete_all()
    assert invalidation.invalidate(cloudfront, distribution, USERS[15:16], "ref-2")


def test_other_cloudfront_errors_propagate(aws: dict[str, Any]) -> None:
    with pytest.raises(ClientError) as raised:
        invalidation.invalidate(aws["cloudfront"], "ENOSUCHDISTRIBUTION", ["ab"], "ref-1")

    assert not isinstance(raised.value, invalidation.CdnBusy)
    assert raised.value.response["Error"]["Code"] == "NoSuchDistribution"


@pytest.mark.parametrize("count", [0, 16])
def test_invalidate_refuses_more_wildcards_than_cloudfront_ever_takes(
    aws: dict[str, Any], count: int
) -> None:
    with pytest.raises(ValueError, match="1 to 15 wildcard paths"):
        invalidation.invalidate(aws["cloudfront"], aws["distribution_id"], USERS[:count], "ref-1")


# ---------------------------------------------------------------- a batch from the queue


def test_a_batch_becomes_one_invalidation_with_each_user_once(aws: dict[str, Any]) -> None:
    messages = bodies("ab", "cd", "ab")

    outcome = invalidation.invalidate_batch(aws["cloudfront"], aws["distribution_id"], messages)

    assert outcome.invalidation_id
    assert outcome.users == ("ab", "cd")
    assert outcome.failed == []
    assert invalidated_paths(aws, outcome.invalidation_id) == ["/avatars/ab/*", "/avatars/cd/*"]
    assert aws["limit"].created == [["/avatars/ab/*", "/avatars/cd/*"]]


def test_a_busy_cloudfront_hands_the_whole_batch_back(aws: dict[str, Any]) -> None:
    aws["limit"].in_progress = 15  # another burst is still being invalidated
    messages = bodies("ab", "cd")

    outcome = invalidation.invalidate_batch(aws["cloudfront"], aws["distribution_id"], messages)

    assert outcome.invalidation_id is None
    assert sorted(outcome.retry) == sorted(messages) == sorted(outcome.failed)
    assert outcome.rejected == {}


def test_a_malformed_message_fails_alone_and_the_rest_are_invalidated(aws: dict[str, Any]) -> None:
    messages = {**bodies("ab"), "bad-1": json.dumps({"user": "a/b"}), "bad-2": "{"}

    outcome = invalidation.invalidate_batch(aws["cloudfront"], aws["distribution_id"], messages)

    assert outcome.invalidation_id
    assert invalidated_paths(aws, outcome.invalidation_id) == ["/avatars/ab/*"]
    assert sorted(outcome.failed) == ["bad-1", "bad-2"]
    assert outcome.rejected == {"bad-1": "'a/b' is not a user key", "bad-2": "not JSON"}


def test_a_batch_of_malformed_messages_calls_cloudfront_not_at_all(aws: dict[str, Any]) -> None:
    outcome = invalidation.invalidate_batch(aws["cloudfront"], aws["distribution_id"], {"bad": "{}"})

    assert outcome.failed == ["bad"]
    assert aws["limit"].created == []


def test_a_retried_batch_keeps_its_caller_reference(aws: dict[str, Any]) -> None:
    # Lambda may run a batch again after a timeout that followed a created invalidation; the same
    # reference lets CloudFront recognise the request instead of invalidating twice.
    references: list[str] = []
    aws["cloudfront"].meta.events.register(
        "provide-client-params.cloudfront.CreateInvalidation",
        lambda params, **_: references.append(params["InvalidationBatch"]["CallerReference"]),
    )
    messages = bodies("ab", "cd")

    invalidation.invalidate_batch(aws["cloudfront"], aws["distribution_id"], messages)
    aws["limit"].complete_all()
    invalidation.invalidate_batch(aws["cloudfront"], aws["distribution_id"], dict(reversed(messages.items())))

    assert references[0] == references[1]
    assert hashlib.sha256(b"m-0\nm-1").hexdigest()[:40] in references[0]

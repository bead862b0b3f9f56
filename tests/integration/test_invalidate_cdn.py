"""A burst of erasures: every DELETE /avatars succeeds, and every erased user's CDN copies are
invalidated once CloudFront has room, never more than its 15 wildcard paths in progress.

The real delete and invalidate_cdn handlers, moto's S3, SQS and CloudFront, CloudFront's
in-progress limit enforced on top (tests.aws_support), and Lambda's SQS event source mapping
played by `Poller`: batches of up to 15, reported failures left for the visibility timeout.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from imgpipe import invalidation
from imgpipe_local.handlers import Handler, load_handler, load_module
from tests.aws_support import (
    CloudFrontInvalidationLimit,
    create_avatar_buckets,
    create_distribution,
    use_test_aws,
)
from tests.conftest import FUNCTIONS, load_event

UPLOADS = "imgpipe-uploads-test"
ASSETS = "imgpipe-assets-test"
BATCH_SIZE = 15  # the template's InvalidateCdnEventSource BatchSize
USERS = [f"0a1b2c3d-0000-4000-8000-{n:012d}" for n in range(40)]

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    use_test_aws(
        monkeypatch,
        UPLOADS_BUCKET=UPLOADS,
        ASSETS_BUCKET=ASSETS,
        POWERTOOLS_SERVICE_NAME="imgpipe",
        POWERTOOLS_METRICS_NAMESPACE="imgpipe",
        POWERTOOLS_TRACE_DISABLED="true",
    )
    with mock_aws():
        s3 = boto3.client("s3")
        create_avatar_buckets(s3, UPLOADS, ASSETS)
        sqs = boto3.client("sqs")
        queue_url = sqs.create_queue(QueueName="imgpipe-invalidations")["QueueUrl"]
        cloudfront = boto3.client("cloudfront")
        distribution_id = create_distribution(cloudfront, ASSETS)
        monkeypatch.setenv("DISTRIBUTION_ID", distribution_id)
        monkeypatch.setenv("INVALIDATION_QUEUE_URL", queue_url)
        invalidator = load_module(FUNCTIONS / "invalidate_cdn")
        # CloudFront's limit, on the client the invalidator really calls.
        limit = CloudFrontInvalidationLimit(invalidator.cloudfront)
        yield {
            "s3": s3,
            "sqs": sqs,
            "queue_url": queue_url,
            "cloudfront": cloudfront,
            "distribution_id": distribution_id,
            "delete": load_handler(FUNCTIONS / "delete_avatar"),
            "invalidator": invalidator.lambda_handler,
            "limit": limit,
        }


def delete_event(sub: str) -> dict[str, Any]:
    event = copy.deepcopy(load_event("delete_avatar"))
    event["requestContext"]["authorizer"]["lambda"]["sub"] = sub
    return event


class Poller:
    """Lambda's SQS event source mapping as far as this test needs it: a batch of up to
    BATCH_SIZE visible messages per invocation, the successes deleted, the reported failures
    left in flight until `visibility_timeout_passes()`."""

    def __init__(self, sqs: Any, queue_url: str, handler: Handler, context: Any) -> None:
        self.sqs, self.queue_url, self.handler, self.context = sqs, queue_url, handler, context
        self.in_flight: list[str] = []
        self.invocations = 0

    def poll(self) -> bool:
        """One invocation; False when no message is visible."""
        messages: list[dict[str, Any]] = []
        while len(messages) < BATCH_SIZE:
            got = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=min(10, BATCH_SIZE - len(messages))
            ).get("Messages", [])
            if not got:
                break
            messages += got
        if not messages:
            return False
        event = {"Records": [sqs_record(m) for m in messages]}
        result = self.handler(event, self.context)
        self.invocations += 1
        failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
        for message in messages:
            if message["MessageId"] in failed:
                self.in_flight.append(message["ReceiptHandle"])
            else:
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return True

    def visibility_timeout_passes(self) -> None:
        for receipt in self.in_flight:
            self.sqs.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=receipt, VisibilityTimeout=0
            )
        self.in_flight = []


def sqs_record(message: dict[str, Any]) -> dict[str, Any]:
    """The record Lambda's event source mapping hands the function (events/invalidate_cdn.json)."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": {},
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:imgpipe-invalidations",
        "awsRegion": "us-east-1",
    }


def invalidated_users(aws: dict[str, Any]) -> list[str]:
    paths = [path for created in aws["limit"].created for path in created]
    return sorted(path.split("/")[2] for path in paths)


def test_a_burst_of_erasures_all_succeed_and_every_cdn_copy_is_invalidated_within_the_limit(
    aws: dict[str, Any], lambda_context: Any
) -> None:
    # Given 40 users with avatars (more than CloudFront takes wildcard invalidations at once)
    for user in USERS:
        aws["s3"].put_object(Bucket=UPLOADS, Key=f"avatars/{user}/original", Body=b"original")
        aws["s3"].put_object(Bucket=ASSETS, Key=f"avatars/{user}/512x512.jpg", Body=b"rendition")

    # When they all erase their avatars at once
    answers = [aws["delete"](delete_event(user), lambda_context) for user in USERS]

    # Then every erasure succeeded for its user, and their objects are gone
    assert [a["statusCode"] for a in answers] == [200] * len(USERS)
    assert aws["s3"].list_objects_v2(Bucket=ASSETS).get("KeyCount") == 0

    # And while the queue drains, CloudFront is asked for what it can take, refuses the rest,
    # and each refused batch is invalidated once earlier invalidations complete
    poller = Poller(aws["sqs"], aws["queue_url"], aws["invalidator"], lambda_context)
    rounds = 0
    while True:
        while poller.poll():
            pass
        if not poller.in_flight:
            break
        rounds += 1
        assert rounds <= len(USERS), "the queue never drained"
        aws["limit"].complete_all()  # minutes pass: CloudFront completes what is in progress
        poller.visibility_timeout_passes()

    assert invalidated_users(aws) == sorted(USERS)  # each user exactly once
    assert aws["limit"].refused > 0, "the burst never reached CloudFront's limit"
    assert aws["limit"].most_in_progress <= 15
    assert rounds == math.ceil(len(USERS) / BATCH_SIZE) - 1


def test_the_sample_event_becomes_one_invalidation_of_both_users(
    aws: dict[str, Any], lambda_context: Any
) -> None:
    event = load_event("invalidate_cdn")

    result = aws["invalidator"](event, lambda_context)

    assert result == {"batchItemFailures": []}
    users = [invalidation.user_from_message(r["body"]) for r in event["Records"]]
    assert aws["limit"].created == [invalidation.paths(users)]


def test_a_malformed_request_is_reported_failed_and_the_batch_still_invalidated(
    aws: dict[str, Any], lambda_context: Any
) -> None:
    event = load_event("invalidate_cdn")
    event["Records"][1]["body"] = '{"user": "../../etc"}'

    result = aws["invalidator"](event, lambda_context)

    assert result == {"batchItemFailures": [{"itemIdentifier": event["Records"][1]["messageId"]}]}
    assert aws["limit"].created == [
        invalidation.paths([invalidation.user_from_message(event["Records"][0]["body"])])
    ]


def test_missing_distribution_fails_the_cold_start(
    monkeypatch: pytest.MonkeyPatch, aws: dict[str, Any]
) -> None:
    monkeypatch.delenv("DISTRIBUTION_ID")

    with pytest.raises(RuntimeError, match="DISTRIBUTION_ID"):
        load_handler(FUNCTIONS / "invalidate_cdn")

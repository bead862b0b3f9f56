"""DELETE /avatars through the real handler against moto's S3, SQS and CloudFront (in-process)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from imgpipe import invalidation
from imgpipe_local.handlers import Handler, load_handler
from tests.aws_support import create_avatar_buckets, create_distribution, use_test_aws
from tests.conftest import FUNCTIONS, load_event
from tests.openapi_support import check_function_answer

UPLOADS = "imgpipe-uploads-test"
ASSETS = "imgpipe-assets-test"
SUB = "3f1c2a9e-8b7d-4e6f-9a01-23456789abcd"  # the sub in events/delete_avatar.json
# Users whose keys share the caller's as a string prefix, plus an unrelated one.
OTHERS = (f"{SUB}-2", f"{SUB}x", "someone-else")

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
    for name in ("DISTRIBUTION_ID", "INVALIDATION_QUEUE_URL"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        s3 = boto3.client("s3")
        create_avatar_buckets(s3, UPLOADS, ASSETS)
        cloudfront = boto3.client("cloudfront")
        distribution_id = create_distribution(cloudfront, ASSETS)
        sqs = boto3.client("sqs")
        queue_url = sqs.create_queue(QueueName="imgpipe-invalidations")["QueueUrl"]
        monkeypatch.setenv("INVALIDATION_QUEUE_URL", queue_url)
        for user in (SUB, *OTHERS):
            seed(s3, user)
        yield {
            "s3": s3,
            "cloudfront": cloudfront,
            "distribution_id": distribution_id,
            "sqs": sqs,
            "queue_url": queue_url,
        }


def seed(s3: Any, user: str) -> None:
    key = f"avatars/{user}/original"
    for n in range(3):
        s3.put_object(Bucket=UPLOADS, Key=key, Body=f"upload {n}".encode(), ContentType="image/png")
    s3.delete_object(Bucket=UPLOADS, Key=key)  # a delete marker on top
    for name in ("avatar.json", "512x512.jpg", "256x256.webp", "v/0123456789abcdef/512x512.jpg"):
        s3.put_object(Bucket=ASSETS, Key=f"avatars/{user}/{name}", Body=b"asset")


def stored(s3: Any, user: str) -> tuple[list[str], list[str]]:
    prefix = f"avatars/{user}/"
    page = s3.list_object_versions(Bucket=UPLOADS, Prefix=prefix)
    versions = sorted(e["VersionId"] for e in (*page.get("Versions", ()), *page.get("DeleteMarkers", ())))
    assets = sorted(e["Key"] for e in s3.list_objects_v2(Bucket=ASSETS, Prefix=prefix).get("Contents", ()))
    return versions, assets


def queued_users(aws: dict[str, Any]) -> list[str]:
    """Users whose invalidation is waiting in the queue (read without consuming them for long)."""
    users = []
    while (
        messages := aws["sqs"]
        .receive_message(QueueUrl=aws["queue_url"], MaxNumberOfMessages=10, VisibilityTimeout=30)
        .get("Messages")
    ):
        users += [invalidation.user_from_message(m["Body"]) for m in messages]
    return sorted(users)


def invalidations(aws: dict[str, Any]) -> int:
    listed = aws["cloudfront"].list_invalidations(DistributionId=aws["distribution_id"])["InvalidationList"]
    return int(listed["Quantity"])


def invoke(handler: Handler, event: dict[str, Any], lambda_context: Any) -> tuple[int, dict[str, Any]]:
    response = handler(event, lambda_context)
    # Every answer these tests provoke is held to docs/openapi.yaml.
    check_function_answer(event, response)
    return int(response["statusCode"]), json.loads(response["body"])


def load(monkeypatch: pytest.MonkeyPatch, distribution_id: str) -> Handler:
    monkeypatch.setenv("DISTRIBUTION_ID", distribution_id)
    return load_handler(FUNCTIONS / "delete_avatar")


def test_erases_only_the_callers_avatar_then_queues_its_cdn_invalidation(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, lambda_context: Any
) -> None:
    s3 = aws["s3"]
    handler = load(monkeypatch, aws["distribution_id"])
    others_before = {user: stored(s3, user) for user in OTHERS}

    # When the caller deletes their avatar
    status, body = invoke(handler, load_event("delete_avatar"), lambda_context)

    # Then 3 originals + 1 delete marker and 4 assets are gone, and nobody else's
    assert status == 200
    assert body == {"deleted": {"uploads": 4, "assets": 4}, "cdnInvalidation": "queued"}
    assert stored(s3, SUB) == ([], [])
    assert {user: stored(s3, user) for user in OTHERS} == others_before

    # And that user's CDN copies are queued for invalidation, not invalidated on the request
    # (CloudFront's in-progress limit must not fail an erasure: functions/invalidate_cdn)
    assert queued_users(aws) == [SUB]
    assert invalidations(aws) == 0


def test_is_idempotent(aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, lambda_context: Any) -> None:
    s3 = aws["s3"]
    handler = load(monkeypatch, aws["distribution_id"])
    others_before = {user: stored(s3, user) for user in OTHERS}

    first = invoke(handler, load_event("delete_avatar"), lambda_context)
    second = invoke(handler, load_event("delete_avatar"), lambda_context)

    assert first[0] == second[0] == 200
    assert second[1]["deleted"] == {"uploads": 0, "assets": 0}
    # Queued again: the first call may have failed right after deleting.
    assert second[1]["cdnInvalidation"] == "queued"
    assert queued_users(aws) == [SUB, SUB]
    assert {user: stored(s3, user) for user in OTHERS} == others_before


def test_without_a_distribution_it_only_deletes(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, lambda_context: Any
) -> None:
    handler = load(monkeypatch, "")  # the local stack has no CloudFront

    status, body = invoke(handler, load_event("delete_avatar"), lambda_context)

    assert status == 200
    assert body == {"deleted": {"uploads": 4, "assets": 4}, "cdnInvalidation": None}
    assert queued_users(aws) == []


@pytest.mark.parametrize("authorizer", [None, {"lambda": {}}, {"lambda": {"sub": ""}}])
def test_without_an_authorizer_subject_it_is_a_401_and_deletes_nothing(
    aws: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    lambda_context: Any,
    authorizer: dict[str, Any] | None,
):
    handler = load(monkeypatch, aws["distribution_id"])
    event = load_event("delete_avatar")
    if authorizer is None:
        del event["requestContext"]["authorizer"]
    else:
        event["requestContext"]["authorizer"] = authorizer
    before = stored(aws["s3"], SUB)

    status, body = invoke(handler, event, lambda_context)

    assert status == 401
    assert body["message"] == "Unauthorized"
    assert stored(aws["s3"], SUB) == before


def test_a_subject_that_is_not_key_safe_erases_its_digest_prefix_only(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, lambda_context: Any
):
    s3 = aws["s3"]
    handler = load(monkeypatch, "")
    event = load_event("delete_avatar")
    # "../" would climb out of avatars/<user>/ if it were used as the key; it maps to a digest.
    event["requestContext"]["authorizer"]["lambda"]["sub"] = f"../{SUB}"

    status, body = invoke(handler, event, lambda_context)

    assert status == 200
    assert body["deleted"] == {"uploads": 0, "assets": 0}
    assert stored(s3, SUB)[1] != []


def test_an_object_s3_refuses_to_delete_fails_the_request(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, lambda_context: Any
):
    # Given an uploads bucket whose original is under a compliance-mode object lock
    s3 = aws["s3"]
    s3.create_bucket(Bucket="imgpipe-locked-test", ObjectLockEnabledForBucket=True)
    s3.put_object(
        Bucket="imgpipe-locked-test",
        Key=f"avatars/{SUB}/original",
        Body=b"kept",
        ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate="2099-01-01T00:00:00Z",
    )
    monkeypatch.setenv("UPLOADS_BUCKET", "imgpipe-locked-test")
    handler = load(monkeypatch, aws["distribution_id"])

    # When the caller asks to erase
    status, body = invoke(handler, load_event("delete_avatar"), lambda_context)

    # Then the answer says to retry instead of reporting a partial erase as done (the detail,
    # which names buckets and keys, stays in the log), and nothing is queued for invalidation
    # until the objects are really gone
    assert status == 503
    assert body == {"statusCode": 503, "message": "Some objects could not be deleted yet; retry the request."}
    assert queued_users(aws) == []


def test_a_distribution_without_an_invalidation_queue_fails_the_cold_start(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("INVALIDATION_QUEUE_URL")

    with pytest.raises(RuntimeError, match="INVALIDATION_QUEUE_URL"):
        load(monkeypatch, aws["distribution_id"])


def test_missing_bucket_setting_fails_the_cold_start(aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("ASSETS_BUCKET")

    with pytest.raises(RuntimeError, match="ASSETS_BUCKET"):
        load(monkeypatch, aws["distribution_id"])

"""Moto fixtures and AWS behaviour moto lacks, shared by the unit and integration tests."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

# Set by a developer's shell or CI, they would send moto-backed boto3 calls elsewhere.
_HOST_AWS_VARIABLES = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE")


def use_test_aws(monkeypatch: pytest.MonkeyPatch, **variables: str) -> None:
    """boto3 with moto's test credentials in us-east-1 and nothing from the host, plus `variables`."""
    for name in _HOST_AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    fixed = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }
    for name, value in {**fixed, **variables}.items():
        monkeypatch.setenv(name, value)


def create_avatar_buckets(s3: Any, uploads: str, assets: str) -> None:
    """The stack's two buckets as the template declares them: uploads versioned, assets not."""
    s3.create_bucket(Bucket=uploads)
    s3.put_bucket_versioning(Bucket=uploads, VersioningConfiguration={"Status": "Enabled"})
    s3.create_bucket(Bucket=assets)


def create_distribution(cloudfront: Any, origin_bucket: str, reference: str = "imgpipe-test") -> str:
    """A minimal CloudFront distribution in front of `origin_bucket`; its id."""
    created = cloudfront.create_distribution(
        DistributionConfig={
            "CallerReference": reference,
            "Comment": "",
            "Enabled": True,
            "Origins": {
                "Quantity": 1,
                "Items": [
                    {
                        "Id": "assets",
                        "DomainName": f"{origin_bucket}.s3.us-east-1.amazonaws.com",
                        "S3OriginConfig": {"OriginAccessIdentity": ""},
                    }
                ],
            },
            "DefaultCacheBehavior": {"TargetOriginId": "assets", "ViewerProtocolPolicy": "redirect-to-https"},
        }
    )
    return created["Distribution"]["Id"]


class CloudFrontInvalidationLimit:
    """CloudFront's limit on wildcard invalidation paths in progress, enforced on a moto client.

    moto completes every invalidation at once and enforces no limit. This counts the wildcard
    paths of each invalidation the client creates until `complete_all()` (time passing, as far
    as CloudFront is concerned) and, past the limit, answers CreateInvalidation the way
    CloudFront does: HTTP 400 TooManyInvalidationsInProgress, which botocore raises as its
    modelled exception. Non-wildcard paths have a separate, larger limit and are not counted.
    """

    WILDCARD_PATHS_IN_PROGRESS = 15

    def __init__(self, cloudfront: Any, limit: int = WILDCARD_PATHS_IN_PROGRESS) -> None:
        self.limit = limit
        self.in_progress = 0
        self.most_in_progress = 0
        self.refused = 0
        self.created: list[list[str]] = []
        events = cloudfront.meta.events
        events.register("provide-client-params.cloudfront.CreateInvalidation", self._note_paths)
        events.register("before-call.cloudfront.CreateInvalidation", self._answer)

    def complete_all(self) -> None:
        self.in_progress = 0

    def _note_paths(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["imgpipe-paths"] = list(params["InvalidationBatch"]["Paths"]["Items"])

    def _answer(self, context: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]] | None:
        paths = context["imgpipe-paths"]
        wildcards = sum(path.endswith("*") for path in paths)
        if self.in_progress + wildcards > self.limit:
            self.refused += 1
            message = "Your request contains too many invalidations."
            response = AWSResponse("https://cloudfront.amazonaws.com/", 400, {}, None)
            return response, {
                "Error": {"Code": "TooManyInvalidationsInProgress", "Message": message},
                "ResponseMetadata": {"HTTPStatusCode": 400},
            }
        self.in_progress += wildcards
        self.most_in_progress = max(self.most_in_progress, self.in_progress)
        self.created.append(paths)
        return None

"""Moto fixtures shared by the unit and integration tests."""

from __future__ import annotations

from typing import Any


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

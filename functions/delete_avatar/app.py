"""DELETE /avatars: erase the caller's avatar (every original version, renditions, manifest, CDN copies)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from aws_lambda_powertools import Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from imgpipe import api, erase, observability, settings


@dataclass(frozen=True)
class Settings:
    uploads_bucket: str = settings.env("UPLOADS_BUCKET")
    assets_bucket: str = settings.env("ASSETS_BUCKET")
    # Empty locally (no CloudFront): the erase then skips the invalidation.
    distribution_id: str = settings.env("DISTRIBUTION_ID", "")


SETTINGS = settings.load(Settings)

logger = observability.logger()
tracer = observability.tracer()
metrics = Metrics()
app = APIGatewayHttpResolver()
s3 = boto3.client("s3")
cloudfront = boto3.client("cloudfront") if SETTINGS.distribution_id else None


@app.exception_handler(erase.EraseError)  # type: ignore[untyped-decorator]  # unannotated in Powertools
def _incomplete(error: erase.EraseError) -> Response[str]:
    # Nothing is reported erased that was not, and a second call finishes the job.
    logger.error("erase incomplete", extra={"detail": str(error)})
    metrics.add_metric(name="AvatarEraseIncomplete", unit=MetricUnit.Count, value=1)
    return api.error(503, "Some objects could not be deleted yet; retry the request.")


@app.delete("/avatars")
def delete_avatar() -> dict[str, Any]:
    user = api.caller(app)
    result = erase.erase_avatar(
        s3,
        cloudfront,
        user=user,
        uploads_bucket=SETTINGS.uploads_bucket,
        assets_bucket=SETTINGS.assets_bucket,
        distribution_id=SETTINGS.distribution_id or None,
    )
    logger.info(
        "avatar erased",
        extra={
            "user": user,
            "uploads_deleted": result.uploads_deleted,
            "assets_deleted": result.assets_deleted,
            "invalidation_id": result.invalidation_id,
        },
    )
    metrics.add_metric(name="AvatarErased", unit=MetricUnit.Count, value=1)
    return {
        "deleted": {"uploads": result.uploads_deleted, "assets": result.assets_deleted},
        "invalidationId": result.invalidation_id,
    }


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)

"""DELETE /avatars: erase the caller's avatar (every original version, renditions, manifest), then
queue the invalidation of its CDN copies (functions/invalidate_cdn)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from aws_lambda_powertools import Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from imgpipe import api, erase, invalidation, observability, settings


@dataclass(frozen=True)
class Settings:
    uploads_bucket: str = settings.env("UPLOADS_BUCKET")
    assets_bucket: str = settings.env("ASSETS_BUCKET")
    # Empty locally (no CloudFront): there are no CDN copies to invalidate.
    distribution_id: str = settings.env("DISTRIBUTION_ID", "")
    invalidation_queue_url: str = settings.env("INVALIDATION_QUEUE_URL", "")

    def validate(self) -> None:
        if self.distribution_id and not self.invalidation_queue_url:
            raise settings.SettingsError("INVALIDATION_QUEUE_URL is required with DISTRIBUTION_ID")


SETTINGS = settings.load(Settings)

logger = observability.logger()
tracer = observability.tracer()
metrics = Metrics()
app = APIGatewayHttpResolver()
s3 = boto3.client("s3")
sqs = boto3.client("sqs") if SETTINGS.distribution_id else None


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
        s3, user=user, uploads_bucket=SETTINGS.uploads_bucket, assets_bucket=SETTINGS.assets_bucket
    )
    # Queued on every call, even one that deleted nothing (an earlier call may have failed right
    # after deleting), and only now that the objects are gone, so CloudFront cannot fetch them
    # again. Queued rather than created here: CloudFront keeps 15 wildcard invalidations in
    # progress, and a burst of erasures must not fail on that.
    message_id = invalidation.queue(sqs, SETTINGS.invalidation_queue_url, user) if sqs is not None else None
    logger.info(
        "avatar erased",
        extra={
            "user": user,
            "uploads_deleted": result.uploads_deleted,
            "assets_deleted": result.assets_deleted,
            "invalidation_message_id": message_id,
        },
    )
    metrics.add_metric(name="AvatarErased", unit=MetricUnit.Count, value=1)
    return {
        "deleted": {"uploads": result.uploads_deleted, "assets": result.assets_deleted},
        "cdnInvalidation": "queued" if message_id else None,
    }


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)

"""SQS (InvalidationQueue) -> one CloudFront invalidation per batch of erased users.

Not Powertools' BatchProcessor: that handles records one by one, and the point here is one
invalidation for the whole batch. While CloudFront is busy the batch is reported failed, so the
queue offers it again after its visibility timeout (ReportBatchItemFailures).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import SQSEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from imgpipe import invalidation, observability, settings


@dataclass(frozen=True)
class Settings:
    distribution_id: str = settings.env("DISTRIBUTION_ID")


SETTINGS = settings.load(Settings)
logger = observability.logger()
tracer = observability.tracer()
metrics = Metrics()
cloudfront = boto3.client("cloudfront")


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
@event_source(data_class=SQSEvent)
def lambda_handler(event: SQSEvent, context: LambdaContext) -> dict[str, Any]:
    messages = {record.message_id: record.body for record in event.records}
    outcome = invalidation.invalidate_batch(cloudfront, SETTINGS.distribution_id, messages)
    for message_id, reason in outcome.rejected.items():
        logger.error(
            "invalid invalidation request; left for the dead-letter queue",
            extra={"messageId": message_id, "reason": reason},
        )
    if outcome.invalidation_id:
        logger.info(
            "CDN copies invalidated",
            extra={"invalidationId": outcome.invalidation_id, "users": len(outcome.users)},
        )
        metrics.add_metric(name="CdnInvalidated", unit=MetricUnit.Count, value=len(outcome.users))
    if outcome.retry:
        logger.warning(
            "CloudFront has too many invalidations in progress; batch offered again later",
            extra={"messages": len(outcome.retry)},
        )
        metrics.add_metric(name="CdnInvalidationDeferred", unit=MetricUnit.Count, value=len(outcome.retry))
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in outcome.failed]}

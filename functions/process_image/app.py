"""S3 ObjectCreated on the uploads bucket -> renditions, manifest and status (imgpipe.avatars)."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any
from urllib.parse import unquote_plus

import boto3
from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.data_classes import S3Event, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from imgpipe import avatar_store, avatars, observability

CONFIG = avatars.config_from_environment()
logger = observability.logger()
tracer = observability.tracer()
metrics = Metrics()
# As many pooled connections as requests the processor sends at once (else each step reconnects).
s3 = boto3.client("s3", config=Config(max_pool_connections=avatar_store.PARALLEL_REQUESTS))


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
@event_source(data_class=S3Event)
def lambda_handler(event: S3Event, context: LambdaContext) -> dict[str, Any]:
    if event.get("Event") == "s3:TestEvent":
        # Sent once when a notification is configured; it names no object.
        logger.info("S3 test event ignored", extra={"bucket": event.get("Bucket")})
        metrics.add_metric(name="Ignored", unit=MetricUnit.Count, value=1)
        return {"outcomes": []}
    outcomes = [_handle(record) for record in event.records]
    return {"outcomes": [asdict(outcome) for outcome in outcomes if outcome is not None]}


def _handle(record: Any) -> avatars.Outcome | None:
    bucket = record.s3.bucket.name
    if bucket != CONFIG.uploads_bucket or not record.event_name.startswith("ObjectCreated:"):
        logger.warning(
            "record not for this processor; ignored", extra={"bucket": bucket, "eventName": record.event_name}
        )
        metrics.add_metric(name="Ignored", unit=MetricUnit.Count, value=1)
        return None
    obj = record.s3.get_object
    started = time.perf_counter()
    outcome = avatars.handle_upload(
        s3,
        CONFIG,
        key=unquote_plus(obj.key),
        version_id=obj.version_id,
        sequencer=obj.sequencer,
        size=obj.get("size"),
        etag=obj.etag or None,
    )
    _record_metrics(outcome, elapsed_ms=(time.perf_counter() - started) * 1000)
    return outcome


def _record_metrics(outcome: avatars.Outcome, *, elapsed_ms: float) -> None:
    name = outcome.status.capitalize()
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
    if outcome.reason is not None:
        # A reason dimension on its own metric keeps the plain count easy to alarm on.
        with single_metric(
            name=name, unit=MetricUnit.Count, value=1, default_dimensions=metrics.default_dimensions
        ) as metric:
            metric.add_dimension(name="reason", value=outcome.reason)
    if outcome.status != "skipped":
        metrics.add_metric(name="ProcessingTime", unit=MetricUnit.Milliseconds, value=elapsed_ms)
    if outcome.bytes_out:
        metrics.add_metric(name="BytesOut", unit=MetricUnit.Bytes, value=outcome.bytes_out)
    if outcome.bytes_in:
        metrics.add_metric(name="BytesIn", unit=MetricUnit.Bytes, value=outcome.bytes_in)

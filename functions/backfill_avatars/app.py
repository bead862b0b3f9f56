"""S3 Batch Operations tasks (schema 2.0) -> each user's avatar brought to the current spec.

The processor's code in the processor's package: the same spec from the same variables, the same
core and ordering rule (imgpipe.avatars.rerender_avatar); imgpipe.backfill speaks the protocol.
"""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import S3BatchOperationEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from imgpipe import avatar_store, avatars, backfill, observability

CONFIG = avatars.config_from_environment()
logger = observability.logger()
tracer = observability.tracer()
metrics = Metrics()
s3 = boto3.client("s3", config=Config(max_pool_connections=avatar_store.PARALLEL_REQUESTS))


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
@event_source(data_class=S3BatchOperationEvent)
def lambda_handler(event: S3BatchOperationEvent, context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(jobId=event.job.get_id, spec=CONFIG.rendering.digest())
    return backfill.answer(s3, CONFIG, event, on_answer=_count)


def _count(answer: backfill.Answer) -> None:
    # One metric per outcome (Backfill.rerendered, Backfill.rejected, ...): a job's progress in CloudWatch.
    metrics.add_metric(name=f"Backfill.{answer.outcome}", unit=MetricUnit.Count, value=1)

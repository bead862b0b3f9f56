"""POST /avatars/key_upload: a presigned POST for the caller's avatar, bounded by S3 itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from aws_lambda_powertools import Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from imgpipe import api, observability, settings, uploads
from imgpipe.spec import AvatarSpec


@dataclass(frozen=True)
class Settings:
    uploads_bucket: str = settings.env("UPLOADS_BUCKET")
    upload_url_ttl_seconds: int = settings.env("UPLOAD_URL_TTL_SECONDS")
    assets_base_url: str = settings.env("ASSETS_BASE_URL")

    def validate(self) -> None:
        if self.upload_url_ttl_seconds < 1:
            raise settings.SettingsError("UPLOAD_URL_TTL_SECONDS must be a positive integer")


SETTINGS = settings.load(Settings)
# RENDITIONS and MAX_UPLOAD_BYTES, read and checked exactly as the processor reads them.
SPEC = AvatarSpec.from_environ()

logger = observability.logger()
tracer = observability.tracer()
metrics = Metrics()
app = APIGatewayHttpResolver()
# Presigned POST policies must be SigV4-signed; signing is local, so no request is made here.
# Virtual addressing makes boto name the regional endpoint: the global one answers a new
# bucket's POST with a 307 to the region for hours, which a browser's CORS upload fails on.
# An IP endpoint (the local stack's moto) still gets path-style URLs.
s3 = boto3.client("s3", config=Config(signature_version="s3v4", s3={"addressing_style": "virtual"}))


@app.exception_handler(uploads.UploadRequestError)  # type: ignore[untyped-decorator]  # unannotated in Powertools
def _refused(error: uploads.UploadRequestError) -> Response[str]:
    # Counted, so a client stuck sending bad requests shows on the dashboard.
    metrics.add_metric(name="UploadRequestRefused", unit=MetricUnit.Count, value=1)
    return api.error(400, str(error))


@app.post("/avatars/key_upload")
def key_upload() -> dict[str, Any]:
    user = api.caller(app)
    event = app.current_event
    content_type = uploads.requested_content_type(event.body, base64_encoded=bool(event.is_base64_encoded))
    upload = uploads.presign_avatar_upload(
        s3,
        bucket=SETTINGS.uploads_bucket,
        user=user,
        content_type=content_type,
        max_bytes=SPEC.max_upload_bytes,
        expires_in=SETTINGS.upload_url_ttl_seconds,
        assets_base_url=SETTINGS.assets_base_url,
        avatar_filename=SPEC.avatar_filename,
    )
    logger.info(
        "presigned upload",
        extra={"user": user, "upload_id": upload["uploadId"], "content_type": content_type},
    )
    metrics.add_metric(name="UploadPresigned", unit=MetricUnit.Count, value=1)
    return upload


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)

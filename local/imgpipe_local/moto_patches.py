"""The one place the local stack changes moto's private code, applied only in the moto server's
own process (imgpipe_local.motoserver), never in a process that runs tests with mock_aws.

1. moto.s3.notifications._get_s3_event builds the S3 event moto sends to SQS. It leaves out what
the processor relies on and real S3 sends: `s3.object.sequencer` (how S3 orders the events of
one key), `s3.object.versionId` on a versioned bucket, and the key encoded as S3 encodes it
(form-encoded, slashes kept: moto encodes them too). moto offers no hook for event contents, so
the function is wrapped. Upstream would likely take a fix adding versionId and a sequencer to
its events (both are in the S3 event format moto otherwise follows); until then, this wrapper.

2. S3Response._bucket_response_post, the browser's presigned POST, answers without the CORS
headers of the bucket's rules that moto adds to its other object answers (and S3 to all), so a
page could not read the result of its own upload. A plain omission upstream would fix the same
way: merge _get_cors_headers_other() into the answer.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any
from urllib.parse import quote_plus

from moto.s3 import notifications
from moto.s3.responses import S3Response

_sequencer = itertools.count(time.time_ns() // 1000)
_lock = threading.Lock()


def apply() -> None:
    _enrich_s3_events()
    _cors_on_post_uploads()


def _cors_on_post_uploads() -> None:
    original = S3Response._bucket_response_post

    def bucket_response_post(self: S3Response, request: Any, bucket_name: str) -> Any:
        status, headers, body = original(self, request, bucket_name)
        return status, {**headers, **self._get_cors_headers_other()}, body

    S3Response._bucket_response_post = bucket_response_post  # type: ignore[method-assign]


def _enrich_s3_events() -> None:
    original = notifications._get_s3_event

    def get_s3_event(event_name: str, bucket: Any, key: Any, notification_id: str) -> dict[str, Any]:
        event: dict[str, Any] = original(event_name, bucket, key, notification_id)
        with _lock:
            # Increasing with every event, as S3's are for one key.
            sequencer = f"{next(_sequencer):018X}"
        for record in event["Records"]:
            obj = record["s3"]["object"]
            obj["key"] = quote_plus(key.name, safe="/")
            if getattr(bucket, "is_versioned", False) and getattr(key, "version_id", None):
                obj["versionId"] = key.version_id
            obj["sequencer"] = sequencer
            record.setdefault("userIdentity", {"principalId": "AWS:LOCAL"})
            record.setdefault("requestParameters", {"sourceIPAddress": "127.0.0.1"})
            record.setdefault(
                "responseElements", {"x-amz-request-id": sequencer[-16:], "x-amz-id-2": "local"}
            )
            record["s3"]["bucket"].setdefault("ownerIdentity", {"principalId": "LOCAL"})
        return event

    notifications._get_s3_event = get_s3_event

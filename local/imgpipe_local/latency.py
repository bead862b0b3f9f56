"""A latency model for AWS calls: production's round trips, on a machine where moto answers in ~1 ms.

In Lambda every S3 request costs tens of milliseconds; against moto it costs one. Registering
`delay_calls` on a boto3 session (or a client's event system) makes every request that session
sends wait `ms` first, in the calling thread, so calls made from parallel threads overlap as they
would against S3 and a serial path shows up as N round trips. Used by `make bench`'s latency table
and by `imgpipe dev/demo --aws-latency-ms`.
"""

from __future__ import annotations

import time
from typing import Any

import boto3
from botocore.hooks import BaseEventHooks

# botocore emits this just before the HTTP request leaves; returning None lets it go on.
_EVENT = "before-send"
_UNIQUE_ID = "imgpipe-aws-latency"


def delay_calls(events: BaseEventHooks, ms: float) -> None:
    """Make every request sent through `events` (a session's or client's) wait `ms` first."""
    events.unregister(_EVENT, unique_id=_UNIQUE_ID)
    if ms <= 0:
        return
    seconds = ms / 1000

    def wait(**_kwargs: Any) -> None:
        time.sleep(seconds)

    events.register(_EVENT, wait, unique_id=_UNIQUE_ID)


def delay_default_session(ms: float) -> None:
    """delay_calls on boto3's default session, which `boto3.client(...)` in a handler uses."""
    if boto3.DEFAULT_SESSION is None:
        boto3.setup_default_session()
    assert boto3.DEFAULT_SESSION is not None
    delay_calls(boto3.DEFAULT_SESSION.events, ms)

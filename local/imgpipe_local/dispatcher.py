"""S3 -> SQS -> function: Lambda's asynchronous invocation of an S3 trigger, locally.

Each message is one S3 event, handed to the function as S3 would hand it. A failed
invocation is retried (the message becomes visible again after `retry_delay_seconds`, 1 s
by default where Lambda waits about one and then two minutes) up to the function's
EventInvokeConfig.MaximumRetryAttempts; then, as Lambda's on-failure destination does, an
invocation record goes to the dead-letter queue.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from imgpipe_local.template import Function
from imgpipe_local.workers import FunctionError

log = logging.getLogger("imgpipe_local")

Invoke = Callable[[str, Any], Any]


def failure_record(
    function: Function, event: Any, error: BaseException, attempts: int, condition: str
) -> dict[str, Any]:
    """The document Lambda sends to an on-failure destination."""
    return {
        "version": "1.0",
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": f"{function.arn}:$LATEST",
            "condition": condition,
            "approximateInvokeCount": attempts,
        },
        "requestPayload": event,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": error.payload
        if isinstance(error, FunctionError)
        else {"errorMessage": str(error), "errorType": type(error).__name__},
    }


class Dispatcher:
    """Polls one queue and invokes one function with each S3 event in it, `concurrency` at a time."""

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        function: Function,
        invoke: Invoke,
        *,
        dead_letter_url: str | None,
        concurrency: int,
        retry_delay_seconds: int = 1,
    ) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.function = function
        self.invoke = invoke
        self.dead_letter_url = dead_letter_url
        self.retry_delay_seconds = retry_delay_seconds
        self._slots = threading.BoundedSemaphore(concurrency)
        self._deliveries = ThreadPoolExecutor(
            concurrency, thread_name_prefix=f"imgpipe-{function.logical_id}"
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._in_flight = 0
        self._retrying: set[str] = set()  # message ids waiting out their retry delay
        self._lock = threading.Lock()

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"imgpipe-dispatch-{self.function.logical_id}", daemon=True
        )
        self._thread.start()

    def request_stop(self) -> None:
        """Stop polling after the current long poll; stop() waits for it and the deliveries."""
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._deliveries.shutdown(wait=True)

    def idle(self) -> bool:
        """True when the queue holds nothing (visible or being retried) and nothing runs."""
        with self._lock:
            if self._in_flight or self._retrying:
                return False
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        with self._lock:
            return (
                self._in_flight == 0
                and not self._retrying
                and int(attributes["ApproximateNumberOfMessages"]) == 0
                and int(attributes["ApproximateNumberOfMessagesNotVisible"]) == 0
            )

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._slots.acquire(timeout=0.5):
                continue
            slots = 1
            while slots < 10 and self._slots.acquire(blocking=False):  # SQS hands out 10 at most
                slots += 1
            try:
                messages = self.sqs.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=slots,
                    WaitTimeSeconds=1,
                    # Room for a cold start before the message would be handed out again.
                    VisibilityTimeout=self.function.timeout + 15,
                    MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
                ).get("Messages", [])
            except Exception:
                messages = []
                if not self._stop.is_set():
                    log.exception("polling %s failed", self.queue_url)
                    self._stop.wait(1)
            for _ in range(slots - len(messages)):
                self._slots.release()
            for message in messages:
                with self._lock:
                    self._in_flight += 1
                    self._retrying.discard(message["MessageId"])
                self._deliveries.submit(self._deliver_in_slot, message)

    def _deliver_in_slot(self, message: dict[str, Any]) -> None:
        try:
            self._deliver(message)
        except Exception:
            if not self._stop.is_set():
                log.exception("%s: delivering a message failed", self.function.logical_id)
        finally:
            with self._lock:
                self._in_flight -= 1
            self._slots.release()

    def _deliver(self, message: dict[str, Any]) -> None:
        receipt = message["ReceiptHandle"]
        event = json.loads(message["Body"])
        if isinstance(event, dict) and event.get("Event") == "s3:TestEvent":
            # S3 sends one when a notification is configured; Lambda never sees it.
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=receipt)
            return
        attributes = message.get("Attributes", {})
        attempt = int(attributes.get("ApproximateReceiveCount", 1))
        age = time.time() - int(attributes.get("SentTimestamp", time.time() * 1000)) / 1000
        config = self.function.event_invoke
        if age > config.maximum_event_age_seconds:
            self._give_up(
                receipt,
                event,
                TimeoutError("event older than MaximumEventAgeInSeconds"),
                attempt - 1,
                "EventAgeExceeded",
            )
            return
        started = time.perf_counter()
        try:
            self.invoke(self.function.logical_id, event)
        except Exception as error:  # noqa: BLE001 - any failure is retried, as Lambda does
            if self._stop.is_set():
                return  # the stack is stopping; the message would be handed out again
            retry = attempt <= config.maximum_retry_attempts
            what = error.report() if isinstance(error, FunctionError) else f"{type(error).__name__}: {error}"
            outcome = "will retry" if retry else "giving up"
            log.error("%s failed (attempt %d, %s): %s", self.function.logical_id, attempt, outcome, what)  # noqa: TRY400 - the function's trace, not ours
            if not retry:
                self._give_up(receipt, event, error, attempt, "RetriesExhausted")
            else:
                with self._lock:
                    self._retrying.add(message["MessageId"])
                self.sqs.change_message_visibility(
                    QueueUrl=self.queue_url, ReceiptHandle=receipt, VisibilityTimeout=self.retry_delay_seconds
                )
            return
        log.info("%s done in %.0f ms", self.function.logical_id, (time.perf_counter() - started) * 1000)
        self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=receipt)

    def _give_up(self, receipt: str, event: Any, error: BaseException, attempts: int, condition: str) -> None:
        if self.dead_letter_url:
            record = failure_record(self.function, event, error, attempts, condition)
            self.sqs.send_message(QueueUrl=self.dead_letter_url, MessageBody=json.dumps(record))
        else:
            log.error(
                "%s: event dropped (%s), no on-failure destination", self.function.logical_id, condition
            )
        self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=receipt)

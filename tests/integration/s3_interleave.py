"""Real interleavings of S3 requests: hold one request of a client until another actor has run,
or release a run's requests one round at a time to see which it sends together.

Both hook botocore's events of one client, in the thread that sends the request, so whatever
runs in parallel threads (the processor's pool) keeps doing so.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

# Long enough for a parked request to be released by a test that has its own S3 work to do.
WAIT_SECONDS = 30


def in_thread[T](fn: Callable[[], T]) -> Future[T]:
    """Run `fn` on a thread of its own (the thread ends with it)."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="actor")
    future = pool.submit(fn)
    pool.shutdown(wait=False)
    return future


class Pause:
    """Park the `nth` request of `operation` that matches `match`, before it is sent or after its
    answer came back (`after=True`), until `release()`.

    `match` sees the call's parameters (Bucket, Key...).
    """

    def __init__(
        self,
        client: Any,
        operation: str,
        match: Callable[[dict[str, Any]], bool] = lambda _: True,
        *,
        after: bool = False,
        nth: int = 1,
    ) -> None:
        self.reached = threading.Event()
        self._released = threading.Event()
        self._match, self._countdown = match, nth
        self._lock = threading.Lock()
        self.params: dict[str, Any] | None = None
        events = client.meta.events
        events.register(f"provide-client-params.s3.{operation}", self._before)
        if after:
            events.register(f"after-call.s3.{operation}", self._after)
        self._after_call = after

    def _chosen(self, params: dict[str, Any]) -> bool:
        with self._lock:
            if self._countdown <= 0 or not self._match(params):
                return False
            self._countdown -= 1
            return self._countdown == 0

    def _before(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if self._chosen(params):
            self.params = dict(params)
            if self._after_call:
                context["imgpipe-paused"] = True
            else:
                self._park()

    def _after(self, context: dict[str, Any], **_: Any) -> None:
        if context.get("imgpipe-paused"):
            self._park()

    def _park(self) -> None:
        self.reached.set()
        if not self._released.wait(WAIT_SECONDS):
            raise TimeoutError("a paused S3 request was never released")

    def wait(self) -> None:
        """Block until the chosen request is parked (fails the test if it never comes)."""
        if not self.reached.wait(WAIT_SECONDS):
            raise AssertionError("the paused request was never sent")

    def release(self) -> None:
        self._released.set()


class Rounds:
    """Count a run's sequential S3 round trips: every request waits at the gate; once no new
    request has arrived for `quiet` seconds, all waiting ones are released together as one round.

    A request that needs another's answer cannot be sent before that one is released, so it
    always lands in a later round: the count can only be too high (a request of a concurrent
    batch that took longer than `quiet` to be sent), never too low.
    """

    def __init__(self, client: Any, quiet: float = 0.3) -> None:
        self.rounds: list[list[str]] = []
        self._quiet = quiet
        self._cond = threading.Condition()
        self._waiting: list[str] = []
        self._gate = threading.Event()
        self._last = 0.0
        client.meta.events.register("provide-client-params.s3", self._hook)

    def _hook(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        with self._cond:
            key = params.get("Key") or params.get("Prefix") or ""
            self._waiting.append(f"{model.name} {params.get('Bucket')}/{key}")
            self._last = time.monotonic()
            gate = self._gate
            self._cond.notify_all()
        if not gate.wait(WAIT_SECONDS):
            raise TimeoutError("a gated S3 request was never released")

    def run[T](self, fn: Callable[[], T]) -> T:
        future = in_thread(fn)
        while True:
            with self._cond:
                while not self._waiting and not future.done():
                    self._cond.wait(0.05)
                if not self._waiting:
                    break
                while (idle := time.monotonic() - self._last) < self._quiet:
                    self._cond.wait(self._quiet - idle)
                batch, self._waiting = self._waiting, []
                gate, self._gate = self._gate, threading.Event()
            self.rounds.append(sorted(batch))
            gate.set()
        return future.result()

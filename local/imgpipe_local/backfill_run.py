"""A backfill run on one machine: every current original, one Batch Operations task each.

The run lists the uploads bucket's originals and sends each to BackfillFunction as the event S3
Batch Operations would send (imgpipe.backfill.task_event), with at most `workers` in flight. It
redrives TemporaryFailure answers as Batch Operations does (a few times, backing off), and
tallies the outcomes read back from the answers.

Resuming needs no checkpoint: "done" is a property of the avatars, not of a run. An avatar is
done when avatar.json records the current spec (or a refusal for it), and its commit is one
atomic write, so after an interruption every avatar is either still stale or done. A second run
lists everything again and the done ones answer `current` after one GET of avatar.json; only
the rest are rendered. Several runs, or machines, may overlap: the ordering rule makes a repeat
harmless.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, TextIO

from imgpipe import backfill, keys
from imgpipe.backfill import Answer, Task

# A function's response to one event (what Lambda returns to Batch Operations).
Invoke = Callable[[dict[str, Any]], Mapping[str, Any]]

# Batch Operations redrives a TemporaryFailure "before the job completes"; here: this many
# attempts in all, backing off between them.
ATTEMPTS = 4
BACKOFF_SECONDS = 0.5
LIST_PAGE = 1000
SUMMARY_OUTCOMES = ("rerendered", "current", "skipped", "rejected", "failed")


class FunctionFailed(RuntimeError):
    """The invocation itself failed (the handler raised, timed out, ran out of memory)."""


def list_originals(s3: Any, bucket: str) -> Iterator[str]:
    """The upload key of every user with a current original, in key order (one LIST per 1,000)."""
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(
        Bucket=bucket, Prefix=keys.PREFIX, PaginationConfig={"PageSize": LIST_PAGE}
    ):
        for item in page.get("Contents", ()):
            if keys.user_from_upload_key(item["Key"]) is not None:
                yield item["Key"]


@dataclass
class Tally:
    """What a run did so far: outcome counts, and the tasks worth naming (rejected, failed, stale)."""

    counts: Counter[str] = field(default_factory=Counter)
    named: list[tuple[str, Answer]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    # Stopped (Ctrl-C) before every original had a task: a later run picks up the rest.
    interrupted: bool = False

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    @property
    def failed(self) -> int:
        return self.counts["failed"]

    def add(self, key: str, answer: Answer) -> None:
        self.counts[answer.outcome] += 1
        if answer.outcome in ("rejected", "failed", "stale"):
            self.named.append((key, answer))


class Progress:
    """One status line on a terminal (rewritten in place), or a line every few seconds to a log."""

    def __init__(
        self, stream: TextIO, total: int, *, interactive: bool | None = None, every: float = 5.0
    ) -> None:
        self.stream = stream
        self.total = total
        self.interactive = stream.isatty() if interactive is None else interactive
        self.every = every
        self._last = 0.0
        self._lock = threading.Lock()

    def line(self, tally: Tally) -> str:
        done, elapsed = tally.done, max(time.monotonic() - tally.started, 1e-6)
        rate = done / elapsed
        left = self.total - done
        eta = f"{int(left / rate) // 60}:{int(left / rate) % 60:02d}" if rate > 0 and left > 0 else "-"
        width = 24
        filled = width * done // self.total if self.total else width
        counts = " · ".join(
            f"{tally.counts[o]} {o}" for o in ("rerendered", "current", "skipped", "rejected", "failed")
        )
        stale = f" · {tally.counts['stale']} stale" if tally.counts["stale"] else ""
        return (
            f"[{'#' * filled}{'.' * (width - filled)}] {done:,}/{self.total:,}  {counts}{stale}"
            f"  {rate:.1f}/s  ETA {eta}"
        )

    def update(self, tally: Tally, *, final: bool = False) -> None:
        with self._lock:
            now = time.monotonic()
            if self.interactive:
                self.stream.write("\r\x1b[2K" + self.line(tally) + ("\n" if final else ""))
            elif final or now - self._last >= self.every:
                self.stream.write(self.line(tally) + "\n")
            else:
                return
            self._last = now
            self.stream.flush()


@dataclass(frozen=True)
class Runner:
    """Drives the backfill unit over many originals through `invoke`."""

    invoke: Invoke
    bucket: str
    arguments: Mapping[str, str]
    workers: int = 4
    attempts: int = ATTEMPTS
    backoff: float = BACKOFF_SECONDS
    job_id: str = field(default_factory=lambda: f"local-{uuid.uuid4()}")

    def run_one(self, key: str, stop: threading.Event | None = None) -> Answer:
        """One task, redriven while it answers TemporaryFailure (up to `attempts` in all)."""
        answer = Answer("PermanentFailure", "failed", "not_run")
        for attempt in range(self.attempts):
            if attempt:
                if stop is not None and stop.is_set():
                    break
                time.sleep(self.backoff * 2 ** (attempt - 1))
            task = Task(task_id=uuid.uuid4().hex, bucket=self.bucket, key=key)
            event = backfill.task_event(
                [task], job_id=self.job_id, invocation_id=uuid.uuid4().hex, user_arguments=self.arguments
            )
            try:
                answer = backfill.read_answer(self.invoke(event), task.task_id)
            except FunctionFailed as error:
                # Batch Operations counts a function error as a failed attempt of the task.
                answer = Answer("TemporaryFailure", "failed", f"function_error: {error}")
            if answer.code != "TemporaryFailure":
                return answer
        return answer

    def run(
        self,
        originals: Iterable[str],
        *,
        progress: Progress | None = None,
        stop: threading.Event | None = None,
    ) -> Tally:
        """Every original once; stops taking new ones when `stop` is set (in-flight ones finish)."""
        stop = stop or threading.Event()
        tally = Tally()
        pending: dict[Future[Answer], str] = {}
        source = iter(originals)
        exhausted = False
        with ThreadPoolExecutor(self.workers, thread_name_prefix="backfill") as pool:
            try:
                while True:
                    while not stop.is_set() and not exhausted and len(pending) < 2 * self.workers:
                        key = next(source, None)
                        if key is None:
                            exhausted = True
                            break
                        pending[pool.submit(self.run_one, key, stop)] = key
                    if stop.is_set():
                        # Queued behind the workers, not started: left for the next run.
                        for future in [f for f in pending if f.cancel()]:
                            del pending[future]
                    if not pending:
                        break
                    finished, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                    for future in finished:
                        tally.add(pending.pop(future), future.result())
                    if progress is not None:
                        progress.update(tally)
            except KeyboardInterrupt:
                # Ctrl-C: no new task; those in flight finish (each takes a second or so), so no
                # avatar is left between its rendition writes and its commit by this run.
                stop.set()
                for future in list(pending):
                    tally.add(pending.pop(future), future.result())
            finally:
                tally.interrupted = stop.is_set() and not exhausted
                if progress is not None:
                    progress.update(tally, final=True)
        return tally

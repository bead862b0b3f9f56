"""Run one call in a forked child under a CPU-time and a memory limit; the result comes back over a pipe.

The backstop for decode costs nobody listed: whatever a file makes the decoders do, the child
is stopped after `cpu_seconds` of CPU (all threads) or refused memory past `memory_bytes` above
what it started with, and the parent gets an `Overrun` instead of a hang or an OOM-killed
sandbox; a crash in a C library kills the child, not the processor. Forking is what Lambda
allows (it has no /dev/shm, so no multiprocessing queues); the child shares the warm process's
pages copy-on-write, so nothing is imported twice. It costs ~8-10 ms of CPU per call on this
machine (fork and exit ~2 ms, the rest first-touch page faults of a fresh address space):
measured against the alternatives in bench/README.md.

Limits, per child: ITIMER_PROF (process CPU time, sub-second, SIGPROF ends the child) with
RLIMIT_CPU one second later as a second line; RLIMIT_DATA (private writable memory: heap,
anonymous mappings, thread stacks) at the child's size at fork plus `memory_bytes`, so an
allocation past it fails (MemoryError in Python, an error return in C) instead of growing.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import pickle
import resource
import signal
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Usage:
    """What the child used, from the kernel's accounting of it (wait4)."""

    cpu_seconds: float  # user + system, all threads
    peak_above_parent: int  # bytes: the child's peak RSS minus the parent's RSS at fork


class Overrun(Exception):
    """The call needed more CPU time or memory than it was given."""

    def __init__(self, resource_name: str, limit: float, usage: Usage, message: str) -> None:
        super().__init__(message)
        self.resource = resource_name  # "cpu" or "memory"
        self.limit = limit
        self.usage = usage


class ChildCrashed(Exception):
    """The child died of a signal it was not sent by its limits (a crash inside a C library)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"the decoding child died of {signal.Signals(signum).name}")
        self.signum = signum


class ChildFailed(Exception):
    """Carries the child's traceback text as the cause of the exception re-raised in the parent."""


_CPU_SIGNALS = {signal.SIGPROF, signal.SIGXCPU, signal.SIGKILL}


def _data_bytes() -> int:
    """This process's private writable memory (VmData), the quantity RLIMIT_DATA limits."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmData:"):
            return int(line.split()[1]) * 1024
    return 0


def _limit_self(cpu_seconds: float, memory_bytes: int) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    data = _data_bytes() + memory_bytes
    resource.setrlimit(resource.RLIMIT_DATA, (data, data))
    signal.signal(signal.SIGPROF, signal.SIG_DFL)
    signal.setitimer(signal.ITIMER_PROF, cpu_seconds)
    whole = math.ceil(cpu_seconds) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (whole, whole + 1))


def _child(call: Callable[[], Any], cpu_seconds: float, memory_bytes: int, out: int) -> None:
    try:
        _limit_self(cpu_seconds, memory_bytes)
        try:
            payload: tuple[Any, ...] = ("ok", call())
        except MemoryError:
            payload = ("memory",)
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent, re-raised there
            payload = ("raised", exc, traceback.format_exc())
        signal.setitimer(signal.ITIMER_PROF, 0)
        try:
            blob = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError):
            blob = pickle.dumps(("raised", None, payload[-1] if payload[0] == "raised" else repr(payload)))
        view = memoryview(blob)
        while view:
            view = view[os.write(out, view) :]
    finally:
        os._exit(0)


def rss_bytes() -> int:
    """This process's resident set size now."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def call(fn: Callable[[], Any], *, cpu_seconds: float, memory_bytes: int) -> Any:
    """fn() run in a forked child under the limits: its result, or the exception it raised
    (re-raised here), or Overrun / ChildCrashed."""
    parent_rss = rss_bytes()
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # Python warns that forking a process with threads may deadlock the child on a lock
        # another thread held. The child only runs the imaging core (no logging, no network,
        # no locks of the parent's threads) and ends with os._exit.
        warnings.simplefilter("ignore", DeprecationWarning)
        # The parent's objects out of the child's collections: a collection would write to every
        # tracked object's header and copy every page holding one.
        gc.freeze()
        pid = os.fork()
    if pid != 0:
        gc.unfreeze()
    if pid == 0:  # pragma: no cover - the child's coverage is not collected
        os.close(read_end)
        _child(fn, cpu_seconds, memory_bytes, write_end)
    os.close(write_end)
    chunks = []
    try:
        with contextlib.closing(os.fdopen(read_end, "rb")) as pipe:
            while chunk := pipe.read(1 << 20):
                chunks.append(chunk)
    finally:
        _, status, rusage = os.wait4(pid, 0)
    # The child starts with the parent's pages mapped (shared until written), so its RSS above
    # the parent's is what this call added.
    usage = Usage(rusage.ru_utime + rusage.ru_stime, max(0, rusage.ru_maxrss * 1024 - parent_rss))
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        if signum in _CPU_SIGNALS:
            raise Overrun("cpu", cpu_seconds, usage, f"needed more than {cpu_seconds:.1f} s of CPU time")
        raise ChildCrashed(signum)
    if not chunks:
        raise ChildFailed(f"the decoding child exited ({os.waitstatus_to_exitcode(status)}) without a result")
    payload = pickle.loads(b"".join(chunks))  # noqa: S301 - our own child's bytes, over our own pipe
    if payload[0] == "ok":
        return payload[1]
    if payload[0] == "memory":
        raise Overrun(
            "memory", memory_bytes, usage, f"needed more than {memory_bytes / 2**20:.0f} MB of memory"
        )
    _, exc, text = payload
    if exc is None:
        raise ChildFailed(text)
    raise exc from ChildFailed(text)

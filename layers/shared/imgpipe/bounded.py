"""Run a call in a forked child under a CPU-time and a memory limit; the result comes back over a pipe.

The backstop for decode costs nobody listed: whatever a file makes the decoders do, the child
is stopped after `cpu_seconds` of CPU (all threads) or refused memory past `memory_bytes` above
what it started with, and the parent gets an `Overrun` instead of a hang or an OOM-killed
sandbox; a crash in a C library kills the child, not the processor. Forking is what Lambda
allows (it has no /dev/shm, so no multiprocessing queues); the child shares the warm process's
pages copy-on-write, so nothing is imported twice.

Two forms, the same limits per call:
- `call(fn)`: a fresh child per call, forked, run once, exited. Costs 7-13 ms of CPU per call
  on this machine (fork and exit ~2 ms, the rest the fresh process touching its pages), which
  was +10-21% on a 2-12 MP JPEG upload.
- `run(fn, payload, *args)`: a child kept for up to `MAX_CALLS` calls of `fn`, the payload
  written into memory shared before its fork and read there in place (one copy, no pipe), so
  the fork and the fresh pages are paid once per `MAX_CALLS` uploads instead of once per upload:
  at most +2.7% of CPU against decoding in-process (bench/README.md has the measurements). It is
  retired - killed and reaped, a new one forked on the next call - after any call that did not
  return normally (an exception, a rejection, an overrun, a crash), after `MAX_CALLS` calls,
  when it kept more memory than `RETAINED_SHARE` of the next call's budget, when the payload
  outgrows its shared buffer, when it died while idle, and when a global of a module it runs has
  been rebound since its fork (a reload, a test's monkeypatch), so it never runs code the parent
  would not. What it gives up against a fresh child is a fresh address space per upload.

Limits, per call: ITIMER_PROF (process CPU time, sub-second, SIGPROF ends the child) with
RLIMIT_CPU's soft limit one second later (counted from the child's CPU time so far) as a second
line; RLIMIT_DATA's soft limit (private writable memory: heap, anonymous mappings, thread stacks)
at the child's size at its fork plus `memory_bytes`, so an allocation past it fails (MemoryError
in Python, an error return in C) instead of growing. The
parent watches too, from outside: a child past its CPU budget by a second (its signals blocked)
or making no progress at all for `STUCK_SECONDS` (a deadlock) is killed.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import gc
import math
import mmap
import operator
import os
import pickle
import resource
import select
import signal
import struct
import sys
import threading
import time
import traceback
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

# Calls one kept child serves before it is replaced: the fork and fresh pages (~10 ms) spread
# over 50 uploads cost ~0.2 ms each, and no child lives on for long in a busy sandbox.
MAX_CALLS = 50
# A child that used no CPU for this long while it owed an answer is stuck (a lock held at fork).
STUCK_SECONDS = 10.0
# Past its budget by this much, the parent kills a child its own limits did not stop.
CPU_WATCHDOG_SLACK = 1.0
# A kept child is replaced when the memory it kept from earlier calls (freed, mapped, counted by
# RLIMIT_DATA) is more than this share of the next call's budget. Budgets are about twice what
# the worst honest format needs (imaging.decode_budget), so the other half is fresh room enough
# even if nothing kept could be reused: a same-size upload keeps its child (a 12 MP PNG keeps
# ~80 MB of a 315 MB budget), a small one after a big one gets a fresh child.
RETAINED_SHARE = 0.5
_MIN_SHARED = 1 << 20
# Larger payloads go to a fresh child, which reads the one the parent holds instead of a second
# copy in shared memory: their decode takes seconds, the fork ~10 ms. 32 MiB is above the
# default upload cap (25 MiB), so in production every upload takes the kept child; the bench's
# 97 MB 48 MP PNG peaked at 422 MB through it, ~320 MB through a fresh child.
SHARED_LIMIT = 32 << 20


@dataclass(frozen=True)
class Usage:
    """What the child used for one call, from the kernel's accounting of it."""

    cpu_seconds: float  # user + system, all threads
    peak_above_parent: int  # bytes: the child's peak RSS minus its RSS at fork (the parent's)


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


class _Gone(Exception):
    """A kept child was no longer there to take a request."""


_CPU_SIGNALS = {signal.SIGPROF, signal.SIGXCPU, signal.SIGKILL}
_LENGTH = struct.Struct("<Q")
# A kept child's request: payload bytes, pickled-arguments bytes, CPU seconds, memory bytes.
_REQUEST = struct.Struct("<QQdQ")


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def _data_bytes() -> int:
    """This process's private writable memory (VmData), the quantity RLIMIT_DATA limits."""
    return _status_kb("VmData:") * 1024


def rss_bytes() -> int:
    """This process's resident set size now."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cpu_clock(pid: int) -> int:
    """The clock id of another process's CPU time (all threads), as clock_getcpuclockid makes
    it: exact, where /proc/PID/stat counts whole ticks."""
    return ((~pid) << 3) | 2


def _reset_peak() -> None:
    """Start this process's peak RSS (VmHWM) afresh, so a kept child reports each call's own."""
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def _read_exact(fd: int, size: int) -> bytes | None:
    """`size` bytes from `fd`, or None at end of input before any."""
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = os.readv(fd, [view[got:]])
        if n == 0:
            if got == 0:
                return None
            raise EOFError(f"{got} of {size} bytes")
        got += n
    return bytes(buf)


def _write_all(fd: int, blob: bytes) -> None:
    view = memoryview(blob)
    while view:
        view = view[os.write(fd, view) :]


# --- the child ------------------------------------------------------------------------------


def _set_soft(limit: int, soft: int) -> None:
    _, hard = resource.getrlimit(limit)
    resource.setrlimit(limit, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))


def _limited(call: Callable[[], Any], cpu_seconds: float, memory_bytes: int, base: tuple[int, int]) -> bytes:
    """Run `call` under the limits, `base` being the child's (VmData, RSS) at its fork; the
    pickled answer for the parent, with the call's usage and the private memory kept after it."""
    base_data, base_rss = base
    cpu_before = _own_cpu()
    _reset_peak()
    _set_soft(resource.RLIMIT_DATA, base_data + memory_bytes)
    _set_soft(resource.RLIMIT_CPU, math.ceil(cpu_before + cpu_seconds) + 1)
    signal.setitimer(signal.ITIMER_PROF, cpu_seconds)
    try:
        payload: tuple[Any, ...] = ("ok", call())
    except MemoryError:
        payload = ("memory",)
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent, re-raised there
        payload = ("raised", exc, traceback.format_exc())
    signal.setitimer(signal.ITIMER_PROF, 0)
    usage = Usage(_own_cpu() - cpu_before, max(0, _status_kb("VmHWM:") * 1024 - base_rss))
    retained = max(0, _data_bytes() - base_data)
    try:
        return pickle.dumps((*payload, usage, retained), protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError):
        text = payload[2] if payload[0] == "raised" else repr(payload)
        return pickle.dumps(("raised", None, text, usage, retained))


def _close_inherited(keep: set[int]) -> None:
    """Close what the child inherited besides stdio and `keep`: a long-lived child holding the
    parent's sockets would keep them open after the parent closes them (no FIN to the peer)."""
    try:
        fds = sorted(int(name) for name in os.listdir("/proc/self/fd"))
    except OSError:
        return
    for fd in fds:
        if fd > 2 and fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)


def _start_child() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    signal.signal(signal.SIGPROF, signal.SIG_DFL)


def _fork() -> int:
    with warnings.catch_warnings():
        # Python warns that forking a process with threads may deadlock the child on a lock
        # another thread held. The child only runs the imaging core (no logging, no network,
        # no locks of the parent's threads); the parent's STUCK_SECONDS watch is the backstop.
        warnings.simplefilter("ignore", DeprecationWarning)
        # The parent's objects out of the child's collections: a collection would write to every
        # tracked object's header and copy every page holding one.
        gc.freeze()
        pid = os.fork()
    if pid != 0:
        gc.unfreeze()
    return pid


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def _keep_freed_memory() -> None:
    """Let a kept child reuse the pages it freed instead of giving them back and faulting them in
    again on the next call: glibc's heap keeps up to 256 MB of free memory at its top, and blocks
    up to 32 MB (all of Pillow's) come from that heap rather than from a fresh mmap each. Measured
    in the kept child: 1,042 -> 4 page faults per 2 MP JPEG (66 -> 63 ms of CPU), 14,343 -> 4 per
    12 MP PNG (664 -> 640 ms). What it keeps counts against each call's RLIMIT_DATA and retires
    the child when large (RETAINED_SHARE). No-op without glibc."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    mallopt(_M_MMAP_THRESHOLD, 32 << 20)
    mallopt(_M_TRIM_THRESHOLD, 256 << 20)


def _serve(fn: Callable[..., Any], shared: mmap.mmap, requests: int, replies: int) -> NoReturn:
    """A kept child's loop: one request, one answer, until the parent closes the pipe. `fn` gets
    the payload as a memoryview of the shared pages (bytes in a fresh child from call())."""
    try:
        _close_inherited({requests, replies})
        _start_child()
        _keep_freed_memory()
        base = _data_bytes(), rss_bytes()
        while (header := _read_exact(requests, _REQUEST.size)) is not None:
            size, args_size, cpu_seconds, memory_bytes = _REQUEST.unpack(header)
            args = pickle.loads(_read_exact(requests, args_size) or b"")  # noqa: S301 - our parent's
            # The payload in place: a view of the shared pages, not a copy of them (never released
            # by hand: the mapping lives as long as this process, whatever still refers to it).
            blob = _limited(
                functools.partial(fn, memoryview(shared)[:size], *args), cpu_seconds, memory_bytes, base
            )
            _write_all(replies, _LENGTH.pack(len(blob)) + blob)
    finally:
        os._exit(0)


# --- the parent -----------------------------------------------------------------------------


def _await_answer(pid: int, fd: int, cpu_seconds: float, cpu_before: float) -> tuple[Any, ...] | str:
    """The child's unpickled answer, or why there is none ("cpu", "stuck" or "gone": the child
    died or was killed; reap it to learn how)."""
    clock = _cpu_clock(pid)
    poll = select.poll()
    poll.register(fd, select.POLLIN | select.POLLHUP)
    last_cpu, last_progress = cpu_before, time.monotonic()
    while not poll.poll(1000):
        # Nothing for a second: is the child still within its budget, and still running?
        try:
            used = time.clock_gettime(clock)
        except OSError:
            break  # gone already: reading the pipe says so
        now = time.monotonic()
        if used - cpu_before > cpu_seconds + CPU_WATCHDOG_SLACK:
            os.kill(pid, signal.SIGKILL)
            return "cpu"
        if used > last_cpu:
            last_cpu, last_progress = used, now
        elif now - last_progress > STUCK_SECONDS:
            os.kill(pid, signal.SIGKILL)
            return "stuck"
    header = _read_exact(fd, _LENGTH.size)
    if header is None:
        return "gone"
    blob = _read_exact(fd, _LENGTH.unpack(header)[0])
    answer: tuple[Any, ...] = pickle.loads(blob or b"")  # noqa: S301 - our own child's bytes, over our own pipe
    return answer


def _outcome(answer: tuple[Any, ...], cpu_seconds: float, memory_bytes: int) -> Any:
    """The result an answer carries, or the exception it stands for, raised."""
    kind, usage = answer[0], answer[-2]
    if kind == "ok":
        return answer[1]
    if kind == "memory":
        raise Overrun(
            "memory", memory_bytes, usage, f"needed more than {memory_bytes / 2**20:.0f} MB of memory"
        )
    _, exc, text = answer[:3]
    if exc is None:
        raise ChildFailed(text)
    raise exc from ChildFailed(text)


def _died(
    why: str,
    status: int,
    rusage: resource.struct_rusage,
    cpu_before: float,
    base_rss: int,
    cpu_seconds: float,
) -> Exception:
    """What a child that did not answer died of, as the exception to raise."""
    usage = Usage(rusage.ru_utime + rusage.ru_stime - cpu_before, max(0, rusage.ru_maxrss * 1024 - base_rss))
    if why == "cpu" or (os.WIFSIGNALED(status) and os.WTERMSIG(status) in _CPU_SIGNALS and why != "stuck"):
        return Overrun("cpu", cpu_seconds, usage, f"needed more than {cpu_seconds:.1f} s of CPU time")
    if why == "stuck":
        return ChildFailed(f"the decoding child made no progress for {STUCK_SECONDS:.0f} s and was killed")
    if os.WIFSIGNALED(status):
        return ChildCrashed(os.WTERMSIG(status))
    return ChildFailed(f"the decoding child exited ({os.waitstatus_to_exitcode(status)}) without a result")


def call(fn: Callable[[], Any], *, cpu_seconds: float, memory_bytes: int) -> Any:
    """fn() run in a fresh forked child under the limits: its result, or the exception it raised
    (re-raised here), or Overrun / ChildCrashed."""
    base_rss = rss_bytes()
    read_end, write_end = os.pipe()
    pid = _fork()
    if pid == 0:  # pragma: no cover - the child's coverage is not collected
        try:
            os.close(read_end)
            _start_child()
            blob = _limited(fn, cpu_seconds, memory_bytes, (_data_bytes(), base_rss))
            _write_all(write_end, _LENGTH.pack(len(blob)) + blob)
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        answer = _await_answer(pid, read_end, cpu_seconds, 0.0)
    finally:
        os.close(read_end)
        _, status, rusage = os.wait4(pid, 0)
    if isinstance(answer, str):
        raise _died(answer, status, rusage, 0.0, base_rss, cpu_seconds)
    return _outcome(answer, cpu_seconds, memory_bytes)


def _package_modules(fn: Callable[..., Any]) -> tuple[types.ModuleType, ...]:
    """fn's module and the modules of its package it imports: the code a kept child runs."""
    home = sys.modules.get(getattr(fn, "__module__", "") or "")
    if home is None:
        return ()
    package = home.__name__.partition(".")[0]
    imported = (
        value
        for value in vars(home).values()
        if isinstance(value, types.ModuleType) and value.__name__.partition(".")[0] == package
    )
    return (home, *(module for module in imported if module is not home))


def _code_state(modules: tuple[types.ModuleType, ...]) -> tuple[object, ...]:
    """Every global of `modules`, to compare by identity: a rebound name (a reload, a
    monkeypatch) shows; holding the values keeps their ids from being reused meanwhile."""
    return tuple(value for module in modules for value in (*vars(module).keys(), *vars(module).values()))


def _same(a: tuple[object, ...], b: tuple[object, ...]) -> bool:
    return len(a) == len(b) and all(map(operator.is_, a, b))


class _Kept:
    """One kept child: its pid, its pipes, the buffer shared with it, what it was forked with."""

    def __init__(self, fn: Callable[..., Any], capacity: int) -> None:
        self.fn = fn
        self.owner = os.getpid()
        self.calls = 0
        self.retained = 0  # bytes of private memory the child kept after its last call
        self.cpu = 0.0  # the child's CPU time so far, as it last said
        self.modules = _package_modules(fn)
        self.code = _code_state(self.modules)
        self.reaped: tuple[int, resource.struct_rusage] | None = None  # (status, usage) once closed
        self.shared = mmap.mmap(-1, capacity)
        self.base_rss = rss_bytes()
        requests_read, self.requests = os.pipe()
        self.replies, replies_write = os.pipe()
        self.pid = _fork()
        if self.pid == 0:  # pragma: no cover - the child's coverage is not collected
            _serve(fn, self.shared, requests_read, replies_write)
        os.close(requests_read)
        os.close(replies_write)

    def suits(self, fn: Callable[..., Any], size: int, memory_bytes: int) -> bool:
        return (
            fn is self.fn
            and self.owner == os.getpid()
            and self.calls < MAX_CALLS
            and size <= len(self.shared)
            and self.retained <= memory_bytes * RETAINED_SHARE
            and _same(_code_state(self.modules), self.code)
            and self.alive()
        )

    def alive(self) -> bool:
        """False once the child has died (killed from outside while idle); reaps it then."""
        pid, status, rusage = os.wait4(self.pid, os.WNOHANG)
        if pid == 0:
            return True
        self.reaped = status, rusage
        return False

    def run(self, payload: bytes, args: tuple[Any, ...], cpu_seconds: float, memory_bytes: int) -> Any:
        """The child's answer to one call; raises what a child that did not answer died of."""
        self.shared[: len(payload)] = payload
        blob = pickle.dumps(args, protocol=pickle.HIGHEST_PROTOCOL)
        request = _REQUEST.pack(len(payload), len(blob), cpu_seconds, memory_bytes) + blob
        try:
            _write_all(self.requests, request)
        except BrokenPipeError:
            raise _Gone from None  # died while idle (killed from outside): nothing of this call ran
        self.calls += 1
        answer = _await_answer(self.pid, self.replies, cpu_seconds, self.cpu)
        if isinstance(answer, str):
            status, rusage = self.close()
            raise _died(answer, status, rusage, self.cpu, self.base_rss, cpu_seconds)
        usage: Usage = answer[-2]
        self.cpu += usage.cpu_seconds
        self.retained = answer[-1]
        return answer

    def close(self) -> tuple[int, resource.struct_rusage]:
        """Kill and reap the child (an idle child holds nothing worth waiting for); once."""
        if not self.shared.closed:
            os.close(self.requests)
            os.close(self.replies)
            self.shared.close()
        if self.reaped is None:
            if self.owner != os.getpid():  # a copy inherited by a forked process: not ours to reap
                self.reaped = 0, resource.getrusage(resource.RUSAGE_SELF)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                _, status, rusage = os.wait4(self.pid, 0)
                self.reaped = status, rusage
        return self.reaped


class _Keeper:
    """The process's one kept child (a Lambda runs one upload at a time per process)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.kept: _Kept | None = None

    def retire(self) -> None:
        if self.kept is not None:
            kept, self.kept = self.kept, None
            kept.close()


_keeper = _Keeper()
atexit.register(_keeper.retire)  # reaped, not orphaned: its usage reaches whoever waits for us


def run(fn: Callable[..., Any], payload: bytes, *args: Any, cpu_seconds: float, memory_bytes: int) -> Any:
    """fn(payload, *args) under the limits in a kept child (see the module's docstring): its
    result, or the exception it raised (re-raised here), or Overrun / ChildCrashed. `fn` gets
    the payload as a memoryview of memory shared with this process (bytes in a fresh child: when
    the payload is over SHARED_LIMIT or another thread's call holds the kept child), `args`
    pickled; `fn` and the code it runs are the child's copy from its fork."""
    if len(payload) > SHARED_LIMIT or not _keeper.lock.acquire(blocking=False):
        # Too big to copy, or another thread's call holds the kept child: a fresh child.
        return call(lambda: fn(payload, *args), cpu_seconds=cpu_seconds, memory_bytes=memory_bytes)
    try:
        for _attempt in range(2):
            kept = _keeper.kept
            if kept is None or not kept.suits(fn, len(payload), memory_bytes):
                _keeper.retire()
                capacity = max(_MIN_SHARED, 1 << (len(payload) - 1).bit_length())
                kept = _keeper.kept = _Kept(fn, capacity)
            try:
                answer = kept.run(payload, args, cpu_seconds, memory_bytes)
            except _Gone:
                _keeper.retire()  # and once more, in a fresh child
                continue
            except BaseException:
                _keeper.retire()  # it died (reaped already), or an interrupt came mid-call
                raise
            if answer[0] != "ok" or kept.calls >= MAX_CALLS:
                _keeper.retire()
            return _outcome(answer, cpu_seconds, memory_bytes)
        raise ChildFailed("the decoding child died before reading its request, twice")
    finally:
        _keeper.lock.release()


def retire_kept_child() -> None:
    """Kill and reap the kept child now (the next run() forks a new one): its CPU time and
    peak RSS then show in this process's RUSAGE_CHILDREN, as every fresh child's do."""
    with _keeper.lock:
        _keeper.retire()


def kept_child_cpu_seconds() -> float:
    """CPU time the kept child has used so far (0.0 without one). A process's own rusage counts
    only reaped children; add this to account for all of its decoding (the bench does)."""
    kept = _keeper.kept
    if kept is None or kept.owner != os.getpid():
        return 0.0
    try:
        return time.clock_gettime(_cpu_clock(kept.pid))
    except OSError:
        return 0.0

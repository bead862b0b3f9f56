"""The decode backstop: a call in a forked child under CPU and memory limits (imgpipe.bounded)."""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from imgpipe import bounded

# ITIMER_PROF fires on the scheduler tick after the limit; the kernel's accounting of the child
# then says how far past it the child got. Generous: a bound, not a benchmark.
CPU_SLACK_SECONDS = 0.3


def _spin() -> None:
    while True:
        pass


def test_the_result_comes_back_over_the_pipe() -> None:
    big = bytes(range(256)) * 8192  # 2 MB: more than a pipe buffer
    assert bounded.call(lambda: (big, {"n": 1}), cpu_seconds=5, memory_bytes=64 << 20) == (big, {"n": 1})


def test_an_exception_is_re_raised_with_the_childs_traceback() -> None:
    def fail() -> None:
        raise KeyError("in the child")

    with pytest.raises(KeyError) as caught:
        bounded.call(fail, cpu_seconds=5, memory_bytes=64 << 20)
    assert isinstance(caught.value.__cause__, bounded.ChildFailed)
    assert "in fail" in str(caught.value.__cause__)


def test_cpu_time_is_bounded() -> None:
    with pytest.raises(bounded.Overrun) as caught:
        bounded.call(_spin, cpu_seconds=0.3, memory_bytes=64 << 20)
    assert caught.value.resource == "cpu"
    # The kernel's account of the child, not a wall clock: it stopped at its budget.
    assert 0.25 <= caught.value.usage.cpu_seconds <= 0.3 + CPU_SLACK_SECONDS


def test_cpu_time_counts_every_thread() -> None:
    import threading

    def spin_in_threads() -> None:
        for _ in range(2):
            threading.Thread(target=_spin, daemon=True).start()
        _spin()

    with pytest.raises(bounded.Overrun) as caught:
        bounded.call(spin_in_threads, cpu_seconds=0.4, memory_bytes=256 << 20)
    assert caught.value.usage.cpu_seconds <= 0.4 + CPU_SLACK_SECONDS


def test_memory_is_bounded() -> None:
    def hoard() -> list[bytes]:
        return [os.urandom(1) * (1 << 20) for _ in range(1024)]  # 1 GB, 1 MB at a time

    with pytest.raises(bounded.Overrun) as caught:
        bounded.call(hoard, cpu_seconds=10, memory_bytes=64 << 20)
    assert caught.value.resource == "memory"
    assert caught.value.usage.peak_above_parent <= (64 + 8) << 20


def test_one_large_allocation_is_refused_not_made() -> None:
    with pytest.raises(bounded.Overrun) as caught:
        bounded.call(lambda: bytearray(512 << 20), cpu_seconds=10, memory_bytes=64 << 20)
    assert caught.value.resource == "memory"
    assert caught.value.usage.peak_above_parent < 16 << 20


def test_a_crash_in_the_child_leaves_the_parent_standing() -> None:
    def crash() -> None:
        faulthandler.disable()  # pytest's stack dump on SIGSEGV would be inherited: noise here
        os.kill(os.getpid(), signal.SIGSEGV)

    with pytest.raises(bounded.ChildCrashed) as caught:
        bounded.call(crash, cpu_seconds=5, memory_bytes=64 << 20)
    assert caught.value.signum == signal.SIGSEGV


def test_an_unpicklable_result_is_a_failure_not_a_hang() -> None:
    with pytest.raises(bounded.ChildFailed):
        bounded.call(lambda: lambda: None, cpu_seconds=5, memory_bytes=64 << 20)


def test_limits_stay_in_the_child() -> None:
    import resource

    before = resource.getrlimit(resource.RLIMIT_DATA), resource.getrlimit(resource.RLIMIT_CPU)
    bounded.call(lambda: None, cpu_seconds=1, memory_bytes=64 << 20)
    assert (resource.getrlimit(resource.RLIMIT_DATA), resource.getrlimit(resource.RLIMIT_CPU)) == before
    assert signal.getitimer(signal.ITIMER_PROF) == (0.0, 0.0)


# --- the kept child: bounded.run -------------------------------------------------------------

GREETING = "hello"


def _whoami(payload: bytes, tag: str = "") -> tuple[int, int, str, str]:
    return os.getpid(), len(payload), tag, GREETING


def _spin_for(payload: bytes, seconds: float) -> int:
    import time

    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
    return os.getpid()


def _fail(payload: bytes) -> None:
    raise KeyError("in the kept child")


def _crash(payload: bytes) -> None:
    faulthandler.disable()
    os.kill(os.getpid(), signal.SIGSEGV)


def _sleep_forever(payload: bytes) -> None:
    import time

    time.sleep(3600)


def _spin_deaf(payload: bytes) -> None:
    # Deaf to its own limits' signals: only the parent's watch can stop it.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGPROF, signal.SIGXCPU})
    _spin()


def _run[T](
    fn: Callable[..., T], payload: bytes = b"x", *args: object, cpu: float = 5, memory: int = 64 << 20
) -> T:
    result: T = bounded.run(fn, payload, *args, cpu_seconds=cpu, memory_bytes=memory)
    return result


@pytest.fixture(autouse=True)
def _no_kept_child_between_tests() -> Iterator[None]:
    bounded._keeper.retire()
    yield
    bounded._keeper.retire()


def test_the_kept_child_serves_several_calls_with_the_payload_in_shared_memory() -> None:
    big = os.urandom(3 << 20)  # more than the pipe buffer, less than the first shared buffer
    first = _run(_whoami, big, "one")
    second = _run(_whoami, b"small", "two")
    assert first == (first[0], len(big), "one", "hello")
    assert second == (first[0], 5, "two", "hello")
    assert first[0] != os.getpid()


def _payload_kind(payload: bytes) -> tuple[str, bytes]:
    return type(payload).__name__, bytes(payload[:3])


def test_the_kept_child_reads_the_payload_in_place() -> None:
    # A view of the pages the parent wrote, not a copy of them.
    assert _run(_payload_kind, b"abcdef") == ("memoryview", b"abc")


def test_a_payload_over_the_shared_limit_goes_to_a_fresh_child(monkeypatch: pytest.MonkeyPatch) -> None:
    kept = _run(_whoami)[0]
    monkeypatch.setattr(bounded, "SHARED_LIMIT", 1 << 20)
    # It reads the bytes the parent holds (no second copy), in a child of its own
    assert _run(_payload_kind, b"x" * (2 << 20)) == ("bytes", b"xxx")
    assert _run(_whoami, b"y" * (2 << 20))[0] not in (kept, os.getpid())
    # and the kept child stays for smaller ones
    assert _run(_whoami, b"small")[0] == kept


def test_a_payload_larger_than_the_shared_buffer_gets_a_child_with_a_bigger_one() -> None:
    small = _run(_whoami, b"x" * 1000)
    large = _run(_whoami, b"y" * (5 << 20))
    assert large[1] == 5 << 20
    assert large[0] != small[0]


def test_the_kept_child_is_retired_after_a_call_that_did_not_return(monkeypatch: pytest.MonkeyPatch) -> None:
    before = _run(_whoami)
    with pytest.raises(KeyError) as caught:
        _run(_fail)
    assert "in _fail" in str(caught.value.__cause__)
    assert _run(_whoami)[0] != before[0]


def test_the_kept_child_is_retired_after_max_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bounded, "MAX_CALLS", 3)
    pids = [_run(_whoami)[0] for _ in range(4)]
    assert len(set(pids[:3])) == 1
    assert pids[3] != pids[0]


def test_the_kept_child_never_runs_code_the_parent_has_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a kept child forked while GREETING was "hello"
    assert _run(_whoami)[3] == "hello"
    # When the parent's module changes (a reload, a monkeypatch)
    monkeypatch.setattr(sys.modules[__name__], "GREETING", "bonjour")
    # Then the next call runs in a child forked from the changed parent
    assert _run(_whoami)[3] == "bonjour"


def _spin_or_hoard(payload: bytes, spin_seconds: float, hoard_mb: int) -> int:
    _spin_for(payload, spin_seconds)
    kept = [os.urandom(1) * (1 << 20) for _ in range(hoard_mb)]
    del kept
    return os.getpid()


def test_cpu_time_is_bounded_per_call_in_the_kept_child() -> None:
    # Given a kept child that already used 0.3 s of CPU on an earlier call
    pid = _run(_spin_or_hoard, b"x", 0.3, 0, cpu=2)
    assert _run(_spin_or_hoard, b"x", 0.0, 0) == pid
    # When a call with a 0.3 s budget spins
    with pytest.raises(bounded.Overrun) as caught:
        _run(_spin_or_hoard, b"x", 1000.0, 0, cpu=0.3)
    # Then it is stopped at its own budget, not at the child's total
    assert caught.value.resource == "cpu"
    assert 0.25 <= caught.value.usage.cpu_seconds <= 0.3 + CPU_SLACK_SECONDS


def test_memory_is_bounded_per_call_in_the_kept_child() -> None:
    # Given a kept child that already held 16 MB on an earlier call
    pid = _run(_spin_or_hoard, b"x", 0.0, 16, memory=64 << 20)
    assert _run(_spin_or_hoard, b"x", 0.0, 0, memory=64 << 20) == pid
    # When a call with a 64 MB budget hoards a gigabyte
    with pytest.raises(bounded.Overrun) as caught:
        _run(_spin_or_hoard, b"x", 0.0, 1024, memory=64 << 20)
    # Then it is refused at its own budget
    assert caught.value.resource == "memory"
    assert caught.value.usage.peak_above_parent <= (64 + 8) << 20
    assert _run(_spin_or_hoard, b"x", 0.0, 0) != pid


def test_a_crash_in_the_kept_child_leaves_the_parent_standing_and_the_next_call_working() -> None:
    with pytest.raises(bounded.ChildCrashed) as caught:
        _run(_crash)
    assert caught.value.signum == signal.SIGSEGV
    assert _run(_whoami)[3] == "hello"


def test_a_child_deaf_to_its_cpu_limits_is_killed_by_the_parent() -> None:
    with pytest.raises(bounded.Overrun) as caught:
        _run(_spin_deaf, cpu=0.3)
    assert caught.value.resource == "cpu"
    # The parent looks once a second: killed within a second or two past budget + slack.
    assert caught.value.usage.cpu_seconds <= 0.3 + bounded.CPU_WATCHDOG_SLACK + 1.0 + CPU_SLACK_SECONDS


def test_a_kept_child_killed_while_idle_is_replaced_without_losing_the_call() -> None:
    pid = _run(_whoami)[0]
    os.kill(pid, signal.SIGKILL)  # the OOM killer, say, between two uploads
    while Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        os.sched_yield()  # until it is dead (a zombie its parent has not reaped)
    again = _run(_whoami, b"abc", "after")
    assert again[1:3] == (3, "after")
    assert again[0] != pid


def test_a_stuck_child_is_killed_not_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bounded, "STUCK_SECONDS", 1.0)
    with pytest.raises(bounded.ChildFailed, match="no progress"):
        _run(_sleep_forever)


def test_the_kept_child_does_not_hold_the_parents_sockets_open() -> None:
    import socket

    # Given a connection open in the parent when the kept child is forked
    ours, peer = socket.socketpair()
    _run(_whoami)
    # When the parent closes it
    ours.close()
    # Then the peer sees the end of the stream (no copy of it lives on in the child)
    peer.settimeout(5)
    assert peer.recv(1) == b""
    peer.close()


def test_a_second_thread_gets_a_fresh_child_while_the_kept_one_is_busy() -> None:
    import threading

    kept = _run(_whoami)[0]
    results: list[tuple[int, int, str, str]] = []
    with bounded._keeper.lock:  # as if another thread's call were running
        thread = threading.Thread(target=lambda: results.append(_run(_whoami, b"abc", "thread")))
        thread.start()
        thread.join()
    pid, size, tag, _ = results[0]
    assert (size, tag) == (3, "thread")
    assert pid not in (kept, os.getpid())


def test_the_kept_childs_cpu_time_is_visible_to_the_parent() -> None:
    before = bounded.kept_child_cpu_seconds()
    _run(_spin_for, b"x", 0.2, cpu=2)
    assert bounded.kept_child_cpu_seconds() >= before + 0.2


def test_limits_stay_in_the_kept_child() -> None:
    import resource

    before = resource.getrlimit(resource.RLIMIT_DATA), resource.getrlimit(resource.RLIMIT_CPU)
    _run(_whoami, cpu=1)
    assert (resource.getrlimit(resource.RLIMIT_DATA), resource.getrlimit(resource.RLIMIT_CPU)) == before
    assert signal.getitimer(signal.ITIMER_PROF) == (0.0, 0.0)

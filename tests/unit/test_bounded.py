"""The decode backstop: a call in a forked child under CPU and memory limits (imgpipe.bounded)."""

from __future__ import annotations

import faulthandler
import os
import signal

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

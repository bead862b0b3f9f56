"""Functions run as Lambda runs them: a process per environment, Timeout and MemorySize enforced."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from imgpipe_local import template
from imgpipe_local.workers import FunctionError, Runtime, aws_environment
from tests.integration.local_support import write_project

TEMPLATE = """\
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Runtime: python3.13
    Handler: app.lambda_handler
    CodeUri: probe
Resources:
  Small:
    Type: AWS::Serverless::Function
    Properties:
      Timeout: 1
      MemorySize: 128
      Environment:
        Variables:
          ROLE: small
  Large:
    Type: AWS::Serverless::Function
    Properties:
      Timeout: 5
      MemorySize: 512
  Single:
    Type: AWS::Serverless::Function
    Properties:
      ReservedConcurrentExecutions: 1
  Broken:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: broken
"""

# Does what the event asks, and says where it ran.
PROBE = """\
import os
import sys
import time

STARTED = time.time()


def lambda_handler(event, context):
    action = event.get("do")
    if action == "sleep":
        time.sleep(event["seconds"])
    elif action == "allocate":
        block = bytearray(event["mb"] * 2**20)
        block[::4096] = b"x" * len(block[::4096])  # touched, as real data would be
    elif action == "meet":
        # Wait (within the Timeout) until `peers` invocations are running at once.
        open(os.path.join(event["dir"], str(os.getpid())), "w").close()
        while len(os.listdir(event["dir"])) < event["peers"]:
            if context.get_remaining_time_in_millis() < 500:
                raise TimeoutError("the other invocations never ran alongside this one")
            time.sleep(0.01)
    elif action == "echo":
        return event
    elif action == "raise":
        raise ValueError("asked to fail")
    elif action == "print":
        print("a line on stdout")
        print("a line on stderr", file=sys.stderr)
    elif action == "aws":
        import boto3
        seen = []

        def record(seconds):
            seen.append(seconds)
            raise ConnectionAbortedError("stop before the network")

        time.sleep = record
        try:
            boto3.client("s3", endpoint_url="http://127.0.0.1:9").list_buckets()
        except ConnectionAbortedError:
            pass
        return {"waits": seen}
    return {
        "pid": os.getpid(),
        "since": STARTED,
        "env": {k: os.environ.get(k) for k in (
            "ROLE", "IMGPIPE_HOST_ONLY", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        },
        "remaining_ms": context.get_remaining_time_in_millis(),
    }
"""


def load(tmp_path: Path) -> template.LocalTemplate:
    path = write_project(tmp_path, TEMPLATE, {"probe": PROBE, "broken": "import no_such_module\n"})
    return template.load(path, {})


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    runtime = Runtime(load(tmp_path).functions, aws_environment(None), output=io.StringIO())
    yield runtime
    runtime.stop()


def test_a_function_runs_in_its_own_process_with_only_its_environment(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMGPIPE_HOST_ONLY", "secret")

    reply = runtime.invoke("Small", {})

    assert reply["pid"] != os.getpid()
    assert reply["env"] == {
        "ROLE": "small",
        "IMGPIPE_HOST_ONLY": None,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
    }
    assert 0 < reply["remaining_ms"] <= 1000


def test_a_handler_that_sleeps_past_its_timeout_is_stopped_and_reported(runtime: Runtime) -> None:
    before = runtime.invoke("Small", {})

    with pytest.raises(FunctionError) as timed_out:
        runtime.invoke("Small", {"do": "sleep", "seconds": 30})
    after = runtime.invoke("Small", {})

    assert timed_out.value.error_type == "Sandbox.Timedout"
    assert str(timed_out.value).endswith("Error: Task timed out after 1.00 seconds")
    # The environment that overran was replaced: the next invocation is a cold start elsewhere.
    assert after["pid"] != before["pid"]
    assert runtime.pools["Small"].loads == 2


def test_memory_size_caps_what_a_handler_can_allocate(runtime: Runtime) -> None:
    before = runtime.invoke("Small", {})

    with pytest.raises(FunctionError) as out_of_memory:
        runtime.invoke("Small", {"do": "allocate", "mb": 256})
    within_a_bigger_function = runtime.invoke("Large", {"do": "allocate", "mb": 256})
    after = runtime.invoke("Small", {})

    assert out_of_memory.value.error_type == "Runtime.OutOfMemory"
    assert within_a_bigger_function["env"]["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "512"
    assert after["pid"] != before["pid"]


def test_an_allocation_within_memory_size_succeeds(runtime: Runtime) -> None:
    assert runtime.invoke("Small", {"do": "allocate", "mb": 64})["pid"]


def test_a_function_error_keeps_the_worker_warm(runtime: Runtime) -> None:
    before = runtime.invoke("Small", {})

    with pytest.raises(FunctionError) as failed:
        runtime.invoke("Small", {"do": "raise"})
    after = runtime.invoke("Small", {})

    assert failed.value.error_type == "ValueError"
    assert str(failed.value) == "asked to fail"
    assert any("asked to fail" in line for line in failed.value.payload["stackTrace"])
    assert after["pid"] == before["pid"]
    assert after["since"] == before["since"]


def test_concurrent_invocations_get_separate_workers_up_to_the_reservation(
    runtime: Runtime, tmp_path: Path
) -> None:
    meeting = tmp_path / "meeting"
    meeting.mkdir()
    meet = {"do": "meet", "dir": str(meeting), "peers": 3}

    with ThreadPoolExecutor(4) as pool:
        unreserved = list(pool.map(lambda _: runtime.invoke("Large", meet), range(3)))
        reserved = list(pool.map(lambda _: runtime.invoke("Single", {}), range(4)))

    # Three invocations ran at once (each waited for the other two), in three processes.
    assert len({reply["pid"] for reply in unreserved}) == 3
    # ReservedConcurrentExecutions: 1 -> one environment serves every invocation in turn.
    assert len({reply["pid"] for reply in reserved}) == 1
    assert runtime.pools["Single"].loads == 1


def test_events_and_results_larger_than_a_pipe_s_buffer_go_through_whole(runtime: Runtime) -> None:
    event = {"do": "echo", "payload": "x" * 3_000_000}

    assert runtime.invoke("Large", event) == event


def test_an_import_error_is_reported_as_lambda_does(runtime: Runtime) -> None:
    with pytest.raises(FunctionError) as failed:
        runtime.invoke("Broken", {})

    assert failed.value.error_type == "Runtime.ImportModuleError"
    assert "no_such_module" in str(failed.value)


def test_the_function_s_output_reaches_the_stack_s_log(tmp_path: Path) -> None:
    output = io.StringIO()
    runtime = Runtime(load(tmp_path).functions, aws_environment(None), output=output)
    try:
        runtime.invoke("Small", {"do": "print"})
    finally:
        runtime.stop()

    assert "a line on stdout\n" in output.getvalue()
    assert "a line on stderr\n" in output.getvalue()


def test_aws_latency_is_added_to_every_call_the_function_makes(tmp_path: Path) -> None:
    runtime = Runtime(load(tmp_path).functions, aws_environment(None), latency_ms=30, output=io.StringIO())
    try:
        reply = runtime.invoke("Large", {"do": "aws"})
    finally:
        runtime.stop()

    assert reply == {"waits": [0.03]}

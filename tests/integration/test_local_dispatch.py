"""S3 -> SQS -> function in the local stack: events as S3 sends them, retries, dead letters."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from imgpipe_local.stack import LocalStack
from tests.integration.local_support import RECORDER_HANDLER, TRIGGER_TEMPLATE, recorded, write_project


def inbox(stack: LocalStack) -> str:
    return f"{stack.stack_name}-inbox"


@pytest.fixture
def records(tmp_path: Path) -> Path:
    folder = tmp_path / "records"
    folder.mkdir()
    return folder


@pytest.fixture
def stack(tmp_path: Path, records: Path) -> Iterator[LocalStack]:
    write_project(tmp_path, TRIGGER_TEMPLATE, {"recorder": RECORDER_HANDLER})
    with LocalStack(
        root=tmp_path, ports=LocalStack.free_ports(), parameters={"RecordDir": str(records)}
    ) as stack:
        yield stack


def test_an_upload_reaches_the_function_as_an_s3_event(stack: LocalStack, records: Path) -> None:
    s3 = stack.client("s3")
    put = s3.put_object(Bucket=inbox(stack), Key="incoming/a b+c.txt", Body=b"hi")

    stack.wait_idle(timeout=30)

    (record,) = recorded(records)
    (event_record,) = record["event"]["Records"]
    assert event_record["eventSource"] == "aws:s3"
    assert event_record["eventName"] == "ObjectCreated:Put"
    assert event_record["s3"]["bucket"]["name"] == inbox(stack)
    # Keys arrive URL-encoded, as S3 sends them.
    assert event_record["s3"]["object"]["key"] == "incoming/a+b%2Bc.txt"
    assert event_record["s3"]["object"]["versionId"] == put["VersionId"]
    assert event_record["s3"]["object"]["size"] == 2
    assert record["endpoint"] == stack.moto_url


def test_sequencers_increase_from_one_event_to_the_next(stack: LocalStack, records: Path) -> None:
    s3 = stack.client("s3")
    for body in (b"1", b"2", b"3"):
        s3.put_object(Bucket=inbox(stack), Key="incoming/same", Body=body)
    stack.wait_idle(timeout=30)

    sequencers = [r["event"]["Records"][0]["s3"]["object"]["sequencer"] for r in recorded(records)]
    assert len(sequencers) == 3
    assert len(set(sequencers)) == 3
    assert sorted(sequencers) == sorted(sequencers, key=lambda s: int(s, 16))


def test_boto3_in_the_handler_talks_to_the_local_s3(stack: LocalStack, records: Path) -> None:
    stack.client("s3").put_object(Bucket=inbox(stack), Key="incoming/read-back", Body=b"payload")

    stack.wait_idle(timeout=30)

    (record,) = recorded(records)
    assert record["body"] == "payload"


def test_keys_outside_the_filter_trigger_nothing(stack: LocalStack, records: Path) -> None:
    stack.client("s3").put_object(Bucket=inbox(stack), Key="elsewhere/a.txt", Body=b"hi")

    stack.wait_idle(timeout=30)

    assert recorded(records) == []


def test_a_failing_event_is_retried_then_sent_to_the_dead_letter_queue(
    stack: LocalStack, records: Path
) -> None:
    stack.client("s3").put_object(Bucket=inbox(stack), Key="incoming/fail.txt", Body=b"x")

    stack.wait_idle(timeout=30)

    # MaximumRetryAttempts: 1 -> two invocations, then the on-failure destination.
    assert len(recorded(records)) == 2
    (dead,) = stack.dead_letters()
    assert dead["requestContext"]["condition"] == "RetriesExhausted"
    assert dead["requestContext"]["approximateInvokeCount"] == 2
    assert dead["requestContext"]["functionArn"].endswith(f":function:{stack.stack_name}-Recorder:$LATEST")
    assert dead["requestPayload"]["Records"][0]["s3"]["object"]["key"] == "incoming/fail.txt"
    assert dead["responsePayload"]["errorType"] == "RuntimeError"
    assert dead["responsePayload"]["errorMessage"] == "cannot process incoming/fail.txt"


def test_two_uploads_are_processed_at_once_by_separate_workers(stack: LocalStack, records: Path) -> None:
    s3 = stack.client("s3")
    for name in ("meet-1", "meet-2"):
        s3.put_object(Bucket=inbox(stack), Key=f"incoming/{name}", Body=b"x")

    stack.wait_idle(timeout=30)

    # Each invocation waited until the other one was running: they overlapped, in two processes.
    first, second = recorded(records)
    assert first["met"]
    assert second["met"]
    assert first["pid"] != second["pid"]
    assert stack.dead_letters() == []


def test_a_handler_past_its_timeout_is_stopped_retried_and_dead_lettered(
    stack: LocalStack, records: Path
) -> None:
    stack.client("s3").put_object(Bucket=inbox(stack), Key="incoming/sleep", Body=b"x")

    stack.wait_idle(timeout=60)

    assert recorded(records) == []  # stopped before it could record anything
    (dead,) = stack.dead_letters()
    assert dead["requestContext"]["approximateInvokeCount"] == 2
    assert dead["responsePayload"]["errorType"] == "Sandbox.Timedout"
    assert dead["responsePayload"]["errorMessage"].endswith("Task timed out after 3.00 seconds")


def test_a_redelivered_event_reaches_the_function_again(stack: LocalStack, records: Path) -> None:
    stack.client("s3").put_object(Bucket=inbox(stack), Key="incoming/once", Body=b"x")
    stack.wait_idle(timeout=30)
    (first,) = recorded(records)

    stack.deliver_s3_event(first["event"])
    stack.wait_idle(timeout=30)

    assert [r["event"] for r in recorded(records)] == [first["event"], first["event"]]

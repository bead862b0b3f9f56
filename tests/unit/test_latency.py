"""The AWS latency model delays every request, in the thread that sends it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest

from imgpipe_local import latency

LIST_BUCKETS = b'<?xml version="1.0"?><ListAllMyBucketsResult><Buckets></Buckets></ListAllMyBucketsResult>'


class _S3(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(LIST_BUCKETS)))
        self.end_headers()
        self.wfile.write(LIST_BUCKETS)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def s3() -> Iterator[Any]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _S3)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    yield session.client("s3", endpoint_url=f"http://127.0.0.1:{server.server_address[1]}")
    server.shutdown()
    server.server_close()


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, float]]:
    seen: list[tuple[str, float]] = []
    monkeypatch.setattr(
        latency.time, "sleep", lambda seconds: seen.append((threading.current_thread().name, seconds))
    )
    return seen


def test_every_request_waits_in_the_thread_that_sends_it(s3: Any, sleeps: list[tuple[str, float]]) -> None:
    latency.delay_calls(s3.meta.events, 25)
    with ThreadPoolExecutor(4, thread_name_prefix="caller") as pool:
        list(pool.map(lambda _: s3.list_buckets(), range(8)))
    assert len(sleeps) == 8
    assert {seconds for _, seconds in sleeps} == {0.025}
    assert all(name.startswith("caller") for name, _ in sleeps)


def test_registering_again_replaces_and_zero_removes(s3: Any, sleeps: list[tuple[str, float]]) -> None:
    latency.delay_calls(s3.meta.events, 25)
    latency.delay_calls(s3.meta.events, 50)
    s3.list_buckets()
    latency.delay_calls(s3.meta.events, 0)
    s3.list_buckets()
    assert [seconds for _, seconds in sleeps] == [0.05]

"""The local stack's Lambda API (imgpipe_local.lambda_api): boto3's Lambda client reaches the
functions' worker processes as it reaches deployed functions, and only this machine's programs may."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config

from imgpipe_local import template
from imgpipe_local.httpserver import LocalServer
from imgpipe_local.lambda_api import LambdaApi
from imgpipe_local.workers import Runtime, aws_environment
from tests.integration.local_support import api_project


class Served:
    def __init__(self, path: Path, server: LocalServer, runtime: Runtime) -> None:
        self.path, self.server, self.runtime = path, server, runtime
        self.functions = template.load(path, {"AWS::StackName": "one"}).functions

    @property
    def client(self) -> Any:
        return boto3.client(
            "lambda",
            endpoint_url=self.server.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"max_attempts": 1}),
        )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    path = api_project(tmp_path)
    server = LocalServer("web", "127.0.0.1", 0)
    loaded = template.load(path, {"AWS::StackName": "one"})
    runtime = Runtime(loaded.functions, aws_environment(None))
    served = Served(path, server, runtime)
    server.start(LambdaApi(lambda: served.functions, runtime.invoke))
    try:
        yield served
    finally:
        server.stop()
        runtime.stop()


def invoke(client: Any, name: str, payload: Any) -> tuple[dict[str, Any], Any]:
    response = client.invoke(FunctionName=name, Payload=json.dumps(payload).encode())
    return response, json.loads(response["Payload"].read())


def test_boto3_invokes_a_function_by_name_arn_or_logical_id(served: Served) -> None:
    echo = served.functions["EchoFunction"]
    for name in (echo.name, echo.arn, f"{echo.arn}:$LATEST", "EchoFunction"):
        response, result = invoke(served.client, name, {"hello": name})

        assert response["StatusCode"] == 200
        assert "FunctionError" not in response
        assert result["event"] == {"hello": name}
        assert result["function"] == echo.name  # it ran in the function's own worker


def test_a_function_error_is_reported_as_lambda_reports_it(served: Served) -> None:
    response, payload = invoke(served.client, "ReplyFunction", {"body": json.dumps("raise")})

    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "ValueError"
    assert payload["errorMessage"] == "asked to fail"


def test_an_unknown_function_is_resource_not_found(served: Served) -> None:
    client = served.client
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.invoke(FunctionName="NoSuchFunction", Payload=b"{}")


def test_the_configuration_names_the_environment_and_follows_a_stack_update(served: Served) -> None:
    before = served.client.get_function_configuration(FunctionName="one-EchoFunction")
    assert before["Environment"]["Variables"]["TABLE"] == "one-table"
    assert before["Timeout"] == 5
    _, result = invoke(served.client, "EchoFunction", {})
    assert result["env"]["TABLE"] == "one-table"

    # A stack update: new definitions, from the next invocation on
    served.functions = template.load(served.path, {"AWS::StackName": "two"}).functions
    served.runtime.update(served.functions)

    after = served.client.get_function_configuration(FunctionName="two-EchoFunction")
    assert after["Environment"]["Variables"]["TABLE"] == "two-table"
    _, result = invoke(served.client, "EchoFunction", {})
    assert result["env"]["TABLE"] == "two-table"


@pytest.mark.parametrize(
    "headers",
    [
        {},  # unsigned: curl, or a page's simple POST
        {"Authorization": "AWS4-HMAC-SHA256 Credential=x", "Origin": "http://evil.test"},  # from a page
    ],
    ids=["unsigned", "with-origin"],
)
def test_only_this_machine_s_signed_requests_invoke(served: Served, headers: dict[str, str]) -> None:
    response = requests.post(
        f"{served.server.url}/2015-03-31/functions/EchoFunction/invocations",
        data=b"{}",
        headers=headers,
        timeout=10,
    )

    assert response.status_code == 403
    assert response.headers["x-amzn-ErrorType"] == "AccessDeniedException"
    assert "Access-Control-Allow-Origin" not in response.headers
    assert served.runtime.pools["EchoFunction"].invocations == 0

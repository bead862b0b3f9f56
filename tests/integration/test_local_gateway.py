"""The local HTTP API behaves as API Gateway does: CORS, the Lambda authorizer, payload 2.0."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.local_support import (
    API_TEMPLATE,
    FakeClock,
    ServedApi,
    api_project,
    serve_api,
)

ORIGIN = "http://app.test"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ServedApi]:
    with serve_api(api_project(tmp_path)) as served:
        yield served


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Origin": ORIGIN}


# ---------------------------------------------------------------- CORS


def test_preflight_is_answered_from_the_cors_configuration_without_the_authorizer(api: ServedApi) -> None:
    response = requests.options(
        f"{api.url}/echo",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
        timeout=10,
    )

    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert response.headers["Access-Control-Allow-Methods"] == "GET,POST,DELETE"
    assert response.headers["Access-Control-Allow-Headers"] == "authorization,content-type"
    assert response.headers["Access-Control-Max-Age"] == "60"
    assert api.invocations("AuthFunction") == 0
    assert api.invocations("EchoFunction") == 0


def test_preflight_from_an_unknown_origin_gets_no_cors_headers(api: ServedApi) -> None:
    response = requests.options(
        f"{api.url}/echo",
        headers={"Origin": "http://evil.test", "Access-Control-Request-Method": "POST"},
        timeout=10,
    )

    assert response.status_code == 204
    assert "Access-Control-Allow-Origin" not in response.headers
    assert api.invocations("AuthFunction") == 0


def test_missing_identity_source_is_401_with_cors_headers_and_no_authorizer_call(api: ServedApi) -> None:
    response = requests.post(f"{api.url}/echo", headers={"Origin": ORIGIN}, timeout=10)

    assert response.status_code == 401
    assert response.json() == {"message": "Unauthorized"}
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert response.headers["Vary"] == "Origin"
    assert response.headers["Access-Control-Expose-Headers"] == "x-request-id"
    assert api.invocations("AuthFunction") == 0


def test_denial_is_403_with_cors_headers(api: ServedApi) -> None:
    response = requests.post(f"{api.url}/echo", headers=bearer("deny"), timeout=10)

    assert response.status_code == 403
    assert response.json() == {"message": "Forbidden"}
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert api.invocations("AuthFunction") == 1
    assert api.invocations("EchoFunction") == 0


@pytest.mark.parametrize("token", ["boom", "junk"])
def test_failing_or_nonsense_authorizer_is_500_with_cors_headers(api: ServedApi, token: str) -> None:
    response = requests.post(f"{api.url}/echo", headers=bearer(token), timeout=10)

    assert response.status_code == 500
    assert response.json() == {"message": "Internal Server Error"}
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert api.invocations("EchoFunction") == 0


def test_other_origins_get_no_cors_headers(api: ServedApi) -> None:
    response = requests.post(
        f"{api.url}/echo",
        headers={"Authorization": "Bearer allow-u1", "Origin": "http://evil.test"},
        timeout=10,
    )

    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers


def test_integration_cors_headers_are_replaced_by_the_api_s(api: ServedApi) -> None:
    reply: dict[str, Any] = {"statusCode": 200, "headers": {"Access-Control-Allow-Origin": "*"}, "body": "x"}

    response = requests.post(f"{api.url}/reply", json=reply, headers={"Origin": ORIGIN}, timeout=10)

    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN


# ---------------------------------------------------------------- authorizer


def test_authorizer_gets_a_payload_2_request_event(api: ServedApi) -> None:
    response = requests.get(f"{api.url}/items/42?a=1", headers=bearer("allow-u1"), timeout=10)

    authorizer_event = response.json()["event"]["requestContext"]["authorizer"]["lambda"]["event"]
    assert authorizer_event["version"] == "2.0"
    assert authorizer_event["type"] == "REQUEST"
    assert authorizer_event["identitySource"] == ["Bearer allow-u1"]
    assert authorizer_event["routeKey"] == "GET /items/{id}"
    assert (
        authorizer_event["routeArn"] == "arn:aws:execute-api:us-east-1:123456789012:api/$default/GET/items/42"
    )
    assert authorizer_event["headers"]["authorization"] == "Bearer allow-u1"
    assert authorizer_event["pathParameters"] == {"id": "42"}
    assert authorizer_event["queryStringParameters"] == {"a": "1"}
    assert "body" not in authorizer_event


def test_decisions_are_cached_per_identity_value_for_the_ttl(tmp_path: Path) -> None:
    clock = FakeClock()
    with serve_api(api_project(tmp_path), clock=clock) as api:
        for _ in range(3):
            assert requests.post(f"{api.url}/echo", headers=bearer("allow-u1"), timeout=10).status_code == 200
        assert requests.post(f"{api.url}/echo", headers=bearer("deny"), timeout=10).status_code == 403
        assert requests.post(f"{api.url}/echo", headers=bearer("deny"), timeout=10).status_code == 403
        assert api.invocations("AuthFunction") == 2

        clock.now += 301
        assert requests.post(f"{api.url}/echo", headers=bearer("allow-u1"), timeout=10).status_code == 200
        assert api.invocations("AuthFunction") == 3
        assert api.invocations("EchoFunction") == 4


def test_ttl_zero_calls_the_authorizer_every_time(tmp_path: Path) -> None:
    with serve_api(api_project(tmp_path), parameters={"CacheTtl": "0"}) as api:
        for _ in range(3):
            requests.post(f"{api.url}/echo", headers=bearer("allow-u1"), timeout=10)

        assert api.invocations("AuthFunction") == 3


def test_routes_without_an_authorizer_skip_it(api: ServedApi) -> None:
    response = requests.get(f"{api.url}/public", timeout=10)

    assert response.status_code == 200
    assert "authorizer" not in response.json()["event"]["requestContext"]
    assert api.invocations("AuthFunction") == 0


# ---------------------------------------------------------------- integration event


def test_integration_gets_a_payload_2_event(api: ServedApi) -> None:
    response = requests.get(
        f"{api.url}/items/a%20b?x=1&x=2&empty=",
        headers={**bearer("allow-user-7"), "X-Custom": "Yes", "Cookie": "a=1; b=2", "User-Agent": "tests/1"},
        timeout=10,
    )

    assert response.status_code == 200
    event = response.json()["event"]
    context = event["requestContext"]
    assert event["version"] == "2.0"
    assert event["routeKey"] == "GET /items/{id}"
    assert event["rawPath"] == "/items/a%20b"
    assert event["rawQueryString"] == "x=1&x=2&empty="
    assert event["queryStringParameters"] == {"x": "1,2", "empty": ""}
    assert event["pathParameters"] == {"id": "a b"}
    assert event["cookies"] == ["a=1", "b=2"]
    assert event["headers"]["x-custom"] == "Yes"
    assert "cookie" not in event["headers"]
    assert all(name == name.lower() for name in event["headers"])
    assert event["isBase64Encoded"] is False
    assert "body" not in event
    assert context["accountId"] == "123456789012"
    assert context["apiId"] == "api"
    assert context["stage"] == "$default"
    assert context["routeKey"] == "GET /items/{id}"
    assert context["authorizer"]["lambda"]["sub"] == "user-7"
    assert context["http"] == {
        "method": "GET",
        "path": "/items/a%20b",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "tests/1",
    }
    assert context["requestId"]
    assert isinstance(context["timeEpoch"], int)
    assert context["time"].endswith("+0000")


def test_text_bodies_pass_as_text_and_binary_ones_as_base64(api: ServedApi) -> None:
    text = requests.post(f"{api.url}/echo", headers=bearer("allow-u1"), json={"k": "v"}, timeout=10).json()
    binary = requests.post(
        f"{api.url}/echo",
        headers={**bearer("allow-u1"), "Content-Type": "image/png"},
        data=b"\x89PNG\x00\xff",
        timeout=10,
    ).json()

    assert text["event"]["body"] == '{"k": "v"}'
    assert text["event"]["isBase64Encoded"] is False
    assert base64.b64decode(binary["event"]["body"]) == b"\x89PNG\x00\xff"
    assert binary["event"]["isBase64Encoded"] is True


def test_the_function_runs_with_its_template_environment(api: ServedApi) -> None:
    body = requests.get(f"{api.url}/public", timeout=10).json()

    assert body["env"] == {"GREETING": "hello", "TABLE": "imgpipe-table", "AWS_ENDPOINT_URL": None}
    assert body["function"] == "imgpipe-EchoFunction"


def test_unknown_routes_are_404(api: ServedApi) -> None:
    for method, path in [("GET", "/nope"), ("DELETE", "/echo"), ("GET", "/items/1/extra")]:
        response = requests.request(method, f"{api.url}{path}", headers=bearer("allow-u1"), timeout=10)
        assert response.status_code == 404, path
        assert response.json() == {"message": "Not Found"}
    assert api.invocations("AuthFunction") == 0


# ---------------------------------------------------------------- response conversion


def test_a_value_without_status_code_is_a_200_json_body(api: ServedApi) -> None:
    response = requests.post(f"{api.url}/reply", json={"hello": [1, 2]}, timeout=10)

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"hello": [1, 2]}


def test_a_full_response_keeps_status_headers_cookies_and_decodes_base64(api: ServedApi) -> None:
    reply: dict[str, Any] = {
        "statusCode": 201,
        "headers": {"Content-Type": "image/gif", "X-One": "1"},
        "multiValueHeaders": {"X-Many": ["a", "b"]},
        "cookies": ["s=1; HttpOnly", "t=2"],
        "body": base64.b64encode(b"GIF89a\x00\x01").decode(),
        "isBase64Encoded": True,
    }

    response = requests.post(f"{api.url}/reply", json=reply, timeout=10)

    assert response.status_code == 201
    assert response.content == b"GIF89a\x00\x01"
    assert response.headers["Content-Type"] == "image/gif"
    assert response.headers["X-One"] == "1"
    assert response.raw.headers.getlist("X-Many") == ["a", "b"]
    assert response.raw.headers.getlist("Set-Cookie") == ["s=1; HttpOnly", "t=2"]


def test_a_raising_function_is_a_500(api: ServedApi) -> None:
    response = requests.post(f"{api.url}/reply", json="raise", headers={"Origin": ORIGIN}, timeout=10)

    assert response.status_code == 500
    assert response.json() == {"message": "Internal Server Error"}
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN


def test_a_missing_handler_module_is_a_500_not_a_crash(tmp_path: Path) -> None:
    template_path = api_project(tmp_path)
    (tmp_path / "reply" / "app.py").unlink()
    with serve_api(template_path) as api:
        response = requests.post(f"{api.url}/reply", json={}, timeout=10)
        assert response.status_code == 500
        assert requests.get(f"{api.url}/public", timeout=10).status_code == 200


def test_routes_follow_the_template(tmp_path: Path) -> None:
    # Given the template's route moved and a wildcard origin allowed
    moved = API_TEMPLATE.replace("Path: /echo}", "Path: /v2/echo}").replace(
        'Default: "http://app.test,http://other.test"', 'Default: "https://*.example.com"'
    )
    with serve_api(api_project(tmp_path, moved)) as api:
        # Then the old path is gone and the new one answers, with the new origin rule
        old = requests.post(f"{api.url}/echo", headers=bearer("allow-u1"), timeout=10)
        new = requests.post(
            f"{api.url}/v2/echo",
            headers={"Authorization": "Bearer allow-u1", "Origin": "https://a.example.com"},
            timeout=10,
        )
        assert old.status_code == 404
        assert new.status_code == 200
        assert new.json()["event"]["routeKey"] == "POST /v2/echo"
        assert new.headers["Access-Control-Allow-Origin"] == "https://a.example.com"
        assert json.loads(json.dumps(api.template.apis[0].cors.allow_origins)) == ["https://*.example.com"]


def test_an_integration_vary_header_is_kept_and_gains_origin(api: ServedApi) -> None:
    reply: dict[str, Any] = {"statusCode": 200, "headers": {"Vary": "Accept-Encoding"}, "body": "x"}

    response = requests.post(f"{api.url}/reply", json=reply, headers={"Origin": ORIGIN}, timeout=10)

    assert response.raw.headers.getlist("Vary") == ["Accept-Encoding, Origin"]


POLICY_AUTH_HANDLER = """\
def lambda_handler(event, context):
    token = event["identitySource"][0]
    api_arn = event["routeArn"].rsplit("/", 3)[0]
    effect = "Allow" if token == "Bearer ok" else "Deny"
    return {
        "principalId": "user",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": api_arn + "/*"}],
        },
        "context": {"sub": "from-policy"},
    }
"""


def test_iam_policy_responses_are_evaluated_when_simple_responses_are_off(tmp_path: Path) -> None:
    text = API_TEMPLATE.replace("EnableSimpleResponses: true", "EnableSimpleResponses: false")
    api_project(tmp_path, text)
    (tmp_path / "auth" / "app.py").write_text(POLICY_AUTH_HANDLER)

    with serve_api(tmp_path / "template.yaml") as api:
        allowed = requests.post(f"{api.url}/echo", headers={"Authorization": "Bearer ok"}, timeout=10)
        denied = requests.post(f"{api.url}/echo", headers={"Authorization": "Bearer no"}, timeout=10)

    assert allowed.status_code == 200
    assert allowed.json()["event"]["requestContext"]["authorizer"]["lambda"] == {"sub": "from-policy"}
    assert denied.status_code == 403

"""docs/openapi.yaml against what it describes: the template's routes, authorizer and CORS, the
accepted content types and limits, and its own examples. (Real answers are held to it in
tests/integration and tests/e2e.)"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from imgpipe import spec, uploads
from imgpipe_local.template import load_yaml
from tests.conftest import ROOT, load_event
from tests.openapi_support import DOCUMENT, check_function_answer

TEMPLATE = load_yaml(ROOT / "template.yaml")
API = TEMPLATE["Resources"]["HttpApi"]["Properties"]
OPERATIONS = [
    (path, method, operation)
    for path, item in DOCUMENT["paths"].items()
    for method, operation in item.items()
    if method in ("get", "put", "post", "delete", "patch", "options")
]


def template_routes() -> set[tuple[str, str]]:
    return {
        (event["Properties"]["Method"].lower(), event["Properties"]["Path"])
        for resource in TEMPLATE["Resources"].values()
        if resource["Type"] == "AWS::Serverless::Function"
        for event in (resource["Properties"].get("Events") or {}).values()
        if event["Type"] == "HttpApi"
    }


def test_the_routes_are_the_templates() -> None:
    documented = {(method, path) for path, method, _ in OPERATIONS if method != "options"}
    assert documented == template_routes()


def test_every_route_needs_the_bearer_token_and_preflight_does_not() -> None:
    # The template's DefaultAuthorizer guards every route; no route opts out.
    assert API["Auth"]["DefaultAuthorizer"]
    for resource in TEMPLATE["Resources"].values():
        for event in (resource.get("Properties", {}).get("Events") or {}).values():
            assert "Auth" not in event.get("Properties", {})
    assert DOCUMENT["security"] == [{"bearerAuth": []}]
    assert DOCUMENT["components"]["securitySchemes"]["bearerAuth"] == {
        **DOCUMENT["components"]["securitySchemes"]["bearerAuth"],
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }
    for path, method, operation in OPERATIONS:
        assert ("security" in operation) is (method == "options"), (path, method)
        if method == "options":
            assert operation["security"] == []


def test_cors_is_the_templates() -> None:
    cors = API["CorsConfiguration"]
    documented = DOCUMENT["x-amazon-apigateway-cors"]
    assert {key: value for key, value in documented.items() if key != "allowOrigins"} == {
        "allowMethods": cors["AllowMethods"],
        "allowHeaders": cors["AllowHeaders"],
        "maxAge": cors["MaxAge"],
    }
    # AllowedOrigins has no default (each deployment names its own); the document shows the local
    # stack's, which the parameter's pattern must accept.
    origin = re.compile(TEMPLATE["Parameters"]["AllowedOrigins"]["AllowedPattern"])
    assert documented["allowOrigins"] == ["http://localhost:8000", "http://127.0.0.1:8000"]
    assert all(origin.fullmatch(o) for o in documented["allowOrigins"])
    assert {path for path, method, _ in OPERATIONS if method == "options"} == set(DOCUMENT["paths"])


def test_every_answer_names_its_cors_headers() -> None:
    for path, method, operation in OPERATIONS:
        for status, response in operation["responses"].items():
            if "$ref" in response:
                response = DOCUMENT["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
            assert "Access-Control-Allow-Origin" in response["headers"], (path, method, status)


def test_request_and_limits_are_the_modules() -> None:
    schemas = DOCUMENT["components"]["schemas"]
    content_types = schemas["UploadRequest"]["properties"]["contentType"]["enum"]
    assert content_types == list(uploads.ALLOWED_CONTENT_TYPES)
    max_bytes = schemas["UploadTicket"]["properties"]["maxBytes"]
    assert (max_bytes["minimum"], max_bytes["maximum"]) == spec.MAX_UPLOAD_BYTES_BOUNDS


def _examples() -> list[Any]:
    found = []
    for path, method, operation in OPERATIONS:
        for status, response in operation["responses"].items():
            if "$ref" in response:
                response = DOCUMENT["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
            for media in (response.get("content") or {}).values():
                case = f"{method} {path} {status}"
                found.append(pytest.param(path, method, int(status), media["example"], id=case))
    return found


@pytest.mark.parametrize(("path", "method", "status", "example"), _examples())
def test_every_example_is_a_valid_answer(path: str, method: str, status: int, example: Any) -> None:
    # The 429 (API Gateway's throttling, which no local test can provoke) is covered only here.
    event = load_event("presign_upload_key_upload")
    event["rawPath"] = path
    event["requestContext"]["http"]["method"] = method.upper()
    answer = {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(example),
    }
    check_function_answer(event, answer)

"""Hold an answer of the API to docs/openapi.yaml, with openapi-core (status, content type, body
schema, documented headers).

Two ways in: an HTTP answer (`requests`, from the local stack or a deployed one), or a
function's payload-2.0 answer to an API Gateway event (for answers HTTP cannot provoke, such as
a refused erase).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import requests
import yaml
from openapi_core import OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers

from tests.conftest import ROOT

DOCUMENT_PATH = ROOT / "docs" / "openapi.yaml"
DOCUMENT: dict[str, Any] = yaml.safe_load(DOCUMENT_PATH.read_text())
# from_dict validates the document itself against the OpenAPI 3.0 schema.
OPENAPI = OpenAPI.from_dict(DOCUMENT)
SERVER = DOCUMENT["servers"][0]["variables"]["apiUrl"]["default"]


def check_http(response: requests.Response) -> None:
    """`response` (to the request that made it) is one the document describes."""
    OPENAPI.validate_response(RequestsOpenAPIRequest(response.request), RequestsOpenAPIResponse(response))


@dataclass
class _EventRequest:
    method: str
    path: str
    body: bytes | None
    content_type: str
    host_url: str = SERVER
    parameters: RequestParameters = field(default_factory=RequestParameters)


@dataclass
class _FunctionResponse:
    status_code: int
    content_type: str
    headers: Headers
    data: bytes | None


def check_function_answer(event: dict[str, Any], answer: dict[str, Any]) -> None:
    """A function's answer to a payload-2.0 `event`, as API Gateway passes it on, is documented."""
    headers = Headers(answer.get("headers") or {})
    body: str | None = answer.get("body")
    data = None
    if body is not None:
        data = base64.b64decode(body) if answer.get("isBase64Encoded") else body.encode()
    request = _EventRequest(
        method=event["requestContext"]["http"]["method"].lower(),
        path=event["rawPath"],
        body=(event.get("body") or "").encode() or None,
        content_type=(event.get("headers") or {}).get("content-type", ""),
    )
    response = _FunctionResponse(
        status_code=int(answer["statusCode"]),
        content_type=headers.get("Content-Type", ""),
        headers=headers,
        data=data,
    )
    OPENAPI.validate_response(request, response)

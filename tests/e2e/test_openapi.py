"""The API's real answers over HTTP, the gateway's denials included, are the ones docs/openapi.yaml
describes (against the local stack, or a deployed one: the same test). The CORS preflight is
held to it in test_auth.py."""

from __future__ import annotations

import pytest
import requests

from imgpipe_local.client import Client
from tests.e2e.conftest import E2EStack
from tests.openapi_support import DOCUMENT, check_http

ROUTES = [("POST", "/avatars/key_upload"), ("DELETE", "/avatars")]


def call(
    stack: E2EStack, method: str, path: str, *, token: str | None = None, json: object = None
) -> requests.Response:
    """One API call from the browser's origin, answered as it is."""
    return Client(stack.target).api(method, path, token=token, json=json, headers={"Origin": stack.origin})


def test_an_upload_ticket_and_a_refused_body(stack: E2EStack, token: str) -> None:
    granted = call(stack, "POST", "/avatars/key_upload", token=token, json={"contentType": "image/png"})
    refused = call(stack, "POST", "/avatars/key_upload", token=token, json={"contentType": "image/svg+xml"})

    assert (granted.status_code, refused.status_code) == (200, 400)
    for response in (granted, refused):
        check_http(response)
        assert response.headers["Access-Control-Allow-Origin"] == stack.origin


def test_an_erase(stack: E2EStack, token: str) -> None:
    response = call(stack, "DELETE", "/avatars", token=token)

    assert response.status_code == 200
    check_http(response)


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_the_gateways_denials(stack: E2EStack, method: str, path: str) -> None:
    missing = call(stack, method, path)
    denied = call(stack, method, path, token="not-a-jwt")

    assert (missing.status_code, denied.status_code) == (401, 403)
    for response in (missing, denied):
        check_http(response)
        assert response.headers["Access-Control-Allow-Origin"] == stack.origin


def test_the_local_web_server_serves_the_document_for_its_api(stack: E2EStack) -> None:
    if stack.local is None:
        pytest.skip("a deployed stack has no local web server")
    response = requests.get(f"{stack.web_url}/openapi.json", timeout=10)

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {**DOCUMENT, "servers": [{"url": stack.target.api_url}]}

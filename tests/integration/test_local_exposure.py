"""What the local stack shows to the rest of the machine and to web pages: loopback names only
(DNS rebinding), config.json to this machine only, and no CORS grant the project did not make."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from imgpipe_local.httpserver import Request
from imgpipe_local.stack import LocalStack, WebPage
from tests.conftest import ROOT

FOREIGN = "http://evil.test"
COGNITO_PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type,x-amz-target",
}


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack(root=ROOT, ports=LocalStack.free_ports()) as stack:
        yield stack


def urls(stack: LocalStack) -> dict[str, str]:
    return {
        "moto": f"{stack.moto_url}/",
        "api": f"{stack.api_url}/avatars/key_upload",
        "cdn": f"{stack.cdn_url}/avatars/nobody/avatar.json",
        "web": f"{stack.web_url}/config.json",
    }


@pytest.mark.parametrize("server", ["moto", "api", "cdn", "web"])
def test_a_rebound_host_name_is_refused(stack: LocalStack, server: str) -> None:
    url = urls(stack)[server]
    port = url.split(":")[2].split("/")[0]

    rebound = requests.get(url, headers={"Host": f"attacker.example:{port}"}, timeout=10)
    other_port = requests.get(url, headers={"Host": "localhost:1"}, timeout=10)

    assert rebound.status_code == 403
    assert b"Invalid Host header" in rebound.content
    assert other_port.status_code == 403


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost", "[::1]"])
def test_loopback_host_names_are_served(stack: LocalStack, name: str) -> None:
    port = stack.web_url.rsplit(":", 1)[1]

    response = requests.get(f"{stack.web_url}/config.json", headers={"Host": f"{name}:{port}"}, timeout=10)

    assert response.status_code == 200
    assert response.json()["demoUser"]["username"] == stack.demo_user.username


def test_config_json_with_the_demo_password_is_for_this_machine_only() -> None:
    page = WebPage(ROOT / "web", {"demoUser": {"username": "demo", "password": "secret"}})

    def get(client_ip: str) -> int:
        request = Request("GET", "/config.json", "", [("Host", "x")], b"", client_ip, "HTTP/1.1")
        return int(page.handle(request).status)

    assert get("127.0.0.1") == 200
    assert get("::1") == 200
    assert get("192.0.2.10") == 403  # another machine, were the stack bound wider than loopback
    assert page.handle(Request("GET", "/index.html", "", [], b"", "192.0.2.10", "HTTP/1.1")).status == 200


def test_moto_s_reset_and_dashboard_are_not_reachable(stack: LocalStack) -> None:
    assert requests.post(f"{stack.moto_url}/moto-api/reset", timeout=10).status_code == 404
    assert requests.get(f"{stack.moto_url}/moto-api/", timeout=10).status_code == 404
    # Nothing was reset.
    assert stack.sign_in()["AccessToken"]


def test_cognito_grants_cors_to_the_stack_s_origins_only(stack: LocalStack) -> None:
    granted = requests.options(
        stack.moto_url, headers={"Origin": stack.web_url, **COGNITO_PREFLIGHT}, timeout=10
    )
    refused = requests.options(stack.moto_url, headers={"Origin": FOREIGN, **COGNITO_PREFLIGHT}, timeout=10)
    sign_in = requests.post(
        stack.moto_url,
        json={
            "AuthFlow": "USER_PASSWORD_AUTH",
            "ClientId": stack.web_config["clientId"],
            "AuthParameters": {"USERNAME": stack.demo_user.username, "PASSWORD": stack.demo_user.password},
        },
        headers={
            "Origin": FOREIGN,
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": "AWSCognitoIdentityProviderService.InitiateAuth",
        },
        timeout=10,
    )

    assert granted.status_code == 200
    assert granted.headers["Access-Control-Allow-Origin"] == stack.web_url
    assert refused.status_code == 403
    assert "Access-Control-Allow-Origin" not in refused.headers
    assert sign_in.status_code == 200  # answered (a script without CORS could do as much)…
    assert "Access-Control-Allow-Origin" not in sign_in.headers  # …but no page of evil.test may read it


def test_s3_answers_cors_from_the_bucket_s_rules(stack: LocalStack) -> None:
    token = stack.sign_in()["AccessToken"]
    upload = requests.post(
        f"{stack.api_url}/avatars/key_upload",
        json={"contentType": "image/png"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    ).json()
    preflight = {"Access-Control-Request-Method": "POST"}

    def post(origin: str) -> requests.Response:
        files = {"file": ("a.png", b"\x89PNG\r\n\x1a\n", "image/png")}
        return requests.post(
            upload["url"], data=upload["fields"], files=files, headers={"Origin": origin}, timeout=10
        )

    allowed = requests.options(upload["url"], headers={"Origin": stack.web_url, **preflight}, timeout=10)
    foreign = requests.options(upload["url"], headers={"Origin": FOREIGN, **preflight}, timeout=10)
    posted, posted_foreign = post(stack.web_url), post(FOREIGN)

    assert allowed.headers["Access-Control-Allow-Origin"] == stack.web_url
    assert foreign.status_code == 403
    assert "Access-Control-Allow-Origin" not in foreign.headers
    assert posted.status_code == 204
    assert posted.headers["Access-Control-Allow-Origin"] == stack.web_url
    assert "Access-Control-Allow-Origin" not in posted_foreign.headers

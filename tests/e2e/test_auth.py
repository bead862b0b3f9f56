"""Who may ask for an upload: denials are clean 401/403s that a browser can read (CORS)."""

from __future__ import annotations

import base64
import gzip
import json
import time
from pathlib import Path

import jwt
import moto.cognitoidp
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from imgpipe_local.client import Client
from tests.e2e.conftest import E2EStack
from tests.openapi_support import check_http

ROUTES = [("POST", "/avatars/key_upload"), ("DELETE", "/avatars")]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segments(token: str) -> tuple[dict, dict]:
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    return header, claims


def signed_with_a_stranger_key(token: str) -> str:
    """The same header (kid) and claims, signed by a key the issuer never published."""
    header, claims = _segments(token)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": header["kid"]})


def with_altered_claims(token: str) -> str:
    """The real signature over a payload edited to be expired a day ago."""
    head, _, signature = token.split(".")
    _, claims = _segments(token)
    claims["exp"] = int(time.time()) - 86_400
    return f"{head}.{_b64(json.dumps(claims).encode())}.{signature}"


def expired_with_the_issuer_key(token: str) -> str:
    """Correctly signed by moto's Cognito key, but expired an hour ago."""
    header, claims = _segments(token)
    resources = Path(moto.cognitoidp.__file__).parent / "resources"
    private = json.loads(gzip.decompress((resources / "jwks-private.json.gz").read_bytes()))
    claims["iat"] = int(time.time()) - 7200
    claims["exp"] = int(time.time()) - 3600
    key = jwt.PyJWK(private, algorithm="RS256").key
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": header["kid"]})


def unsigned(token: str) -> str:
    _, claims = _segments(token)
    return f"{_b64(b'{"alg":"none","typ":"JWT"}')}.{_b64(json.dumps(claims).encode())}."


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_a_request_without_a_token_is_401_with_cors(
    stack: E2EStack, client: Client, method: str, path: str
) -> None:
    response = client.api(method, path, json={"contentType": "image/jpeg"}, headers={"Origin": stack.origin})

    assert response.status_code == 401
    assert response.headers.get("Access-Control-Allow-Origin") == stack.origin


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda token: "not-a-jwt", id="garbage"),
        pytest.param(signed_with_a_stranger_key, id="wrong-key"),
        pytest.param(with_altered_claims, id="altered-payload"),
        pytest.param(unsigned, id="alg-none"),
        pytest.param(lambda token: token.rsplit(".", 1)[0] + ".", id="signature-stripped"),
    ],
)
@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_a_forged_or_broken_token_is_403_with_cors(
    stack: E2EStack, client: Client, token: str, forge, method: str, path: str
) -> None:
    response = client.api(
        method, path, token=forge(token), json={"contentType": "image/jpeg"}, headers={"Origin": stack.origin}
    )

    assert response.status_code == 403
    assert response.headers.get("Access-Control-Allow-Origin") == stack.origin


def test_an_expired_token_signed_by_the_issuer_is_403_with_cors(
    stack: E2EStack, client: Client, token: str
) -> None:
    if stack.local is None:
        pytest.skip("only the local stack's issuer key (moto's) is at hand to sign an expired token")
    response = client.api(
        "POST",
        "/avatars/key_upload",
        token=expired_with_the_issuer_key(token),
        json={"contentType": "image/jpeg"},
        headers={"Origin": stack.origin},
    )

    assert response.status_code == 403
    assert response.headers.get("Access-Control-Allow-Origin") == stack.origin


def test_the_id_token_is_not_accepted_where_an_access_token_is_expected(
    stack: E2EStack, client: Client, tokens: dict
) -> None:
    response = client.api(
        "POST",
        "/avatars/key_upload",
        token=tokens["IdToken"],
        json={"contentType": "image/jpeg"},
        headers={"Origin": stack.origin},
    )

    assert response.status_code == 403


def test_a_valid_token_is_accepted_with_cors(stack: E2EStack, client: Client, token: str) -> None:
    response = client.api(
        "POST",
        "/avatars/key_upload",
        token=token,
        json={"contentType": "image/jpeg"},
        headers={"Origin": stack.origin},
    )

    assert response.status_code == 200
    assert response.headers.get("Access-Control-Allow-Origin") == stack.origin
    body = response.json()
    assert body["fields"]["Content-Type"] == "image/jpeg"
    assert body["fields"]["x-amz-meta-upload-id"] == body["uploadId"]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_preflight_is_answered_without_a_token(
    stack: E2EStack, client: Client, method: str, path: str
) -> None:
    response = client.session.options(
        f"{client.target.api_url}{path}",
        headers={
            "Origin": stack.origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization,content-type",
        },
        timeout=30,
    )

    assert response.status_code in (200, 204)
    check_http(response)  # as docs/openapi.yaml describes it
    assert response.headers.get("Access-Control-Allow-Origin") == stack.origin
    assert method in response.headers.get("Access-Control-Allow-Methods", "").upper()
    allowed_headers = response.headers.get("Access-Control-Allow-Headers", "").lower()
    assert "authorization" in allowed_headers
    assert "content-type" in allowed_headers


def test_preflight_from_a_foreign_origin_gets_no_cors_grant(client: Client) -> None:
    response = client.session.options(
        f"{client.target.api_url}/avatars/key_upload",
        headers={
            "Origin": "https://evil.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        },
        timeout=30,
    )

    assert "Access-Control-Allow-Origin" not in response.headers

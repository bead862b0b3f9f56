"""Real keys, real tokens and a real JWKS endpoint for the authorizer's tests.

`JwksServer` is an http.server on 127.0.0.1 (random port) that counts requests and can be told
to fail, hang, trickle, or answer junk, so cache behaviour is asserted by counting fetches.
"""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

POOL_ID = "us-east-1_Example1"
ISSUER = f"https://cognito-idp.us-east-1.amazonaws.com/{POOL_ID}"
UPDATED_ISSUER = f"https://issuer-cognito-idp.us-east-1.amazonaws.com/{POOL_ID}"
CLIENT_ID = "3n4b5urk1ft4fl3mg5e62d9ado"
SUB = "3f1c2a9e-8b7d-4e6f-9a01-23456789abcd"
USERNAME = "demo"
NOW = 1_795_879_800  # 2026-11-28T15:30:00Z, fixed so tests never read the wall clock
JWKS_PATH = f"/{POOL_ID}/.well-known/jwks.json"
DROP = object()  # a claim value meaning "leave this claim out"


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: Any

    def jwk(self, **overrides: Any) -> dict[str, Any]:
        """The public JWK, as Cognito publishes it (kid, alg, use), with fields overridden or DROPped."""
        public = self.private.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            data = RSAAlgorithm.to_jwk(public, as_dict=True)
        elif isinstance(public, ec.EllipticCurvePublicKey):
            data = ECAlgorithm.to_jwk(public, as_dict=True)
        else:
            data = OKPAlgorithm.to_jwk(public, as_dict=True)
        data.update({"kid": self.kid, "alg": self.alg, "use": "sig"})
        return _apply(data, overrides)

    def sign(self, claims: dict[str, Any], *, alg: str | None = None, **headers: Any) -> str:
        header = _apply({"kid": self.kid}, headers)
        return jwt.encode(claims, self.private, algorithm=alg or self.alg, headers=header)

    def sign_raw(self, payload: bytes, **headers: Any) -> str:
        """Sign payload bytes as they are, for payloads json.dumps would never produce."""
        header = _apply({"kid": self.kid}, headers)
        return jwt.api_jws.encode(payload, self.private, algorithm=self.alg, headers=header)

    def forge(self, claims: dict[str, Any], **headers: Any) -> str:
        """Sign what PyJWT refuses to write (a non-string kid or iss), byte for byte."""
        algorithm = jwt.get_algorithm_by_name(self.alg)
        header = _apply({"alg": self.alg, "kid": self.kid}, headers)
        signing_input = f"{b64url(header)}.{b64url(claims)}"
        signature = algorithm.sign(signing_input.encode(), algorithm.prepare_key(self.private))
        return f"{signing_input}.{b64url(signature)}"


def rsa_key(kid: str, alg: str = "RS256") -> SigningKey:
    return SigningKey(kid, alg, rsa.generate_private_key(public_exponent=65537, key_size=2048))


def ec_key(kid: str, alg: str = "ES256") -> SigningKey:
    curve = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}[alg]
    return SigningKey(kid, alg, ec.generate_private_key(curve))


def okp_key(kid: str, curve: str = "Ed25519") -> SigningKey:
    private = ed25519.Ed25519PrivateKey.generate() if curve == "Ed25519" else ed448.Ed448PrivateKey.generate()
    return SigningKey(kid, "EdDSA", private)


def access_claims(**overrides: Any) -> dict[str, Any]:
    """A Cognito access token's claims, valid at NOW."""
    claims = {
        "sub": SUB,
        "iss": ISSUER,
        "client_id": CLIENT_ID,
        "origin_jti": "2b1f0c8e-0d7a-4c55-9a0e-1f2d3c4b5a69",
        "event_id": "7c3e9d1a-5b6f-4e2d-8a7b-0c1d2e3f4a5b",
        "token_use": "access",
        "scope": "aws.cognito.signin.user.admin",
        "auth_time": NOW - 60,
        "exp": NOW + 3600,
        "iat": NOW - 60,
        "jti": "5d8e7f6a-4b3c-2d1e-0f9a-8b7c6d5e4f3a",
        "username": USERNAME,
    }
    return _apply(claims, overrides)


def id_claims(**overrides: Any) -> dict[str, Any]:
    """A Cognito id token's claims, valid at NOW."""
    claims = {
        "sub": SUB,
        "email_verified": True,
        "iss": ISSUER,
        "cognito:username": USERNAME,
        "origin_jti": "2b1f0c8e-0d7a-4c55-9a0e-1f2d3c4b5a69",
        "aud": CLIENT_ID,
        "event_id": "7c3e9d1a-5b6f-4e2d-8a7b-0c1d2e3f4a5b",
        "token_use": "id",
        "auth_time": NOW - 60,
        "exp": NOW + 3600,
        "iat": NOW - 60,
        "jti": "9a8b7c6d-5e4f-3a2b-1c0d-e9f8a7b6c5d4",
        "email": "demo@example.com",
    }
    return _apply(claims, overrides)


def b64url(data: bytes | dict[str, Any] | list[Any]) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _apply(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for name, value in overrides.items():
        name = name.replace("__", ":")  # cognito__username -> cognito:username
        if value is DROP:
            result.pop(name, None)
        else:
            result[name] = value
    return result


@dataclass
class JwksServer:
    """A JWKS endpoint on 127.0.0.1. `mode` selects its next answers:

    ok        200 with `keys` as a JWKS
    error     HTTP 500
    junk      200 with a body that is not JSON
    not_jwks  200 with JSON that is not a key set
    hang      accepts, then says nothing until the test ends (`hangs_ended` counts the ends)
    cut_short the JWKS, but the connection closes before the Content-Length it announced
    not_http  a reply without an HTTP status line
    empty     200 with a JWKS holding no keys
    trickle   the JWKS, a few bytes at a time (each read within the socket timeout)
    trickle_headers  a status line, then header bytes one at a time for 10 s (`trickles_ended`
              counts those that ran to the end)
    redirect  302 to this server's `?moved` URL, which always answers the JWKS (`moved` counts
              the requests that reached it)
    huge      the JWKS padded past any sane size, with a Content-Length
    huge_stream  the same without Content-Length, so only a streaming cap can stop it
    """

    keys: list[Any] = field(default_factory=list)  # JWKs, and whatever junk a test serves as one
    mode: str = "ok"
    requests: int = 0
    hangs_ended: int = 0
    trickles_ended: int = 0
    moved: int = 0
    pad_to: int = 256 * 1024
    _server: ThreadingHTTPServer | None = None
    _release: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}{JWKS_PATH}"

    def body(self) -> bytes:
        return json.dumps({"keys": self.keys}).encode()

    def __enter__(self) -> JwksServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests += 1
                owner.answer(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output readable; requests are counted instead

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        mode, body = self.mode, self.body()
        if handler.path.endswith("?moved"):
            self.moved += 1
            mode = "ok"
        if mode == "redirect":
            handler.send_response(302)
            handler.send_header("Location", f"{self.url}?moved")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        if mode == "trickle_headers":
            try:
                handler.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                for _ in range(200):  # 200 x 0.05 s: each byte well within any socket timeout
                    handler.wfile.write(b"a")
                    handler.wfile.flush()
                    if self._release.wait(timeout=0.05):
                        return
            except OSError:
                return  # the client hung up: it did not wait for the headers to end
            self.trickles_ended += 1
            return
        if mode == "hang":
            self._release.wait(timeout=10)
            self.hangs_ended += 1
            return
        if mode == "not_http":
            handler.wfile.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
            return
        if mode == "error":
            handler.send_error(500, "JWKS backend down")
            return
        if mode == "junk":
            body = b"<html>Service Unavailable</html>"
        elif mode == "not_jwks":
            body = b'{"message": "rate exceeded"}'
        elif mode == "empty":
            body = b'{"keys": []}'
        elif mode in {"huge", "huge_stream"}:
            body = body[:-1] + b" " * self.pad_to + b"}"
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        if mode == "cut_short":
            handler.send_header("Content-Length", str(len(body) + 100))
        elif mode != "huge_stream":
            handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if mode == "trickle":
            for start in range(0, len(body), 32):
                handler.wfile.write(body[start : start + 32])
                handler.wfile.flush()
                if self._release.wait(timeout=0.05):
                    return
            return
        handler.wfile.write(body)


class FakeClock:
    """A monotonic clock the test moves by hand (the cache's cooldown reads it)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds

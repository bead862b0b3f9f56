"""Verify a Cognito (or OIDC) JWT: a pure `JwtVerifier.verify(token) -> claims` and its JWKS cache.

The checks follow aws-jwt-verify's CognitoJwtVerifier, adding PS* algorithms and three things it
leaves to the caller: a bound on the token's size, `exp` and `sub` being required, and `iat` not
in the future. Timing follows aws-jwt-verify's rule (a token is expired when `exp + leeway < now`,
not yet valid when `nbf - leeway > now`) with a 5 s leeway instead of its 0: Cognito sets no
`nbf`, and a second of skew between an external issuer and Lambda must not deny fresh tokens.

PyJWT does the cryptography (PyJWK builds the key, PyJWS checks the signature against an explicit
allow-list of one algorithm). Claims are checked here, against an injectable clock, because
PyJWT coerces claim types (`int("123")` passes as `exp`) and Python's json accepts NaN.

The JWKS cache differs from PyJWKClient where that one fails users: a failed fetch never empties
the cache, and an unknown `kid` triggers at most one fetch per cooldown.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
import logging
import math
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from jwt.exceptions import InvalidSignatureError, PyJWTError

from imgpipe.settings import SettingsError, env

logger = logging.getLogger(__name__)

# JWK kty each algorithm needs, and for EC/OKP the curves it may use. HS* and `none` are absent on
# purpose: a JWKS is public, so an HMAC "secret" taken from it is known to everyone.
ALGORITHMS: dict[str, tuple[str, frozenset[str] | None]] = {
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
    "ES256": ("EC", frozenset({"P-256"})),
    "ES384": ("EC", frozenset({"P-384"})),
    "ES512": ("EC", frozenset({"P-521"})),
    "EdDSA": ("OKP", frozenset({"Ed25519", "Ed448"})),
}
ACCESS, ID = "access", "id"
TOKEN_USES = (ACCESS, ID)

# Cognito access tokens are ~1 KB and id tokens a few KB with groups and custom attributes;
# API Gateway caps all request headers at 10 KB anyway.
DEFAULT_MAX_TOKEN_CHARS = 8192
DEFAULT_LEEWAY_SECONDS = 5
# aws-jwt-verify's SimplePenaltyBox waits 10 s after a kid miss. A legitimately rotated key is
# at most 10 s late, while a stream of junk kids costs the issuer at most 6 fetches a minute
# per warm container.
DEFAULT_COOLDOWN_SECONDS = 10.0
# aws-jwt-verify uses 1.5 s socket idle / 3 s response. urllib's timeout applies to connect and
# to each read; the whole body must also arrive within it, so a trickling server cannot keep an
# authorizer (and API Gateway's 10 s budget for it) waiting.
DEFAULT_FETCH_TIMEOUT_SECONDS = 1.5
# A Cognito JWKS is ~1 KB; anything near this cap is not a key set.
DEFAULT_MAX_JWKS_BYTES = 64 * 1024

_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", re.ASCII)
_COGNITO_POOL_ID = re.compile(r"([a-z]{2}(?:-[a-z]+)+-\d+)_[0-9A-Za-z]+")
_COGNITO_ISSUER = re.compile(r"https://cognito-idp\.[a-z0-9-]+\.amazonaws\.com/[\w-]+_[0-9A-Za-z]+")


# ---------------------------------------------------------------- errors


class TokenRejected(Exception):
    """A token that must not be trusted. `reason` is a stable machine code for logs and metrics.

    Messages describe what was wrong and never include the token.
    """

    reason: str = "invalid"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class MalformedToken(TokenRejected):
    """Not a well-formed compact JWS, or claims of the wrong type (`malformed`, `too_large`, `bad_claim`)."""


class UnacceptableKey(TokenRejected):
    """The header or the JWK it names cannot be used (`bad_algorithm`, `missing_kid`, `unknown_kid`,
    `jwk_use`, `jwk_kty`, `jwk_alg`, `jwk_invalid`, `jwks_unavailable`)."""


class BadSignature(TokenRejected):
    """The signature does not verify with the issuer's key (`bad_signature`)."""


class InvalidClaims(TokenRejected):
    """Signed by the issuer, but not for us or not now (`wrong_issuer`, `wrong_token_use`,
    `wrong_client`, `wrong_audience`, `expired`, `not_yet_valid`, `issued_in_future`)."""


class JwksUnavailable(UnacceptableKey):
    """The JWKS could not be fetched or was not a usable key set."""

    def __init__(self, message: str) -> None:
        super().__init__("jwks_unavailable", message)


# ---------------------------------------------------------------- config


@dataclass(frozen=True)
class VerifierConfig:
    issuer: str
    client_id: str
    jwks_url: str
    token_use: str = ACCESS
    leeway_seconds: int = DEFAULT_LEEWAY_SECONDS
    max_token_chars: int = DEFAULT_MAX_TOKEN_CHARS

    def __post_init__(self) -> None:
        if not self.issuer:
            raise ValueError("issuer must not be empty")
        if not self.client_id:
            raise ValueError("client_id must not be empty")
        if self.token_use not in TOKEN_USES:
            raise ValueError(f"token_use must be one of {TOKEN_USES}, got {self.token_use!r}")
        if not self.jwks_url.startswith(("https://", "http://")):
            raise ValueError(f"jwks_url must be an http(s) URL, got {self.jwks_url!r}")
        if self.leeway_seconds < 0 or self.max_token_chars < 1:
            raise ValueError("leeway_seconds must be >= 0 and max_token_chars >= 1")

    @property
    def cognito(self) -> bool:
        """Cognito tokens always carry `token_use`; tokens of other OIDC issuers need not."""
        return _COGNITO_ISSUER.fullmatch(self.issuer) is not None


@dataclass(frozen=True)
class AuthorizerSettings:
    """The authorizer's environment (template.yaml), checked at cold start."""

    client_id: str = env("USER_POOL_CLIENT_ID")
    user_pool_id: str = env("USER_POOL_ID", "")
    jwt_issuer: str = env("JWT_ISSUER", "")
    jwks_url: str = env("JWKS_URL", "")
    token_use: str = env("TOKEN_USE", ACCESS)
    region: str = env("AWS_REGION", "")

    def validate(self) -> None:
        if not self.user_pool_id and not self.jwt_issuer:
            raise SettingsError("set USER_POOL_ID (a Cognito user pool) or JWT_ISSUER (an OIDC issuer)")
        if self.user_pool_id and not self.jwt_issuer and not self._pool_region():
            raise SettingsError(
                f"cannot tell the region of USER_POOL_ID {self.user_pool_id!r}: set AWS_REGION"
            )
        if self.token_use not in TOKEN_USES:
            raise SettingsError(f"TOKEN_USE must be one of {TOKEN_USES}, got {self.token_use!r}")
        try:
            self.verifier_config()
        except ValueError as error:
            raise SettingsError(f"authorizer settings: {error}") from None

    def _pool_region(self) -> str:
        # A pool id starts with its own region, which is the one in the issuer even when the
        # function runs elsewhere; AWS_REGION is only a fallback for unusual ids.
        match = _COGNITO_POOL_ID.fullmatch(self.user_pool_id)
        return match.group(1) if match else self.region

    @property
    def issuer(self) -> str:
        if self.jwt_issuer:
            return self.jwt_issuer
        return f"https://cognito-idp.{self._pool_region()}.amazonaws.com/{self.user_pool_id}"

    def verifier_config(self) -> VerifierConfig:
        return VerifierConfig(
            issuer=self.issuer,
            client_id=self.client_id,
            jwks_url=self.jwks_url or f"{self.issuer.rstrip('/')}/.well-known/jwks.json",
            token_use=self.token_use,
        )


# ---------------------------------------------------------------- JWKS


def fetch_jwks(url: str, timeout: float, max_bytes: int) -> bytes:
    """GET `url`, bounded in time and size. Raises JwksUnavailable."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310 - scheme checked in config
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return _read_bounded(response, time.monotonic() + timeout, max_bytes)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as error:
        # HTTPError (a URLError) covers non-2xx; TimeoutError and connection errors are OSErrors;
        # a body cut short or a reply that is not HTTP are HTTPExceptions.
        raise JwksUnavailable(f"JWKS fetch failed: {error}") from None


def _read_bounded(response: Any, deadline: float, max_bytes: int) -> bytes:
    if response.status != 200:
        raise JwksUnavailable(f"JWKS answered HTTP {response.status}")
    body = bytearray()
    while chunk := response.read1(16384):
        body += chunk
        if len(body) > max_bytes:
            raise JwksUnavailable(f"JWKS is larger than {max_bytes} bytes")
        if time.monotonic() > deadline:
            raise JwksUnavailable("JWKS did not arrive in time")
    # read1() reports a connection closed early as the end of the body; the framing says otherwise.
    if response.length:
        raise JwksUnavailable("JWKS response was cut short")
    return bytes(body)


def parse_jwks(body: bytes) -> dict[str, dict[str, Any]]:
    """The usable keys of a JWKS document by kid. Raises JwksUnavailable for a non-key-set."""
    try:
        document = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError):
        raise JwksUnavailable("JWKS is not JSON") from None
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list):
        raise JwksUnavailable('JWKS has no "keys" list')
    # Entries we cannot index are skipped rather than failing the set, so an issuer adding a key
    # type we do not know does not take verification down; such a key is never selected.
    usable = {
        key["kid"]: key
        for key in keys
        if isinstance(key, dict) and isinstance(key.get("kid"), str) and isinstance(key.get("kty"), str)
    }
    if not usable:
        raise JwksUnavailable("JWKS has no keys with a kid")
    return usable


class JwksCache:
    """The keys of one JWKS URL, fetched lazily and again only for an unknown kid, at most once
    per cooldown. A fetch that fails or returns junk leaves the cached keys as they were."""

    def __init__(
        self,
        url: str,
        *,
        cooldown_seconds: float = DEFAULT_COOLDOWN_SECONDS,
        timeout_seconds: float = DEFAULT_FETCH_TIMEOUT_SECONDS,
        max_bytes: int = DEFAULT_MAX_JWKS_BYTES,
        clock: Callable[[], float] = time.monotonic,
        fetch: Callable[[str, float, int], bytes] = fetch_jwks,
    ) -> None:
        self.url = url
        self.cooldown_seconds = cooldown_seconds
        self.timeout_seconds = timeout_seconds
        self.max_bytes = max_bytes
        self._clock = clock
        self._fetch = fetch
        self._jwks: dict[str, dict[str, Any]] = {}
        self._keys: dict[tuple[str, str], tuple[dict[str, Any], jwt.PyJWK]] = {}
        self._last_attempt: float | None = None
        self._last_error: str | None = None
        # Lambda runs one request per container, but the local stack serves threads: one fetch
        # for many concurrent misses.
        self._lock = threading.Lock()

    def jwk(self, kid: str) -> dict[str, Any]:
        """The JWK for `kid`, fetching the JWKS if needed and allowed. Raises UnacceptableKey."""
        jwk = self._jwks.get(kid)
        if jwk is not None:
            return jwk
        with self._lock:
            jwk = self._jwks.get(kid)
            if jwk is None and self._may_fetch():
                self._refresh()
                jwk = self._jwks.get(kid)
        if jwk is not None:
            return jwk
        if not self._jwks:
            raise JwksUnavailable(self._last_error or "JWKS not available")
        raise UnacceptableKey("unknown_kid", "the token's kid is not in the issuer's JWKS")

    def key(self, jwk: dict[str, Any], algorithm: str) -> jwt.PyJWK:
        """The verification key for a JWK returned by `jwk()`, built once per JWK and algorithm."""
        cached = self._keys.get((jwk["kid"], algorithm))
        # Identity, not the kid alone: a rotated set may reuse a kid for new material.
        if cached is not None and cached[0] is jwk:
            return cached[1]
        try:
            key = jwt.PyJWK(jwk, algorithm=algorithm)
        except PyJWTError as error:
            raise UnacceptableKey("jwk_invalid", f"JWK cannot be used: {type(error).__name__}") from None
        self._keys[(jwk["kid"], algorithm)] = (jwk, key)
        return key

    def _may_fetch(self) -> bool:
        return self._last_attempt is None or self._clock() - self._last_attempt >= self.cooldown_seconds

    def _refresh(self) -> None:
        self._last_attempt = self._clock()
        try:
            jwks = parse_jwks(self._fetch(self.url, self.timeout_seconds, self.max_bytes))
        except JwksUnavailable as error:
            self._last_error = str(error)
            logger.warning(
                "JWKS refresh failed; keeping %d cached keys", len(self._jwks), extra={"error": str(error)}
            )
            return
        self._last_error = None
        self._jwks = jwks
        self._keys = {}


_CACHES: dict[str, JwksCache] = {}
_CACHES_LOCK = threading.Lock()


def jwks_cache(url: str) -> JwksCache:
    """The process-wide cache for `url`, so warm invocations reuse the keys."""
    with _CACHES_LOCK:
        cache = _CACHES.get(url)
        if cache is None:
            cache = _CACHES[url] = JwksCache(url)
        return cache


# ---------------------------------------------------------------- verification


class JwtVerifier:
    def __init__(
        self,
        config: VerifierConfig,
        jwks: JwksCache,
        *,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.jwks = jwks
        self._now = now
        self._jws = jwt.PyJWS(algorithms=list(ALGORITHMS))

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of `token` if it is valid for this API now; raises TokenRejected otherwise."""
        if not isinstance(token, str) or not token:
            raise MalformedToken("malformed", "token is empty")
        if len(token) > self.config.max_token_chars:
            raise MalformedToken(
                "too_large", f"token is longer than {self.config.max_token_chars} characters"
            )
        if not _COMPACT_JWS.fullmatch(token):
            raise MalformedToken("malformed", "token is not three base64url segments")

        header = _decode_segment(token.partition(".")[0], "header")
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or alg not in ALGORITHMS:
            raise UnacceptableKey("bad_algorithm", "token algorithm is not an allowed asymmetric algorithm")
        if not isinstance(kid, str) or not kid:
            raise UnacceptableKey("missing_kid", "token header has no kid")

        jwk = self.jwks.jwk(kid)
        _check_jwk(jwk, alg)
        key = self.jwks.key(jwk, alg)
        try:
            signed = self._jws.decode_complete(token, key=key, algorithms=[alg])
        except InvalidSignatureError:
            raise BadSignature("bad_signature", "signature does not verify") from None
        except PyJWTError as error:
            raise MalformedToken("malformed", f"token rejected by PyJWS: {type(error).__name__}") from None

        claims = _parse_claims(signed["payload"])
        self._check_claims(claims)
        return claims

    def _check_claims(self, claims: dict[str, Any]) -> None:
        config = self.config
        if claims.get("iss") != config.issuer:
            raise InvalidClaims("wrong_issuer", "token was not issued by the trusted issuer")

        token_use = claims.get("token_use")
        if (config.cognito or token_use is not None) and token_use != config.token_use:
            raise InvalidClaims("wrong_token_use", f"expected an {config.token_use} token")
        if config.token_use == ACCESS:
            if claims.get("client_id") != config.client_id:
                raise InvalidClaims("wrong_client", "token was issued to another client")
        else:
            aud = claims.get("aud")
            audiences = [aud] if isinstance(aud, str) else aud or []
            if config.client_id not in audiences:
                raise InvalidClaims("wrong_audience", "token audience does not include this client")

        now, leeway = self._now(), config.leeway_seconds
        if claims["exp"] + leeway < now:
            raise InvalidClaims("expired", "token has expired")
        if "nbf" in claims and claims["nbf"] - leeway > now:
            raise InvalidClaims("not_yet_valid", "token is not valid yet (nbf)")
        if "iat" in claims and claims["iat"] - leeway > now:
            raise InvalidClaims("issued_in_future", "token was issued in the future (iat)")


def _check_jwk(jwk: Mapping[str, Any], alg: str) -> None:
    """aws-jwt-verify's validateJwtHeaderAndJwk, plus the curve each EC/OKP algorithm needs."""
    kty, curves = ALGORITHMS[alg]
    if "use" in jwk and jwk["use"] != "sig":
        raise UnacceptableKey("jwk_use", "JWK is not a signature key")
    if jwk.get("kty") != kty:
        raise UnacceptableKey("jwk_kty", f"JWK type does not fit {alg}")
    if curves is not None and jwk.get("crv") not in curves:
        raise UnacceptableKey("jwk_kty", f"JWK curve does not fit {alg}")
    if "alg" in jwk and jwk["alg"] != alg:
        raise UnacceptableKey("jwk_alg", "JWK is for another algorithm")


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate member names")
    return result


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(
            raw.decode("utf-8"), parse_constant=_reject_constant, object_pairs_hook=_reject_duplicates
        )
    except (UnicodeDecodeError, ValueError):
        raise MalformedToken("malformed", f"token {what} is not JSON without duplicate names") from None
    if not isinstance(value, dict):
        raise MalformedToken("malformed", f"token {what} is not a JSON object")
    return value


def _decode_segment(segment: str, what: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise MalformedToken("malformed", f"token {what} is not base64url") from None
    return _json_object(raw, what)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


# Claim -> (type test, required). aws-jwt-verify's assertJwtPayload, with exp and sub required:
# API Gateway caches decisions per header, and the integration keys storage by sub.
_CLAIM_TYPES: dict[str, tuple[Callable[[Any], bool], bool]] = {
    "exp": (_is_number, True),
    "sub": (_is_text, True),
    "iss": (_is_text, True),
    "nbf": (_is_number, False),
    "iat": (_is_number, False),
    "auth_time": (_is_number, False),
    "aud": (lambda v: _is_text(v) or (isinstance(v, list) and all(_is_text(a) for a in v)), False),
    "client_id": (_is_text, False),
    "token_use": (_is_text, False),
    "username": (_is_text, False),
    "cognito:username": (_is_text, False),
    "scope": (lambda v: isinstance(v, str), False),
    "jti": (_is_text, False),
}


def _parse_claims(payload: bytes) -> dict[str, Any]:
    claims = _json_object(payload, "payload")
    for name, (is_valid, required) in _CLAIM_TYPES.items():
        if name not in claims:
            if required:
                raise MalformedToken("bad_claim", f"token has no {name} claim")
        elif not is_valid(claims[name]):
            raise MalformedToken("bad_claim", f"token claim {name} has the wrong type")
    return claims


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` value; the scheme is case-insensitive (RFC 9110)."""
    parts = (authorization or "").split(None, 1)
    if not parts:
        raise MalformedToken("missing_token", "no Authorization header")
    if parts[0].lower() != "bearer":
        raise MalformedToken("not_bearer", "Authorization scheme is not Bearer")
    if len(parts) == 1 or not parts[1].strip():
        raise MalformedToken("missing_token", "Authorization header has no token")
    return parts[1].strip()

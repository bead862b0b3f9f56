"""Verify a Cognito (or OIDC) JWT: a pure `JwtVerifier.verify(token) -> claims` and its JWKS cache.

The checks follow aws-jwt-verify's CognitoJwtVerifier, adding PS* algorithms and three things it
leaves to the caller: a bound on the token's size, `exp` and `sub` being required, and `iat` not
in the future. Timing follows aws-jwt-verify's rule (a token is expired when `exp + leeway < now`,
not yet valid when `nbf - leeway > now`) with a 5 s leeway instead of its 0: Cognito sets no
`nbf`, and a second of skew between an external issuer and Lambda must not deny fresh tokens.

PyJWT does the cryptography (PyJWK builds the key, PyJWS checks the signature against an explicit
allow-list of one algorithm). Claims are checked here, against an injectable clock, because
PyJWT coerces claim types (`int("123")` passes as `exp`) and Python's json accepts NaN.

A Cognito user pool is trusted under each issuer Cognito signs its tokens with: the original
`https://cognito-idp.<region>.amazonaws.com/<pool>`, the updated (multi-Region)
`https://issuer-cognito-idp.<region>.amazonaws.com/<pool>` and, for a replicated pool, the updated
issuer of each replica region. Each issuer has its own JWKS. The token's `iss` picks one before
anything is fetched, so a token naming an untrusted issuer costs no request.

The JWKS cache differs from PyJWKClient where that one fails users: a failed fetch never empties
the cache, and an unknown `kid` triggers at most one fetch per cooldown. A fetch has one deadline
for everything (DNS, connect, TLS, headers, body), follows no redirects and speaks https only
(plain http to loopback, for local stacks and tests).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import http.client
import ipaddress
import json
import logging
import math
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
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
# Python's names, and Lambda's WARN (the template's LogLevel takes Lambda's names; logging knows both).
LOG_LEVELS = ("DEBUG", "INFO", "WARN", "WARNING", "ERROR", "CRITICAL")

# Cognito access tokens are ~1 KB and id tokens a few KB with groups and custom attributes;
# API Gateway caps all request headers at 10 KB anyway.
DEFAULT_MAX_TOKEN_CHARS = 8192
DEFAULT_LEEWAY_SECONDS = 5
# aws-jwt-verify's SimplePenaltyBox waits 10 s after a kid miss. A legitimately rotated key is
# at most 10 s late, while a stream of junk kids costs the issuer at most 6 fetches a minute
# per warm container.
DEFAULT_COOLDOWN_SECONDS = 10.0
# One deadline for the whole fetch (aws-jwt-verify: 1.5 s socket idle, 3 s response). A socket
# timeout alone bounds each read, so a server trickling its headers a byte at a time held a fetch
# for ~12 s; the deadline holds whatever the server does. The authorizer's own timeout
# (template.yaml) leaves room for it, so a slow JWKS is a deny, never a Lambda timeout (a 500).
DEFAULT_FETCH_TIMEOUT_SECONDS = 1.5
# A Cognito JWKS is ~1 KB; anything near this cap is not a key set.
DEFAULT_MAX_JWKS_BYTES = 64 * 1024
# NIST SP 800-131A / SP 800-56B: RSA moduli of 2048 bits and more, public exponents of 65537 and
# more. PyJWT only warns about shorter keys; a JWKS publishing one is refused here.
MIN_RSA_BITS = 2048
MIN_RSA_EXPONENT = 65537
# NumericDate claims outside year 1970..9999 are no real time (and 10**4000 is no float).
_MAX_NUMERIC_DATE = 253_402_300_799

# JWK members by key type: the public ones a key needs, and the private ones no JWKS may carry.
_PUBLIC_MEMBERS = {"RSA": ("n", "e"), "EC": ("crv", "x", "y"), "OKP": ("crv", "x")}
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})

_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", re.ASCII)
_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d+", re.ASCII)
_COGNITO_POOL_ID = re.compile(r"([a-z]{2}(?:-[a-z]+)+-\d+)_[0-9A-Za-z]+", re.ASCII)
# Original and updated (multi-Region) Cognito issuers.
_COGNITO_ISSUER = re.compile(
    r"https://(?:issuer-)?cognito-idp\.[a-z0-9-]+\.amazonaws\.com/[\w-]+_[0-9A-Za-z]+", re.ASCII
)


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
    `jwk_use`, `jwk_kty`, `jwk_alg`, `jwk_invalid`, `jwk_private`, `jwk_weak`, `jwks_unavailable`)."""


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


def check_jwks_url(url: str) -> None:
    """Raise ValueError unless `url` is https, or http to a loopback host (local stacks, tests)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in {"https", "http"}:
        raise ValueError(f"JWKS URL must be https (http only to a loopback host), got {url!r}")
    if not parts.hostname or parts.username is not None or parts.password is not None:
        raise ValueError(f"JWKS URL must name a host and no credentials, got {url!r}")
    _ = parts.port  # raises ValueError for a port that is not one
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ValueError(f"JWKS URL must be https (http only to a loopback host), got {url!r}")


def _is_loopback(host: str) -> bool:
    # By name or literal address, never by what DNS answers.
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_cognito_issuer(issuer: str) -> bool:
    """Cognito tokens always carry `token_use`; tokens of other OIDC issuers need not."""
    return _COGNITO_ISSUER.fullmatch(issuer) is not None


@dataclass(frozen=True)
class VerifierConfig:
    """What a token must be: signed by one of `issuers` (`iss` -> its JWKS URL), for `client_id`."""

    issuers: Mapping[str, str]
    client_id: str
    token_use: str = ACCESS
    leeway_seconds: int = DEFAULT_LEEWAY_SECONDS
    max_token_chars: int = DEFAULT_MAX_TOKEN_CHARS

    def __post_init__(self) -> None:
        if not self.issuers or not all(self.issuers):
            raise ValueError("issuers must name at least one issuer, none empty")
        if not self.client_id:
            raise ValueError("client_id must not be empty")
        if self.token_use not in TOKEN_USES:
            raise ValueError(f"token_use must be one of {TOKEN_USES}, got {self.token_use!r}")
        for jwks_url in self.issuers.values():
            check_jwks_url(jwks_url)
        if self.leeway_seconds < 0 or self.max_token_chars < 1:
            raise ValueError("leeway_seconds must be >= 0 and max_token_chars >= 1")


@dataclass(frozen=True)
class AuthorizerSettings:
    """The authorizer's environment (template.yaml), checked at cold start."""

    client_id: str = env("USER_POOL_CLIENT_ID")
    user_pool_id: str = env("USER_POOL_ID", "")
    replica_regions: tuple[str, ...] = env("USER_POOL_REPLICA_REGIONS", ())
    jwt_issuer: str = env("JWT_ISSUER", "")
    jwks_url: str = env("JWKS_URL", "")
    token_use: str = env("TOKEN_USE", ACCESS)
    region: str = env("AWS_REGION", "")
    # The template's LogLevel, which Powertools reads from here in the other functions.
    log_level: str = env("POWERTOOLS_LOG_LEVEL", "INFO")

    def validate(self) -> None:
        if not self.user_pool_id and not self.jwt_issuer:
            raise SettingsError("set USER_POOL_ID (a Cognito user pool) or JWT_ISSUER (an OIDC issuer)")
        if self.user_pool_id and not self.jwt_issuer and not self._pool_region():
            raise SettingsError(
                f"cannot tell the region of USER_POOL_ID {self.user_pool_id!r}: set AWS_REGION"
            )
        if self.replica_regions and (self.jwt_issuer or not self.user_pool_id):
            raise SettingsError("USER_POOL_REPLICA_REGIONS needs USER_POOL_ID (and no JWT_ISSUER)")
        for region in self.replica_regions:
            if not _REGION.fullmatch(region):
                raise SettingsError(f"USER_POOL_REPLICA_REGIONS: {region!r} is not an AWS region")
        if self.token_use not in TOKEN_USES:
            raise SettingsError(f"TOKEN_USE must be one of {TOKEN_USES}, got {self.token_use!r}")
        if self.log_level.upper() not in LOG_LEVELS:
            raise SettingsError(f"POWERTOOLS_LOG_LEVEL must be one of {LOG_LEVELS}, got {self.log_level!r}")
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
    def issuers(self) -> tuple[str, ...]:
        """Every `iss` the API trusts, the original Cognito issuer first."""
        if self.jwt_issuer:
            return (self.jwt_issuer,)
        pool, region = self.user_pool_id, self._pool_region()
        # A replicated pool keeps its id (and its primary region's prefix) in every region. The
        # updated issuer names the primary region; tokens minted in a replica may name the
        # replica's instead, trusted only for the regions listed.
        return (
            f"https://cognito-idp.{region}.amazonaws.com/{pool}",
            *(
                f"https://issuer-cognito-idp.{name}.amazonaws.com/{pool}"
                for name in dict.fromkeys((region, *self.replica_regions))
            ),
        )

    def verifier_config(self) -> VerifierConfig:
        return VerifierConfig(
            # JWKS_URL (a local stack's key endpoint) serves every trusted issuer.
            issuers={
                issuer: self.jwks_url or f"{issuer.rstrip('/')}/.well-known/jwks.json"
                for issuer in self.issuers
            },
            client_id=self.client_id,
            token_use=self.token_use,
        )


# ---------------------------------------------------------------- JWKS


def fetch_jwks(url: str, timeout: float, max_bytes: int) -> bytes:
    """GET `url` within `timeout` seconds all told, at most `max_bytes`. Raises JwksUnavailable.

    The request runs in a worker thread that the caller waits for until the deadline: socket
    timeouts bound each operation, not their sum, and nothing bounds a DNS lookup. At the
    deadline the worker's socket is shut down so it ends too.
    """
    try:
        check_jwks_url(url)
    except ValueError as error:
        raise JwksUnavailable(str(error)) from None
    fetch = _Fetch(url, timeout, max_bytes)
    worker = threading.Thread(target=fetch.run, name="jwks-fetch", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        fetch.abandon()
        raise JwksUnavailable(f"JWKS did not arrive within {timeout:g} s")
    if fetch.error is not None:
        raise fetch.error
    assert fetch.body is not None
    return fetch.body


class _Fetch:
    def __init__(self, url: str, timeout: float, max_bytes: int) -> None:
        self.url = urllib.parse.urlsplit(url)
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.body: bytes | None = None
        self.error: JwksUnavailable | None = None
        self._connection: http.client.HTTPConnection | None = None
        self._abandoned = False
        self._lock = threading.Lock()

    def run(self) -> None:
        try:
            self.body = self._get()
        except JwksUnavailable as error:
            self.error = error
        except Exception as error:  # noqa: BLE001 - whatever the fetch raised, the JWKS is unavailable
            # HTTPException: a reply that is not HTTP or was cut short; OSError: DNS, connect, TLS,
            # socket timeouts; anything else (a socket shut down under http.client) is the same
            # outcome: no keys from this fetch.
            self.error = JwksUnavailable(f"JWKS fetch failed: {type(error).__name__}: {error}")
        finally:
            self._close()

    def abandon(self) -> None:
        with self._lock:
            self._abandoned = True
            connection = self._connection
        if connection is not None and connection.sock is not None:
            # shutdown() wakes a thread blocked in recv(); close() alone would not. On the plain
            # socket level, so the TLS object the worker is using is left alone. OSError: the
            # worker closed it first, so there is nothing left to wake.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(connection.sock, socket.SHUT_RDWR)

    def _get(self) -> bytes:
        host, port, path = self.url.hostname or "", self.url.port, self.url.path or "/"
        if self.url.query:
            path = f"{path}?{self.url.query}"
        connection: http.client.HTTPConnection
        if self.url.scheme == "https":
            connection = http.client.HTTPSConnection(
                host, port, timeout=self.timeout, context=ssl.create_default_context()
            )
        else:
            connection = http.client.HTTPConnection(host, port, timeout=self.timeout)
        with self._lock:
            if self._abandoned:
                raise JwksUnavailable("JWKS fetch abandoned")
            self._connection = connection
        # http.client never follows redirects: a 3xx is an answer that is not the key set.
        connection.request("GET", path, headers={"Accept": "application/json", "User-Agent": "imgpipe"})
        response = connection.getresponse()
        if response.status != 200:
            raise JwksUnavailable(f"JWKS answered HTTP {response.status} (redirects are not followed)")
        if response.length is not None and response.length > self.max_bytes:
            raise JwksUnavailable(f"JWKS is larger than {self.max_bytes} bytes")
        body = bytearray()
        while chunk := response.read1(16384):
            body += chunk
            if len(body) > self.max_bytes:
                raise JwksUnavailable(f"JWKS is larger than {self.max_bytes} bytes")
        # read1() reports a connection closed early as the end of the body; the framing says otherwise.
        if response.length:
            raise JwksUnavailable("JWKS response was cut short")
        return bytes(body)

    def _close(self) -> None:
        with self._lock:
            connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


def parse_jwks(body: bytes) -> dict[str, dict[str, Any]]:
    """The usable keys of a JWKS document by kid. Raises JwksUnavailable for a non-key-set."""
    try:
        document = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
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
        """The verification key for a JWK returned by `jwk()`, built once per JWK and algorithm.

        Raises UnacceptableKey for a JWK that is not a sound public key for `algorithm`.
        """
        cached = self._keys.get((jwk["kid"], algorithm))
        # Identity, not the kid alone: a rotated set may reuse a kid for new material.
        if cached is not None and cached[0] is jwk:
            return cached[1]
        _check_jwk(jwk, algorithm)
        try:
            key = jwt.PyJWK(jwk, algorithm=algorithm)
        except (PyJWTError, ValueError, TypeError) as error:
            raise UnacceptableKey("jwk_invalid", f"JWK cannot be used: {type(error).__name__}") from None
        _check_key_strength(key)
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
        *,
        jwks: Callable[[str], JwksCache] = jwks_cache,
        now: Callable[[], float] = time.time,
    ) -> None:
        """`jwks` gives the key cache of a JWKS URL (issuers sharing a URL share its cache)."""
        self.config = config
        self.jwks = {issuer: jwks(url) for issuer, url in config.issuers.items()}
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

        header_segment, payload_segment, _signature = token.split(".")
        header = _decode_segment(header_segment, "header")
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or alg not in ALGORITHMS:
            raise UnacceptableKey("bad_algorithm", "token algorithm is not an allowed asymmetric algorithm")
        if not isinstance(kid, str) or not kid:
            raise UnacceptableKey("missing_kid", "token header has no kid")
        # The issuer picks the key set (aws-jwt-verify does the same), so it is read before the
        # signature is checked; an untrusted one is refused without fetching anything.
        issuer = _decode_segment(payload_segment, "payload").get("iss")
        if not isinstance(issuer, str) or not issuer:
            raise MalformedToken("bad_claim", "token has no iss claim")
        jwks = self.jwks.get(issuer)
        if jwks is None:
            raise InvalidClaims("wrong_issuer", "token was not issued by a trusted issuer")

        key = jwks.key(jwks.jwk(kid), alg)
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
        if claims["iss"] not in config.issuers:
            raise InvalidClaims("wrong_issuer", "token was not issued by a trusted issuer")

        token_use = claims.get("token_use")
        if (is_cognito_issuer(claims["iss"]) or token_use is not None) and token_use != config.token_use:
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
    """aws-jwt-verify's validateJwtHeaderAndJwk, plus the curve each EC/OKP algorithm needs, the
    public members' types, and no private members."""
    kty, curves = ALGORITHMS[alg]
    if "use" in jwk and jwk["use"] != "sig":
        raise UnacceptableKey("jwk_use", "JWK is not a signature key")
    if jwk.get("kty") != kty:
        raise UnacceptableKey("jwk_kty", f"JWK type does not fit {alg}")
    if "alg" in jwk and jwk["alg"] != alg:
        raise UnacceptableKey("jwk_alg", "JWK is for another algorithm")
    # A published private key means the issuer's key is compromised (and PyJWT would load it as
    # a private key, which cannot verify).
    if _PRIVATE_MEMBERS.intersection(jwk):
        raise UnacceptableKey("jwk_private", "JWK carries private key members")
    if not all(_is_text(jwk.get(member)) for member in _PUBLIC_MEMBERS[kty]):
        raise UnacceptableKey("jwk_invalid", f"JWK lacks {'/'.join(_PUBLIC_MEMBERS[kty])} as strings")
    if curves is not None and jwk["crv"] not in curves:
        raise UnacceptableKey("jwk_kty", f"JWK curve does not fit {alg}")


def _check_key_strength(key: jwt.PyJWK) -> None:
    public = key.key
    if isinstance(public, rsa.RSAPublicKey):
        if public.key_size < MIN_RSA_BITS:
            raise UnacceptableKey("jwk_weak", f"RSA key has {public.key_size} bits, under {MIN_RSA_BITS}")
        if public.public_numbers().e < MIN_RSA_EXPONENT:
            raise UnacceptableKey("jwk_weak", f"RSA public exponent is under {MIN_RSA_EXPONENT}")


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
    except (UnicodeDecodeError, ValueError, RecursionError):
        # ValueError covers integers past Python's 4300-digit limit; RecursionError, deep nesting.
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


def _is_numeric_date(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    # Compared as they are: float(10**4000) would raise OverflowError.
    return (isinstance(value, int) or math.isfinite(value)) and 0 <= value <= _MAX_NUMERIC_DATE


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


# Claim -> (type test, required). aws-jwt-verify's assertJwtPayload, with exp and sub required:
# API Gateway caches decisions per header, and the integration keys storage by sub.
_CLAIM_TYPES: dict[str, tuple[Callable[[Any], bool], bool]] = {
    "exp": (_is_numeric_date, True),
    "sub": (_is_text, True),
    "iss": (_is_text, True),
    "nbf": (_is_numeric_date, False),
    "iat": (_is_numeric_date, False),
    "auth_time": (_is_numeric_date, False),
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

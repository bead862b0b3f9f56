"""imgpipe.jwt_verify against real keys, real tokens and a real JWKS endpoint on 127.0.0.1.

Rejections assert the reason code, so each check has a test that fails if that check goes: with
a check removed, the token is either accepted or rejected later for another reason.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from imgpipe import jwt_verify
from imgpipe.jwt_verify import (
    AuthorizerSettings,
    BadSignature,
    InvalidClaims,
    JwksCache,
    JwksUnavailable,
    JwtVerifier,
    MalformedToken,
    TokenRejected,
    UnacceptableKey,
    VerifierConfig,
    bearer_token,
)
from imgpipe.settings import SettingsError, load
from tests.jwt_support import (
    CLIENT_ID,
    DROP,
    ISSUER,
    JWKS_PATH,
    NOW,
    POOL_ID,
    SUB,
    UPDATED_ISSUER,
    FakeClock,
    JwksServer,
    SigningKey,
    access_claims,
    b64url,
    ec_key,
    id_claims,
    okp_key,
    rsa_key,
)

# Key generation is the slow part; one set of keys serves the module.
RSA = rsa_key("rsa-1")
RSA_OTHER = rsa_key("rsa-2")
EC256 = ec_key("ec-256", "ES256")


@pytest.fixture
def server() -> Iterator[JwksServer]:
    with JwksServer(keys=[RSA.jwk(), EC256.jwk()]) as jwks:
        yield jwks


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_verifier(
    server: JwksServer,
    clock: FakeClock | None = None,
    *,
    timeout: float = 5,
    issuer: str = ISSUER,
    **config: Any,
) -> JwtVerifier:
    cache = JwksCache(server.url, clock=clock or FakeClock(), timeout_seconds=timeout)
    settings = VerifierConfig(issuers={issuer: server.url}, client_id=CLIENT_ID, **config)
    return JwtVerifier(settings, jwks={server.url: cache}.__getitem__, now=lambda: NOW)


def cache_of(verifier: JwtVerifier) -> JwksCache:
    (cache,) = set(verifier.jwks.values())
    return cache


def private_jwk(key: SigningKey) -> dict[str, Any]:
    if isinstance(key.private, rsa.RSAPrivateKey):
        return RSAAlgorithm.to_jwk(key.private, as_dict=True)
    if isinstance(key.private, ec.EllipticCurvePrivateKey):
        return ECAlgorithm.to_jwk(key.private, as_dict=True)
    return OKPAlgorithm.to_jwk(key.private, as_dict=True)


def rejected(verifier: JwtVerifier, token: str) -> TokenRejected:
    with pytest.raises(TokenRejected) as caught:
        verifier.verify(token)
    if token:
        assert token not in str(caught.value)
    return caught.value


# ---------------------------------------------------------------- accepted tokens


def test_cognito_access_token_verifies_and_returns_its_claims(server: JwksServer) -> None:
    claims = make_verifier(server).verify(RSA.sign(access_claims()))

    assert claims["sub"] == SUB
    assert claims["username"] == "demo"
    assert claims["client_id"] == CLIENT_ID


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(rsa_key("rs256", "RS256"), id="RS256"),
        pytest.param(SigningKey("rs384", "RS384", RSA.private), id="RS384"),
        pytest.param(SigningKey("rs512", "RS512", RSA.private), id="RS512"),
        pytest.param(SigningKey("ps256", "PS256", RSA.private), id="PS256"),
        pytest.param(SigningKey("ps384", "PS384", RSA.private), id="PS384"),
        pytest.param(SigningKey("ps512", "PS512", RSA.private), id="PS512"),
        pytest.param(ec_key("es256", "ES256"), id="ES256"),
        pytest.param(ec_key("es384", "ES384"), id="ES384"),
        pytest.param(ec_key("es512", "ES512"), id="ES512"),
        pytest.param(okp_key("ed25519", "Ed25519"), id="EdDSA-Ed25519"),
        pytest.param(okp_key("ed448", "Ed448"), id="EdDSA-Ed448"),
    ],
)
def test_every_allowed_asymmetric_algorithm_verifies(key: SigningKey) -> None:
    with JwksServer(keys=[key.jwk()]) as server:
        assert make_verifier(server).verify(key.sign(access_claims()))["sub"] == SUB


def test_jwk_without_use_or_alg_is_accepted(server: JwksServer) -> None:
    # Both are optional in RFC 7517; aws-jwt-verify checks them only when present.
    server.keys = [RSA.jwk(use=DROP, alg=DROP)]

    assert make_verifier(server).verify(RSA.sign(access_claims()))["sub"] == SUB


def test_id_token_verifies_when_configured_for_id_tokens(server: JwksServer) -> None:
    verifier = make_verifier(server, token_use="id")

    assert verifier.verify(RSA.sign(id_claims()))["cognito:username"] == "demo"
    assert verifier.verify(RSA.sign(id_claims(aud=["other", CLIENT_ID])))["sub"] == SUB


def test_other_oidc_issuer_needs_no_token_use(server: JwksServer) -> None:
    # Only Cognito promises token_use; an RFC 9068 access token still names its client.
    issuer = "https://auth.example.com/"
    verifier = make_verifier(server, issuer=issuer)

    claims = verifier.verify(RSA.sign(access_claims(iss=issuer, token_use=DROP)))

    assert claims["sub"] == SUB
    assert rejected(verifier, RSA.sign(access_claims(iss=issuer, token_use="id"))).reason == "wrong_token_use"


# ---------------------------------------------------------------- trusted issuers


def test_each_cognito_issuer_format_verifies_against_its_own_jwks() -> None:
    # Given the pool's original and updated issuers, each serving its own keys
    with JwksServer(keys=[RSA.jwk()]) as original, JwksServer(keys=[RSA_OTHER.jwk()]) as updated:
        caches = {server.url: JwksCache(server.url, clock=FakeClock()) for server in (original, updated)}
        config = VerifierConfig(
            issuers={ISSUER: original.url, UPDATED_ISSUER: updated.url}, client_id=CLIENT_ID
        )
        verifier = JwtVerifier(config, jwks=caches.__getitem__, now=lambda: NOW)

        # Then tokens of both formats verify, each with its issuer's keys only
        assert verifier.verify(RSA.sign(access_claims()))["sub"] == SUB
        assert verifier.verify(RSA_OTHER.sign(access_claims(iss=UPDATED_ISSUER)))["sub"] == SUB
        assert (original.requests, updated.requests) == (1, 1)
        assert rejected(verifier, RSA.sign(access_claims(iss=UPDATED_ISSUER))).reason == "unknown_kid"
        assert rejected(verifier, RSA_OTHER.sign(access_claims())).reason == "unknown_kid"
        # And the updated issuer keeps Cognito's checks
        token = RSA_OTHER.sign(access_claims(iss=UPDATED_ISSUER, token_use=DROP))
        assert rejected(verifier, token).reason == "wrong_token_use"


@pytest.mark.parametrize(
    "iss",
    [
        "https://issuer-cognito-idp.us-east-1.amazonaws.com/us-east-1_Other1",
        f"https://issuer-cognito-idp.eu-west-1.amazonaws.com/{POOL_ID}",  # a replica not listed
        f"https://cognito-idp.eu-west-1.amazonaws.com/{POOL_ID}",
        f"https://issuer.cognito-idp.us-east-1.amazonaws.com/{POOL_ID}",
        f"http://issuer-cognito-idp.us-east-1.amazonaws.com/{POOL_ID}",
        UPDATED_ISSUER + "/",
    ],
)
def test_tokens_of_untrusted_issuers_are_refused_before_any_fetch(server: JwksServer, iss: str) -> None:
    settings = load(AuthorizerSettings, {"USER_POOL_ID": POOL_ID, "USER_POOL_CLIENT_ID": CLIENT_ID})
    verifier = trusting(server, settings.issuers)

    assert rejected(verifier, RSA.sign(access_claims(iss=iss))).reason == "wrong_issuer"
    assert server.requests == 0


def test_replica_regions_tokens_verify_when_listed(server: JwksServer) -> None:
    # A pool replicated from us-east-1 to eu-west-1: tokens minted there name eu-west-1 in the host.
    environ = {
        "USER_POOL_ID": POOL_ID,
        "USER_POOL_CLIENT_ID": CLIENT_ID,
        "USER_POOL_REPLICA_REGIONS": "eu-west-1",
    }
    verifier = trusting(server, load(AuthorizerSettings, environ).issuers)
    replica = f"https://issuer-cognito-idp.eu-west-1.amazonaws.com/{POOL_ID}"

    for iss in (ISSUER, UPDATED_ISSUER, replica):
        assert verifier.verify(RSA.sign(access_claims(iss=iss)))["iss"] == iss
    assert (
        rejected(verifier, RSA.sign(access_claims(iss=replica, token_use=DROP))).reason == "wrong_token_use"
    )
    unlisted = f"https://issuer-cognito-idp.ap-south-1.amazonaws.com/{POOL_ID}"
    assert rejected(verifier, RSA.sign(access_claims(iss=unlisted))).reason == "wrong_issuer"


def trusting(server: JwksServer, issuers: tuple[str, ...]) -> JwtVerifier:
    """A verifier for `issuers`, all served by `server` (the real hosts are out of reach)."""
    cache = JwksCache(server.url, clock=FakeClock())
    config = VerifierConfig(issuers=dict.fromkeys(issuers, server.url), client_id=CLIENT_ID)
    return JwtVerifier(config, jwks={server.url: cache}.__getitem__, now=lambda: NOW)


# ---------------------------------------------------------------- header and key checks


def test_alg_none_is_rejected(server: JwksServer) -> None:
    header = b64url({"alg": "none", "kid": RSA.kid, "typ": "JWT"})
    payload = b64url(access_claims())
    verifier = make_verifier(server)

    assert rejected(verifier, f"{header}.{payload}.").reason == "malformed"  # empty signature
    assert rejected(verifier, f"{header}.{payload}.c2ln").reason == "bad_algorithm"
    assert server.requests == 0


def test_hs256_signed_with_the_public_key_is_rejected(server: JwksServer) -> None:
    # The classic confusion attack: HMAC keyed with the (public) RSA key, hoping the verifier
    # feeds the key it found for the kid to whatever algorithm the header names.
    public_pem = RSA.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = f"{b64url({'alg': 'HS256', 'kid': RSA.kid})}.{b64url(access_claims())}"
    signature = b64url(hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest())

    error = rejected(make_verifier(server), f"{signing_input}.{signature}")

    assert isinstance(error, UnacceptableKey)
    assert error.reason == "bad_algorithm"
    assert server.requests == 0


@pytest.mark.parametrize("alg", ["HS256", "HS512", "ES256K", "RS1", "rs256", 256, None])
def test_algorithms_outside_the_allow_list_are_rejected(server: JwksServer, alg: Any) -> None:
    token = f"{b64url({'alg': alg, 'kid': RSA.kid})}.{b64url(access_claims())}.c2ln"

    assert rejected(make_verifier(server), token).reason == "bad_algorithm"


@pytest.mark.parametrize("kid", [DROP, "", 7, None, ["rsa-1"]])
def test_kid_is_required_and_must_be_a_string(server: JwksServer, kid: Any) -> None:
    token = RSA.forge(access_claims(), kid=kid)

    assert rejected(make_verifier(server), token).reason == "missing_kid"
    assert server.requests == 0


def test_unknown_kid_is_rejected(server: JwksServer) -> None:
    token = RSA_OTHER.sign(access_claims())

    error = rejected(make_verifier(server), token)

    assert error.reason == "unknown_kid"
    assert server.requests == 1


def test_jwk_use_must_be_sig(server: JwksServer) -> None:
    server.keys = [RSA.jwk(use="enc")]

    assert rejected(make_verifier(server), RSA.sign(access_claims())).reason == "jwk_use"


@pytest.mark.parametrize(
    ("jwk", "token"),
    [
        # An ES256 header naming an RSA key.
        pytest.param(
            lambda: RSA.jwk(alg=DROP), lambda: EC256.sign(access_claims(), kid=RSA.kid), id="RSA-for-ES256"
        ),
        # An RS256 header naming an EC key.
        pytest.param(
            lambda: EC256.jwk(alg=DROP), lambda: RSA.sign(access_claims(), kid=EC256.kid), id="EC-for-RS256"
        ),
        # ES256 requires P-256; a P-384 key is the wrong curve even though both are EC.
        pytest.param(
            lambda: ec_key("p384", "ES384").jwk(alg=DROP, kid=EC256.kid),
            lambda: EC256.sign(access_claims()),
            id="P384-for-ES256",
        ),
    ],
)
def test_jwk_kty_and_curve_must_fit_the_algorithm(server: JwksServer, jwk: Any, token: Any) -> None:
    server.keys = [jwk()]

    assert rejected(make_verifier(server), token()).reason == "jwk_kty"


def test_jwk_alg_must_equal_the_header_alg(server: JwksServer) -> None:
    # The key would verify this RS256 signature, but its owner published it for RS512 only.
    server.keys = [RSA.jwk(alg="RS512")]

    assert rejected(make_verifier(server), RSA.sign(access_claims())).reason == "jwk_alg"


def test_jwk_that_pyjwt_cannot_load_is_rejected(server: JwksServer) -> None:
    # Well-typed members, but e is not below n: PyJWK (cryptography) refuses to build the key.
    server.keys = [RSA.jwk(n="AQAB")]

    assert rejected(make_verifier(server), RSA.sign(access_claims())).reason == "jwk_invalid"


@pytest.mark.parametrize(
    ("key", "overrides"),
    [
        pytest.param(EC256, {"crv": ["P-256"]}, id="crv-list"),
        pytest.param(EC256, {"crv": {"P-256": 1}}, id="crv-object"),
        pytest.param(EC256, {"x": 5}, id="x-number"),
        pytest.param(EC256, {"y": DROP}, id="y-missing"),
        pytest.param(RSA, {"n": ["AQAB"]}, id="n-list"),
        pytest.param(RSA, {"e": None}, id="e-null"),
        pytest.param(RSA, {"e": ""}, id="e-empty"),
        pytest.param(RSA, {"n": "!!not base64!!"}, id="n-not-base64url"),
        pytest.param(okp_key("ed", "Ed25519"), {"x": ["a"]}, id="okp-x-list"),
        pytest.param(okp_key("ed", "Ed25519"), {"crv": 25519}, id="okp-crv-number"),
    ],
)
def test_jwk_with_a_malformed_member_is_rejected_not_an_error(
    key: SigningKey, overrides: dict[str, Any]
) -> None:
    with JwksServer(keys=[key.jwk(**overrides)]) as server:
        error = rejected(make_verifier(server), key.sign(access_claims()))

    assert error.reason in {"jwk_invalid", "jwk_kty"}


@pytest.mark.parametrize(
    ("key", "private_member"),
    [
        pytest.param(RSA, "d", id="RSA-d"),
        pytest.param(RSA, "p", id="RSA-p"),
        pytest.param(RSA, "qi", id="RSA-qi"),
        pytest.param(EC256, "d", id="EC-d"),
        pytest.param(okp_key("ed", "Ed25519"), "d", id="OKP-d"),
        pytest.param(RSA, "k", id="oct-k"),
    ],
)
def test_jwk_carrying_private_key_members_is_rejected(key: SigningKey, private_member: str) -> None:
    # The real private JWK (PyJWT would load it as a private key, which then cannot verify).
    jwk = {**private_jwk(key), "kid": key.kid, "alg": key.alg, "use": "sig"}
    jwk.setdefault(private_member, "AQAB")
    with JwksServer(keys=[jwk]) as server:
        assert rejected(make_verifier(server), key.sign(access_claims())).reason == "jwk_private"


@pytest.mark.parametrize(
    ("bits", "exponent"), [pytest.param(1024, 65537, id="1024-bit"), pytest.param(2048, 3, id="e=3")]
)
def test_weak_rsa_keys_are_refused(bits: int, exponent: int) -> None:
    weak = SigningKey("weak", "RS256", rsa.generate_private_key(public_exponent=exponent, key_size=bits))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyJWT warns about signing with a short key, as it should
        token = weak.sign(access_claims())
    with JwksServer(keys=[weak.jwk()]) as server, warnings.catch_warnings():
        warnings.simplefilter("error")  # and the verifier neither warns nor accepts

        assert rejected(make_verifier(server), token).reason == "jwk_weak"


def test_hostile_jwk_members_always_end_in_a_rejection(server: JwksServer) -> None:
    # Every member of every key type replaced by every JSON type: a TokenRejected each time,
    # never another exception (which the handler could only report as internal_error).
    values: list[Any] = [None, True, 0, -1, 10**400, 1.5, "", "AQAB", "!!", [], ["AQAB"], {}, {"a": 1}, DROP]
    keys = [RSA, EC256, okp_key("ed", "Ed25519")]
    outcomes: set[str] = set()
    for key in keys:
        for member in ("kty", "crv", "n", "e", "x", "y", "alg", "use", "kid"):
            for value in values:
                server.keys = [key.jwk(**{member: value})]
                verifier = make_verifier(server)
                try:
                    verifier.verify(key.sign(access_claims()))
                    outcomes.add("accepted")
                except TokenRejected as error:
                    outcomes.add(error.reason)

    assert "accepted" in outcomes  # members a key does not use are ignored
    assert outcomes <= {
        "accepted",
        "jwk_invalid",
        "jwk_kty",
        "jwk_alg",
        "jwk_use",
        "unknown_kid",
        "jwks_unavailable",
        "bad_signature",
    }


def test_hostile_signatures_always_end_in_a_rejection(server: JwksServer) -> None:
    for key in (RSA, EC256, SigningKey("ps", "PS256", RSA.private), okp_key("ed", "Ed25519")):
        server.keys = [key.jwk()]
        verifier = make_verifier(server)
        header, payload, _signature = key.sign(access_claims()).split(".")
        for signature in ("A", "AA", "AAAA", b64url(b"\x00" * 64), b64url(b"\xff" * 132), b64url(b"x" * 600)):
            error = rejected(verifier, f"{header}.{payload}.{signature}")
            assert error.reason in {"bad_signature", "malformed"}, (key.alg, signature)


def test_signature_from_another_key_is_rejected(server: JwksServer) -> None:
    forged = RSA_OTHER.sign(access_claims(), kid=RSA.kid)

    error = rejected(make_verifier(server), forged)

    assert isinstance(error, BadSignature)
    assert error.reason == "bad_signature"


def test_tampered_payload_is_rejected(server: JwksServer) -> None:
    header, _payload, signature = RSA.sign(access_claims()).split(".")
    tampered = f"{header}.{b64url(access_claims(sub='someone-else'))}.{signature}"

    assert rejected(make_verifier(server), tampered).reason == "bad_signature"


# ---------------------------------------------------------------- size and shape


def test_oversize_token_is_rejected_before_parsing(server: JwksServer) -> None:
    token = RSA.sign(access_claims(padding="x" * 9000))
    assert len(token) > jwt_verify.DEFAULT_MAX_TOKEN_CHARS

    assert rejected(make_verifier(server), token).reason == "too_large"
    assert server.requests == 0
    # The same token is otherwise valid: the size alone rejected it.
    assert make_verifier(server, max_token_chars=len(token)).verify(token)["sub"] == SUB


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("", id="empty"),
        pytest.param("abc", id="one-segment"),
        pytest.param("abc.def", id="two-segments"),
        pytest.param("abc.def.ghi.jkl", id="four-segments"),
        pytest.param("abc..ghi", id="empty-payload"),
        pytest.param(".def.ghi", id="empty-header"),
        pytest.param("abc.def.ghi=", id="padding"),
        pytest.param("abc.def.gh i", id="space"),
        pytest.param("abc.déf.ghi", id="non-ascii"),
        pytest.param("ab+c.def.ghi", id="base64-not-url"),
        pytest.param(f"{b64url(b'not json')}.e30.c2ln", id="header-not-json"),
        pytest.param(f"{b64url([1, 2])}.e30.c2ln", id="header-not-object"),
        pytest.param(f"{b64url(b'\xff\xfe')}.e30.c2ln", id="header-not-utf8"),
        pytest.param("a.e30.c2ln", id="header-bad-base64-length"),
    ],
)
def test_malformed_tokens_are_rejected(server: JwksServer, token: str) -> None:
    error = rejected(make_verifier(server), token)

    assert isinstance(error, MalformedToken)
    assert error.reason == "malformed"
    assert server.requests == 0


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"[1, 2]", id="array"),
        pytest.param(b"not json", id="not-json"),
        pytest.param(b'{"sub": "a", "sub": "b"}', id="duplicate-claim"),
        pytest.param(json.dumps(access_claims(exp=float("nan"))).encode(), id="exp-NaN"),
        pytest.param(json.dumps(access_claims(exp=float("inf"))).encode(), id="exp-Infinity"),
    ],
)
def test_signed_payload_that_is_not_a_json_object_is_rejected(server: JwksServer, payload: bytes) -> None:
    # Python's json would take NaN (never expires: every comparison is False) and keep the
    # last of duplicate names; both are refused before any claim is read.
    assert rejected(make_verifier(server), RSA.sign_raw(payload)).reason == "malformed"


# ---------------------------------------------------------------- claims


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"exp": DROP}, id="exp-missing"),
        pytest.param({"exp": str(NOW + 3600)}, id="exp-string"),
        pytest.param({"exp": True}, id="exp-bool"),
        pytest.param({"exp": None}, id="exp-null"),
        pytest.param({"nbf": "0"}, id="nbf-string"),
        pytest.param({"iat": [NOW]}, id="iat-list"),
        pytest.param({"auth_time": "x"}, id="auth_time-string"),
        pytest.param({"sub": DROP}, id="sub-missing"),
        pytest.param({"sub": ""}, id="sub-empty"),
        pytest.param({"sub": 42}, id="sub-number"),
        pytest.param({"iss": DROP}, id="iss-missing"),
        pytest.param({"iss": [ISSUER]}, id="iss-list"),
        pytest.param({"client_id": [CLIENT_ID]}, id="client_id-list"),
        pytest.param({"token_use": 1}, id="token_use-number"),
        pytest.param({"username": 5}, id="username-number"),
        pytest.param({"username": ""}, id="username-empty"),
        pytest.param({"cognito__username": {"a": 1}}, id="cognito:username-object"),
        pytest.param({"scope": ["a"]}, id="scope-list"),
        pytest.param({"jti": 5}, id="jti-number"),
        pytest.param({"aud": 5}, id="aud-number"),
        pytest.param({"aud": [CLIENT_ID, 5]}, id="aud-list-with-number"),
    ],
)
def test_claims_of_the_wrong_type_are_rejected(server: JwksServer, claims: dict[str, Any]) -> None:
    error = rejected(make_verifier(server), RSA.forge(access_claims(**claims)))

    assert isinstance(error, MalformedToken)
    assert error.reason == "bad_claim"


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"exp": 10**4000}, id="exp-10**4000"),
        pytest.param({"exp": 10**20}, id="exp-past-year-9999"),
        pytest.param({"exp": 1e300}, id="exp-1e300"),
        pytest.param({"exp": -1}, id="exp-negative"),
        pytest.param({"nbf": 10**4000}, id="nbf-10**4000"),
        pytest.param({"iat": -(10**4000)}, id="iat-minus-10**4000"),
        pytest.param({"auth_time": 10**100}, id="auth_time-10**100"),
    ],
)
def test_absurd_times_are_bad_claims_not_errors(server: JwksServer, claims: dict[str, Any]) -> None:
    # json reads 10**4000 as an int; float() of it (math.isfinite) raised OverflowError.
    assert rejected(make_verifier(server), RSA.forge(access_claims(**claims))).reason == "bad_claim"


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"[" * 3000 + b"]" * 3000, id="nested-3000-deep"),
        pytest.param(b'{"exp": ' + b"9" * 5000 + b"}", id="int-5000-digits"),
    ],
)
def test_payloads_json_chokes_on_are_malformed_not_errors(server: JwksServer, payload: bytes) -> None:
    verifier = make_verifier(server, max_token_chars=20_000)

    assert rejected(verifier, RSA.sign_raw(payload)).reason == "malformed"


def test_jwks_nested_too_deep_for_json_is_unavailable_not_an_error(server: JwksServer) -> None:
    with pytest.raises(JwksUnavailable):
        jwt_verify.parse_jwks(b'{"keys": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")


def test_float_times_are_numbers_too(server: JwksServer) -> None:
    token = RSA.sign(access_claims(exp=NOW + 0.5, iat=NOW - 0.5, nbf=NOW - 0.5))

    assert make_verifier(server).verify(token)["sub"] == SUB


def test_wrong_issuer_is_rejected(server: JwksServer) -> None:
    other_pool = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Other1"
    verifier = make_verifier(server)

    assert rejected(verifier, RSA.sign(access_claims(iss=other_pool))).reason == "wrong_issuer"
    # Exact match: no trailing-slash or case leniency.
    assert rejected(verifier, RSA.sign(access_claims(iss=ISSUER + "/"))).reason == "wrong_issuer"
    assert rejected(verifier, RSA.sign(access_claims(iss=ISSUER.upper()))).reason == "wrong_issuer"


def test_id_token_is_rejected_where_access_tokens_are_expected(server: JwksServer) -> None:
    error = rejected(make_verifier(server), RSA.sign(id_claims(client_id=CLIENT_ID)))

    assert isinstance(error, InvalidClaims)
    assert error.reason == "wrong_token_use"


def test_access_token_is_rejected_where_id_tokens_are_expected(server: JwksServer) -> None:
    verifier = make_verifier(server, token_use="id")

    assert rejected(verifier, RSA.sign(access_claims(aud=CLIENT_ID))).reason == "wrong_token_use"


def test_cognito_token_without_token_use_is_rejected(server: JwksServer) -> None:
    assert (
        rejected(make_verifier(server), RSA.sign(access_claims(token_use=DROP))).reason == "wrong_token_use"
    )


@pytest.mark.parametrize("client_id", ["another-client", DROP])
def test_access_token_for_another_client_is_rejected(server: JwksServer, client_id: Any) -> None:
    # aud is not a substitute for client_id on access tokens (Cognito sets none).
    token = RSA.sign(access_claims(client_id=client_id, aud=CLIENT_ID))

    assert rejected(make_verifier(server), token).reason == "wrong_client"


@pytest.mark.parametrize("aud", ["another-client", ["a", "b"], [], DROP])
def test_id_token_for_another_audience_is_rejected(server: JwksServer, aud: Any) -> None:
    token = RSA.sign(id_claims(aud=aud, client_id=CLIENT_ID))

    assert rejected(make_verifier(server, token_use="id"), token).reason == "wrong_audience"


LEEWAY = jwt_verify.DEFAULT_LEEWAY_SECONDS


def test_expired_token_is_rejected_after_the_leeway(server: JwksServer) -> None:
    verifier = make_verifier(server)

    assert verifier.verify(RSA.sign(access_claims(exp=NOW - LEEWAY)))["sub"] == SUB
    assert rejected(verifier, RSA.sign(access_claims(exp=NOW - LEEWAY - 1))).reason == "expired"


def test_without_leeway_a_token_expires_on_the_second(server: JwksServer) -> None:
    verifier = make_verifier(server, leeway_seconds=0)

    assert verifier.verify(RSA.sign(access_claims(exp=NOW)))["sub"] == SUB
    assert rejected(verifier, RSA.sign(access_claims(exp=NOW - 1))).reason == "expired"


def test_token_not_yet_valid_is_rejected_beyond_the_leeway(server: JwksServer) -> None:
    verifier = make_verifier(server)

    assert verifier.verify(RSA.sign(access_claims(nbf=NOW + LEEWAY)))["sub"] == SUB
    assert rejected(verifier, RSA.sign(access_claims(nbf=NOW + LEEWAY + 1))).reason == "not_yet_valid"


def test_token_issued_in_the_future_is_rejected_beyond_the_leeway(server: JwksServer) -> None:
    verifier = make_verifier(server)

    assert verifier.verify(RSA.sign(access_claims(iat=NOW + LEEWAY)))["sub"] == SUB
    assert rejected(verifier, RSA.sign(access_claims(iat=NOW + LEEWAY + 1))).reason == "issued_in_future"


# ---------------------------------------------------------------- the JWKS cache


def test_no_fetch_until_the_first_token(server: JwksServer) -> None:
    make_verifier(server)

    assert server.requests == 0


def test_one_fetch_serves_many_verifications(server: JwksServer) -> None:
    verifier = make_verifier(server)

    for _ in range(20):
        verifier.verify(RSA.sign(access_claims()))
        verifier.verify(EC256.sign(access_claims()))

    assert server.requests == 1


def test_concurrent_first_verifications_share_one_fetch(server: JwksServer) -> None:
    verifier = make_verifier(server)
    token = RSA.sign(access_claims())
    results: list[str] = []
    barrier = threading.Barrier(8)

    def verify() -> None:
        barrier.wait()
        results.append(verifier.verify(token)["sub"])

    threads = [threading.Thread(target=verify) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results == [SUB] * 8
    assert server.requests == 1


def test_junk_kids_within_the_cooldown_cause_no_fetch(server: JwksServer, clock: FakeClock) -> None:
    verifier = make_verifier(server, clock)
    verifier.verify(RSA.sign(access_claims()))
    assert server.requests == 1

    # Given a miss that fetched once
    clock.advance(jwt_verify.DEFAULT_COOLDOWN_SECONDS)
    assert rejected(verifier, RSA.sign(access_claims(), kid="junk-0")).reason == "unknown_kid"
    assert server.requests == 2

    # When junk kids keep coming within the cooldown, then nothing is fetched
    for n in range(1, 50):
        clock.advance(0.1)
        assert rejected(verifier, RSA.sign(access_claims(), kid=f"junk-{n}")).reason == "unknown_kid"
    assert server.requests == 2

    # And after the cooldown one more miss fetches once
    clock.advance(jwt_verify.DEFAULT_COOLDOWN_SECONDS)
    assert rejected(verifier, RSA.sign(access_claims(), kid="junk-last")).reason == "unknown_kid"
    assert server.requests == 3
    # Known keys never wait for the cooldown.
    assert verifier.verify(RSA.sign(access_claims()))["sub"] == SUB
    assert server.requests == 3


def test_key_rotation_fetches_once_and_verifies(server: JwksServer, clock: FakeClock) -> None:
    verifier = make_verifier(server, clock)
    verifier.verify(RSA.sign(access_claims()))
    clock.advance(3600)

    # When the issuer publishes a new key and tokens signed with it arrive
    server.keys = [RSA.jwk(), RSA_OTHER.jwk()]
    for _ in range(5):
        assert verifier.verify(RSA_OTHER.sign(access_claims()))["sub"] == SUB

    # Then one fetch picked it up, and the old key still verifies
    assert server.requests == 2
    assert verifier.verify(RSA.sign(access_claims()))["sub"] == SUB
    assert server.requests == 2


def test_new_kid_within_the_cooldown_waits_for_it(server: JwksServer, clock: FakeClock) -> None:
    verifier = make_verifier(server, clock)
    verifier.verify(RSA.sign(access_claims()))
    server.keys = [RSA.jwk(), RSA_OTHER.jwk()]
    clock.advance(1)

    assert rejected(verifier, RSA_OTHER.sign(access_claims())).reason == "unknown_kid"
    assert server.requests == 1

    clock.advance(jwt_verify.DEFAULT_COOLDOWN_SECONDS)
    assert verifier.verify(RSA_OTHER.sign(access_claims()))["sub"] == SUB
    assert server.requests == 2


def test_key_removed_from_the_jwks_stops_verifying_after_a_refresh(
    server: JwksServer, clock: FakeClock
) -> None:
    verifier = make_verifier(server, clock)
    verifier.verify(RSA.sign(access_claims()))
    server.keys = [RSA_OTHER.jwk()]
    clock.advance(3600)

    verifier.verify(RSA_OTHER.sign(access_claims()))

    assert rejected(verifier, RSA.sign(access_claims())).reason == "unknown_kid"


def test_reused_kid_with_new_material_uses_the_new_key(server: JwksServer, clock: FakeClock) -> None:
    verifier = make_verifier(server, clock)
    verifier.verify(RSA.sign(access_claims()))
    # The issuer replaces the material behind a kid and adds another key, which triggers a fetch.
    trigger = SigningKey("trigger", "RS256", RSA_OTHER.private)
    server.keys = [RSA_OTHER.jwk(kid=RSA.kid), trigger.jwk()]
    clock.advance(3600)
    verifier.verify(trigger.sign(access_claims()))

    assert verifier.verify(RSA_OTHER.sign(access_claims(), kid=RSA.kid))["sub"] == SUB
    assert rejected(verifier, RSA.sign(access_claims())).reason == "bad_signature"


# Short enough for the hanging and trickling servers to outlast it many times over.
OUTAGE_DEADLINE = 0.3
OUTAGES = [
    "error",
    "redirect",
    "trickle_headers",
    "junk",
    "not_jwks",
    "empty",
    "not_http",
    "cut_short",
    "hang",
    "trickle",
    "huge",
    "huge_stream",
]


@pytest.mark.parametrize("mode", OUTAGES)
def test_failed_refresh_keeps_the_cached_keys(server: JwksServer, clock: FakeClock, mode: str) -> None:
    verifier = make_verifier(server, clock)
    cache = cache_of(verifier)
    cache.max_bytes = 4096
    verifier.verify(RSA.sign(access_claims()))

    # When the endpoint breaks and an unknown kid forces a refresh
    server.mode = mode
    cache.timeout_seconds = OUTAGE_DEADLINE
    clock.advance(3600)
    assert rejected(verifier, RSA_OTHER.sign(access_claims())).reason == "unknown_kid"
    assert server.requests == 2
    # The deadline gave up while the server was still hanging or trickling, and no redirect was followed.
    assert (server.hangs_ended, server.trickles_ended, server.moved) == (0, 0, 0)

    # Then cached keys still verify, and the next unknown kid is denied without a fetch
    assert verifier.verify(RSA.sign(access_claims()))["sub"] == SUB
    assert rejected(verifier, RSA_OTHER.sign(access_claims())).reason == "unknown_kid"
    assert server.requests == 2


@pytest.mark.parametrize("mode", OUTAGES)
def test_outage_at_cold_start_denies_then_recovers(server: JwksServer, clock: FakeClock, mode: str) -> None:
    server.mode = mode
    verifier = make_verifier(server, clock, timeout=OUTAGE_DEADLINE)
    cache_of(verifier).max_bytes = 4096

    error = rejected(verifier, RSA.sign(access_claims()))
    assert isinstance(error, JwksUnavailable)
    assert error.reason == "jwks_unavailable"
    # Within the cooldown the outage is not hammered, and every request is denied at once.
    assert rejected(verifier, RSA.sign(access_claims())).reason == "jwks_unavailable"
    assert server.requests == 1
    assert (server.hangs_ended, server.trickles_ended, server.moved) == (0, 0, 0)

    server.mode = "ok"
    cache_of(verifier).timeout_seconds = 5
    clock.advance(jwt_verify.DEFAULT_COOLDOWN_SECONDS)
    assert verifier.verify(RSA.sign(access_claims()))["sub"] == SUB
    assert server.requests == 2


def test_unreachable_endpoint_is_jwks_unavailable(clock: FakeClock) -> None:
    with JwksServer() as closed:
        url = closed.url
    cache = JwksCache(url, clock=clock, timeout_seconds=0.5)
    config = VerifierConfig(issuers={ISSUER: url}, client_id=CLIENT_ID)

    with pytest.raises(JwksUnavailable):
        JwtVerifier(config, jwks={url: cache}.__getitem__, now=lambda: NOW).verify(RSA.sign(access_claims()))


@pytest.mark.parametrize(
    "url", ["http://keys.example.com/jwks.json", "ftp://127.0.0.1/jwks.json", "file:///etc/passwd"]
)
def test_fetch_itself_speaks_only_https_or_loopback_http(url: str) -> None:
    # Refused before any connection: nothing listens at these, and nothing is tried.
    with pytest.raises(JwksUnavailable, match="must be https"):
        jwt_verify.fetch_jwks(url, 0.5, 1024)


def test_size_cap_and_trickle_are_what_reject_those_answers(server: JwksServer, clock: FakeClock) -> None:
    # The same answers are accepted with room to spare, so the failures above are the caps.
    for mode in ("huge", "huge_stream", "trickle"):
        server.mode = mode
        verifier = make_verifier(server, FakeClock(), timeout=5)
        cache_of(verifier).max_bytes = 1024 * 1024
        assert verifier.verify(RSA.sign(access_claims()))["sub"] == SUB, mode


def test_jwks_entries_without_kid_or_of_unknown_type_are_skipped(server: JwksServer) -> None:
    server.keys = [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}, "junk", {"kid": "pq", "kty": "AKP"}, RSA.jwk()]
    verifier = make_verifier(server)

    assert verifier.verify(RSA.sign(access_claims()))["sub"] == SUB
    assert rejected(verifier, RSA.sign(access_claims(), kid="pq")).reason == "jwk_kty"


def test_jwks_cache_is_shared_per_url() -> None:
    first = jwt_verify.jwks_cache("https://issuer.example/a/jwks.json")

    assert jwt_verify.jwks_cache("https://issuer.example/a/jwks.json") is first
    assert jwt_verify.jwks_cache("https://issuer.example/b/jwks.json") is not first


# ---------------------------------------------------------------- bearer header


@pytest.mark.parametrize(
    "header", ["Bearer abc.def.ghi", "bearer abc.def.ghi", "BEARER   abc.def.ghi  ", "  Bearer\tabc.def.ghi"]
)
def test_bearer_token_is_taken_from_the_header(header: str) -> None:
    assert bearer_token(header) == "abc.def.ghi"


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing_token"),
        ("", "missing_token"),
        ("   ", "missing_token"),
        ("Bearer", "missing_token"),
        ("Bearer    ", "missing_token"),
        ("Basic ZGVtbzpkZW1v", "not_bearer"),
        ("abc.def.ghi", "not_bearer"),
        ("Bearerabc.def.ghi", "not_bearer"),
    ],
)
def test_authorization_without_a_bearer_token_is_rejected(header: str | None, reason: str) -> None:
    with pytest.raises(MalformedToken) as caught:
        bearer_token(header)

    assert caught.value.reason == reason


# ---------------------------------------------------------------- settings


def test_settings_trust_both_cognito_issuer_formats_each_with_its_own_jwks() -> None:
    settings = load(
        AuthorizerSettings,
        {"USER_POOL_ID": "eu-west-1_AbC123", "USER_POOL_CLIENT_ID": "c", "AWS_REGION": "us-east-1"},
    )
    config = settings.verifier_config()

    # The pool id names its region, which wins over the function's own.
    assert dict(config.issuers) == {
        "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123": (
            "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123/.well-known/jwks.json"
        ),
        "https://issuer-cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123": (
            "https://issuer-cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123/.well-known/jwks.json"
        ),
    }
    assert config.token_use == "access"
    assert all(jwt_verify.is_cognito_issuer(issuer) for issuer in config.issuers)


def test_settings_trust_the_replica_regions_updated_issuers() -> None:
    environ = {
        "USER_POOL_ID": "eu-west-1_AbC123",
        "USER_POOL_CLIENT_ID": "c",
        "USER_POOL_REPLICA_REGIONS": "us-east-1, eu-west-1,ap-southeast-2",
    }

    issuers = load(AuthorizerSettings, environ).verifier_config().issuers

    # The pool keeps its id (and primary region prefix) in every replica; only the host changes.
    assert list(issuers) == [
        "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123",
        "https://issuer-cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123",
        "https://issuer-cognito-idp.us-east-1.amazonaws.com/eu-west-1_AbC123",
        "https://issuer-cognito-idp.ap-southeast-2.amazonaws.com/eu-west-1_AbC123",
    ]
    assert issuers["https://issuer-cognito-idp.us-east-1.amazonaws.com/eu-west-1_AbC123"] == (
        "https://issuer-cognito-idp.us-east-1.amazonaws.com/eu-west-1_AbC123/.well-known/jwks.json"
    )
    # Replicas never use the original format.
    assert "https://cognito-idp.us-east-1.amazonaws.com/eu-west-1_AbC123" not in issuers


def test_settings_take_issuer_and_jwks_url_overrides() -> None:
    environ = {
        "USER_POOL_ID": POOL_ID,
        "USER_POOL_CLIENT_ID": "c",
        "JWT_ISSUER": "https://auth.example.com/",
        "JWKS_URL": f"http://127.0.0.1:5100{JWKS_PATH}",
        "TOKEN_USE": "id",
    }
    config = load(AuthorizerSettings, environ).verifier_config()

    assert dict(config.issuers) == {"https://auth.example.com/": f"http://127.0.0.1:5100{JWKS_PATH}"}
    assert config.token_use == "id"
    assert not jwt_verify.is_cognito_issuer("https://auth.example.com/")
    # The local stack: the pool's own issuers, keys from moto (one URL, so one cache).
    local = load(
        AuthorizerSettings,
        {"USER_POOL_ID": POOL_ID, "USER_POOL_CLIENT_ID": "c", "JWKS_URL": environ["JWKS_URL"]},
    )
    assert list(local.verifier_config().issuers) == [ISSUER, UPDATED_ISSUER]
    assert set(local.verifier_config().issuers.values()) == {environ["JWKS_URL"]}


def test_jwt_issuer_set_to_an_updated_cognito_issuer_keeps_the_cognito_checks() -> None:
    assert jwt_verify.is_cognito_issuer(UPDATED_ISSUER)
    assert not jwt_verify.is_cognito_issuer("https://issuer.cognito-idp.us-east-1.amazonaws.com/" + POOL_ID)


POOL = {"USER_POOL_ID": POOL_ID, "USER_POOL_CLIENT_ID": "c"}


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"USER_POOL_CLIENT_ID": "c"}, "USER_POOL_ID"),
        ({"USER_POOL_ID": POOL_ID}, "USER_POOL_CLIENT_ID"),
        ({**POOL, "TOKEN_USE": "refresh"}, "TOKEN_USE"),
        ({**POOL, "POWERTOOLS_LOG_LEVEL": "LOUD"}, "POWERTOOLS_LOG_LEVEL"),
        ({**POOL, "JWKS_URL": "file:///etc/passwd"}, "JWKS URL must be https"),
        ({**POOL, "JWKS_URL": "http://keys.example.com/jwks.json"}, "JWKS URL must be https"),
        ({**POOL, "JWKS_URL": "https://user:pw@keys.example.com/jwks.json"}, "no credentials"),
        ({**POOL, "JWKS_URL": "https:///jwks.json"}, "must name a host"),
        ({"USER_POOL_ID": "nopool", "USER_POOL_CLIENT_ID": "c"}, "AWS_REGION"),
        ({**POOL, "USER_POOL_REPLICA_REGIONS": "us-east-1,evil.example.com/x#"}, "not an AWS region"),
        ({**POOL, "USER_POOL_REPLICA_REGIONS": "us-east-1", "JWT_ISSUER": "https://a.example"}, "REPLICA"),
        ({"JWT_ISSUER": "https://a.example", "USER_POOL_CLIENT_ID": "c", "JWKS_URL": "http://a/"}, "https"),
    ],
)
def test_settings_fail_clearly_at_cold_start(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load(AuthorizerSettings, environ)


@pytest.mark.parametrize(
    "url",
    ["https://keys.example.com/jwks.json", "http://127.0.0.1:5100/x", "http://localhost/x", "http://[::1]/x"],
)
def test_jwks_urls_are_https_or_loopback_http(url: str) -> None:
    jwt_verify.check_jwks_url(url)


def test_pool_id_without_region_prefix_falls_back_to_aws_region() -> None:
    settings = load(
        AuthorizerSettings, {"USER_POOL_ID": "nopool", "USER_POOL_CLIENT_ID": "c", "AWS_REGION": "sa-east-1"}
    )

    assert settings.issuers[0] == "https://cognito-idp.sa-east-1.amazonaws.com/nopool"


def test_errors_never_contain_the_token(server: JwksServer) -> None:
    # rejected() asserts it for every case above; this one names claims an attacker controls.
    token = RSA_OTHER.sign(access_claims(sub="attacker"), kid="evil-kid-" + "x" * 40)

    error = rejected(make_verifier(server), token)

    assert "evil-kid" not in str(error)
    assert token.split(".")[2] not in str(error)

"""functions/authorizer through its real handler: events/ samples, fresh tokens, a JWKS on 127.0.0.1.

The allow sample carries a placeholder token (a real one expires); each test signs a fresh token
and puts it where API Gateway does: the authorization header and identitySource.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from imgpipe.settings import SettingsError
from imgpipe_local.handlers import Handler, load_handler
from tests.conftest import FUNCTIONS, load_event
from tests.jwt_support import (
    CLIENT_ID,
    ISSUER,
    POOL_ID,
    SUB,
    UPDATED_ISSUER,
    USERNAME,
    JwksServer,
    SigningKey,
    access_claims,
    ec_key,
    id_claims,
    rsa_key,
)

KEY = rsa_key("integration-key")
PLACEHOLDER = "REPLACE_WITH_A_FRESH_ACCESS_TOKEN"
DENY = {"isAuthorized": False}
PASSWORD = "Demo-password-1"


def fresh(claims: dict[str, Any]) -> dict[str, Any]:
    now = int(time.time())
    return {**claims, "auth_time": now - 60, "iat": now - 60, "exp": now + 3600}


def with_token(
    event: dict[str, Any], token: str, *, header: str = "authorization", scheme: str = "Bearer"
) -> dict[str, Any]:
    event = json.loads(json.dumps(event))
    value = f"{scheme} {token}"
    event["headers"].pop("authorization", None)
    event["headers"][header] = value
    event["identitySource"] = [value]
    return event


@pytest.fixture
def jwks() -> Iterator[JwksServer]:
    with JwksServer(keys=[KEY.jwk()]) as server:
        yield server


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, jwks: JwksServer) -> None:
    # Set before the handler is loaded: settings are read at import, as at a cold start.
    for name, value in {
        "USER_POOL_ID": POOL_ID,
        "USER_POOL_CLIENT_ID": CLIENT_ID,
        "JWKS_URL": jwks.url,
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_SERVICE_NAME": "imgpipe",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("JWT_ISSUER", "TOKEN_USE"):
        monkeypatch.delenv(name, raising=False)


class Logs(logging.Handler):
    """The authorizer's log records, each with its extra fields, as Lambda's JSON log writes them."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        standard = logging.makeLogRecord({}).__dict__
        extra = {k: v for k, v in record.__dict__.items() if k not in standard}
        exception = logging.Formatter().formatException(record.exc_info) if record.exc_info else None
        self.lines.append({"message": record.getMessage(), "exception": exception, **extra})

    @property
    def text(self) -> str:
        return "\n".join(json.dumps(line, default=str) for line in self.lines)

    @property
    def records(self) -> list[dict[str, Any]]:
        return self.lines

    def reasons(self) -> list[str]:
        return [record["reason"] for record in self.records if "reason" in record]


@pytest.fixture
def authorizer(environment: None) -> Iterator[tuple[Handler, Logs]]:
    handler = load_handler(FUNCTIONS / "authorizer")
    logger = sys.modules[handler.__module__].logger
    logs = Logs()
    logger.addHandler(logs)
    yield handler, logs
    logger.removeHandler(logs)


def test_valid_access_token_is_allowed_with_sub_and_username(
    authorizer: tuple[Handler, Logs], jwks: JwksServer, lambda_context: Any
) -> None:
    handler, _logs = authorizer
    event = with_token(load_event("authorizer_allow"), KEY.sign(fresh(access_claims())))

    response = handler(event, lambda_context)

    assert response == {"isAuthorized": True, "context": {"sub": SUB, "username": USERNAME}}
    assert json.loads(json.dumps(response)) == response


def test_warm_invocations_reuse_the_keys(
    authorizer: tuple[Handler, Logs], jwks: JwksServer, lambda_context: Any
) -> None:
    handler, _logs = authorizer

    for _ in range(5):
        event = with_token(load_event("authorizer_allow"), KEY.sign(fresh(access_claims())))
        assert handler(event, lambda_context)["isAuthorized"] is True

    assert jwks.requests == 1


def test_id_tokens_when_configured_take_cognito_username(
    monkeypatch: pytest.MonkeyPatch, environment: None, lambda_context: Any
) -> None:
    monkeypatch.setenv("TOKEN_USE", "id")
    handler = load_handler(FUNCTIONS / "authorizer")
    event = with_token(load_event("authorizer_allow"), KEY.sign(fresh(id_claims())))

    assert handler(event, lambda_context) == {
        "isAuthorized": True,
        "context": {"sub": SUB, "username": USERNAME},
    }


@pytest.mark.parametrize(
    ("header", "scheme"),
    [("Authorization", "Bearer"), ("AUTHORIZATION", "bearer"), ("authorization", "BEARER  ")],
)
def test_header_name_and_scheme_are_case_insensitive(
    authorizer: tuple[Handler, Logs], lambda_context: Any, header: str, scheme: str
) -> None:
    handler, _logs = authorizer
    token = KEY.sign(fresh(access_claims()))
    event = with_token(load_event("authorizer_allow"), token + "  ", header=header, scheme=scheme)

    assert handler(event, lambda_context)["isAuthorized"] is True


def test_placeholder_token_in_the_sample_is_denied(
    authorizer: tuple[Handler, Logs], lambda_context: Any
) -> None:
    handler, logs = authorizer
    event = load_event("authorizer_allow")
    assert PLACEHOLDER in event["headers"]["authorization"]

    assert handler(event, lambda_context) == DENY
    assert logs.reasons() == ["malformed"]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("authorizer_deny_missing_token", "missing_token"),
        ("authorizer_deny_not_bearer", "not_bearer"),
        ("authorizer_deny_malformed_token", "malformed"),
        # alg none with the empty signature such tokens carry fails the shape check first.
        ("authorizer_deny_alg_none", "malformed"),
    ],
)
def test_deny_samples_are_denied_with_their_reason(
    authorizer: tuple[Handler, Logs], jwks: JwksServer, lambda_context: Any, name: str, reason: str
) -> None:
    handler, logs = authorizer

    assert handler(load_event(name), lambda_context) == DENY
    assert logs.reasons() == [reason]
    assert jwks.requests == 0  # none of these is worth a key lookup


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"iss": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Other1"}, "wrong_issuer"),
        ({"client_id": "another-client"}, "wrong_client"),
        ({"token_use": "id"}, "wrong_token_use"),
    ],
)
def test_rejected_tokens_are_logged_by_reason_never_by_value(
    authorizer: tuple[Handler, Logs], lambda_context: Any, claims: dict[str, Any], reason: str
) -> None:
    handler, logs = authorizer
    token = KEY.sign({**fresh(access_claims()), **claims})

    assert handler(with_token(load_event("authorizer_allow"), token), lambda_context) == DENY
    assert logs.reasons() == [reason]
    for part in token.split("."):
        assert part not in logs.text


def test_absurd_exp_is_a_reasoned_deny_not_an_internal_error(
    authorizer: tuple[Handler, Logs], lambda_context: Any
) -> None:
    handler, logs = authorizer
    token = KEY.forge({**fresh(access_claims()), "exp": 10**4000})

    assert handler(with_token(load_event("authorizer_allow"), token), lambda_context) == DENY
    assert logs.reasons() == ["bad_claim"]


EC_KEY = ec_key("integration-ec-key")


@pytest.mark.parametrize(
    ("key", "jwk", "reason"),
    [
        pytest.param(EC_KEY, {"crv": ["P-256"]}, "jwk_invalid", id="crv-a-list"),
        pytest.param(KEY, {"n": ["AQAB"]}, "jwk_invalid", id="n-a-list"),
        pytest.param(KEY, {"d": "AQAB"}, "jwk_private", id="private-member"),
    ],
)
def test_a_malformed_jwks_entry_is_a_reasoned_deny(
    authorizer: tuple[Handler, Logs],
    jwks: JwksServer,
    lambda_context: Any,
    key: SigningKey,
    jwk: dict[str, Any],
    reason: str,
) -> None:
    # These reached the handler's catch-all as internal_error (a TypeError, an AttributeError).
    handler, logs = authorizer
    jwks.keys = [key.jwk(**jwk)]
    event = with_token(load_event("authorizer_allow"), key.sign(fresh(access_claims())))

    assert handler(event, lambda_context) == DENY
    assert logs.reasons() == [reason]


def test_forged_signature_is_denied(authorizer: tuple[Handler, Logs], lambda_context: Any) -> None:
    handler, logs = authorizer
    forged = rsa_key("forger").sign(fresh(access_claims()), kid=KEY.kid)

    assert handler(with_token(load_event("authorizer_allow"), forged), lambda_context) == DENY
    assert logs.reasons() == ["bad_signature"]


def test_jwks_outage_is_a_deny_not_an_error(
    authorizer: tuple[Handler, Logs], jwks: JwksServer, lambda_context: Any
) -> None:
    handler, logs = authorizer
    jwks.mode = "error"

    assert (
        handler(with_token(load_event("authorizer_allow"), KEY.sign(fresh(access_claims()))), lambda_context)
        == DENY
    )
    assert logs.reasons() == ["jwks_unavailable"]


@pytest.mark.parametrize(
    "event",
    [
        pytest.param({"headers": ["not", "a", "map"]}, id="headers-not-a-map"),
        pytest.param({"headers": {"authorization": ["Bearer", "x"]}}, id="header-not-a-string"),
    ],
)
def test_unexpected_failure_is_logged_and_denied_never_raised(
    authorizer: tuple[Handler, Logs], lambda_context: Any, event: dict[str, Any]
) -> None:
    handler, logs = authorizer

    assert handler(event, lambda_context) == DENY
    assert logs.reasons() == ["internal_error"]
    assert any(record["exception"] for record in logs.records)


def test_the_templates_log_level_applies(monkeypatch: pytest.MonkeyPatch, environment: None) -> None:
    # LogLevel=WARNING (the prod environment): denies are not logged, internal errors still are.
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "WARNING")
    handler = load_handler(FUNCTIONS / "authorizer")
    logger = sys.modules[handler.__module__].logger

    assert not logger.isEnabledFor(logging.INFO)
    assert logger.isEnabledFor(logging.ERROR)


def test_event_without_headers_is_a_missing_token(
    authorizer: tuple[Handler, Logs], lambda_context: Any
) -> None:
    handler, logs = authorizer

    assert handler({}, lambda_context) == DENY
    assert logs.reasons() == ["missing_token"]


@pytest.mark.parametrize(
    ("iss", "replicas"),
    [
        pytest.param(ISSUER, "", id="original"),
        pytest.param(UPDATED_ISSUER, "", id="updated"),
        pytest.param(
            f"https://issuer-cognito-idp.eu-west-2.amazonaws.com/{POOL_ID}", "eu-west-2", id="replica"
        ),
    ],
)
def test_every_cognito_issuer_of_the_pool_is_allowed(
    monkeypatch: pytest.MonkeyPatch, environment: None, lambda_context: Any, iss: str, replicas: str
) -> None:
    monkeypatch.setenv("USER_POOL_REPLICA_REGIONS", replicas)
    handler = load_handler(FUNCTIONS / "authorizer")
    token = KEY.sign(fresh(access_claims(iss=iss)))

    assert handler(with_token(load_event("authorizer_allow"), token), lambda_context)["isAuthorized"] is True


def test_a_replica_not_listed_is_denied(authorizer: tuple[Handler, Logs], lambda_context: Any) -> None:
    handler, logs = authorizer
    token = KEY.sign(
        fresh(access_claims(iss=f"https://issuer-cognito-idp.eu-west-2.amazonaws.com/{POOL_ID}"))
    )

    assert handler(with_token(load_event("authorizer_allow"), token), lambda_context) == DENY
    assert logs.reasons() == ["wrong_issuer"]


@pytest.mark.parametrize("mode", ["trickle_headers", "hang", "redirect"])
def test_a_slow_or_redirecting_jwks_is_a_deny_within_the_fetch_deadline(
    authorizer: tuple[Handler, Logs], jwks: JwksServer, lambda_context: Any, mode: str
) -> None:
    # A server that trickles its headers held the old fetch ~12 s; the authorizer's Lambda timeout
    # would then have ended it as an error (a 500 at API Gateway), not a deny.
    handler, logs = authorizer
    jwks.mode = mode
    event = with_token(load_event("authorizer_allow"), KEY.sign(fresh(access_claims())))

    assert handler(event, lambda_context) == DENY
    assert logs.reasons() == ["jwks_unavailable"]
    # The deadline ended it, not the server: still trickling or hanging; and nothing followed the redirect.
    assert (jwks.trickles_ended, jwks.hangs_ended, jwks.moved) == (0, 0, 0)


# Run as Lambda runs a handler: its CodeUri folder on sys.path, `app` imported once.
IMPORT_AND_LIST_AWS_SDKS = """
import sys
sys.path.insert(0, sys.argv[1])
import app
sdks = {"boto3", "botocore", "aws_xray_sdk"}
print(",".join(sorted(name for name in sys.modules if name.split(".")[0] in sdks)))
"""


def sdk_modules_loaded_by_importing(function: str, **environ: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_AND_LIST_AWS_SDKS, str(FUNCTIONS / function)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **environ},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [name for name in result.stdout.strip().split(",") if name]


def test_importing_the_authorizer_loads_no_boto3_botocore_or_xray_sdk(environment: None) -> None:
    # A fresh interpreter, as at a cold start (how long it takes is measured in bench/, not here).
    assert sdk_modules_loaded_by_importing("authorizer") == []
    # The same probe sees them where they are: the presign function signs with boto3.
    presign = sdk_modules_loaded_by_importing(
        "presign_upload",
        UPLOADS_BUCKET="uploads",
        MAX_UPLOAD_BYTES="1024",
        UPLOAD_URL_TTL_SECONDS="60",
        ASSETS_BASE_URL="https://cdn.example.com",
        RENDITIONS="512x512:cover",
    )
    assert {"boto3", "botocore"} <= {name.split(".")[0] for name in presign}


@pytest.mark.parametrize(
    ("unset", "named"),
    [(("USER_POOL_ID", "JWT_ISSUER"), "USER_POOL_ID"), (("USER_POOL_CLIENT_ID",), "USER_POOL_CLIENT_ID")],
)
def test_cold_start_fails_clearly_without_trust_settings(
    monkeypatch: pytest.MonkeyPatch, environment: None, unset: tuple[str, ...], named: str
) -> None:
    for name in unset:
        monkeypatch.delenv(name, raising=False)

    with pytest.raises(SettingsError, match=named):
        load_handler(FUNCTIONS / "authorizer")


@pytest.fixture(scope="module")
def moto_cognito() -> Iterator[dict[str, str]]:
    """A moto server user pool with one confirmed user, signed in over HTTP like the web page does."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    client = boto3.client(
        "cognito-idp",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    pool = client.create_user_pool(PoolName="imgpipe-test")["UserPool"]["Id"]
    app_client = client.create_user_pool_client(
        UserPoolId=pool,
        ClientName="web",
        ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    )["UserPoolClient"]["ClientId"]
    client.admin_create_user(UserPoolId=pool, Username=USERNAME, MessageAction="SUPPRESS")
    client.admin_set_user_password(
        UserPoolId=pool, Username=USERNAME, Password="Demo-password-1", Permanent=True
    )
    tokens = client.initiate_auth(
        ClientId=app_client,
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": USERNAME, "PASSWORD": PASSWORD},
    )["AuthenticationResult"]
    sub = client.admin_get_user(UserPoolId=pool, Username=USERNAME)["UserAttributes"]
    yield {
        "pool": pool,
        "client": app_client,
        "jwks_url": f"{url}/{pool}/.well-known/jwks.json",
        "access": tokens["AccessToken"],
        "id": tokens["IdToken"],
        "sub": next(attribute["Value"] for attribute in sub if attribute["Name"] == "sub"),
    }
    server.stop()


@pytest.mark.parametrize(("token_use", "good", "bad"), [("access", "access", "id"), ("id", "id", "access")])
def test_moto_cognito_tokens_verify_against_moto_jwks(
    monkeypatch: pytest.MonkeyPatch,
    environment: None,
    lambda_context: Any,
    moto_cognito: dict[str, str],
    token_use: str,
    good: str,
    bad: str,
) -> None:
    # The local stack's arrangement: the pool's own issuer (AWS host) and keys served by moto.
    monkeypatch.setenv("USER_POOL_ID", moto_cognito["pool"])
    monkeypatch.setenv("USER_POOL_CLIENT_ID", moto_cognito["client"])
    monkeypatch.setenv("JWKS_URL", moto_cognito["jwks_url"])
    monkeypatch.setenv("TOKEN_USE", token_use)
    handler = load_handler(FUNCTIONS / "authorizer")

    allowed = handler(with_token(load_event("authorizer_allow"), moto_cognito[good]), lambda_context)
    denied = handler(with_token(load_event("authorizer_allow"), moto_cognito[bad]), lambda_context)

    assert allowed == {"isAuthorized": True, "context": {"sub": moto_cognito["sub"], "username": USERNAME}}
    assert denied == DENY

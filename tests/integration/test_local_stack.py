"""The local stack built from the real template.yaml: moto resources, Cognito, CDN, web page, lifecycle."""

from __future__ import annotations

import json
import shutil
import socket
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
import requests

import imgpipe.settings  # noqa: F401 - the host's copy, which the stack must leave alone
from imgpipe_local.stack import LocalStack
from tests.conftest import ROOT

# The real functions flush Powertools metrics; an invocation that records none warns.
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack(root=ROOT, ports=LocalStack.free_ports()) as stack:
        yield stack


@pytest.fixture
def assets(stack: LocalStack) -> str:
    return str(stack.outputs["AssetsBucketName"])


def put_asset(stack: LocalStack, key: str, body: bytes, content_type: str, cache_control: str) -> str:
    s3 = stack.client("s3")
    put = s3.put_object(
        Bucket=stack.outputs["AssetsBucketName"],
        Key=key,
        Body=body,
        ContentType=content_type,
        CacheControl=cache_control,
    )
    return str(put["ETag"])


# ---------------------------------------------------------------- resources from the template


def test_outputs_point_at_the_local_servers(stack: LocalStack) -> None:
    assert stack.outputs["ApiUrl"] == stack.api_url
    assert stack.outputs["KeyUploadUrl"] == f"{stack.api_url}/avatars/key_upload"
    assert stack.outputs["CdnUrl"] == stack.cdn_url
    assert stack.outputs["UserPoolId"] == stack.web_config["userPoolId"]


def test_buckets_have_the_template_s_versioning_cors_and_notification(stack: LocalStack) -> None:
    s3 = stack.client("s3")
    uploads = stack.outputs["UploadsBucketName"]

    assert s3.get_bucket_versioning(Bucket=uploads)["Status"] == "Enabled"
    (rule,) = s3.get_bucket_cors(Bucket=uploads)["CORSRules"]
    assert rule["AllowedOrigins"] == [stack.web_url, f"http://localhost:{stack.web_url.rsplit(':', 1)[1]}"]
    assert rule["AllowedMethods"] == ["POST"]
    (queue,) = s3.get_bucket_notification_configuration(Bucket=uploads)["QueueConfigurations"]
    assert queue["Events"] == ["s3:ObjectCreated:*"]
    assert {r["Name"].lower(): r["Value"] for r in queue["Filter"]["Key"]["FilterRules"]} == {
        "prefix": "avatars/",
        "suffix": "/original",
    }


def test_the_dead_letter_queue_exists(stack: LocalStack) -> None:
    url = stack.outputs["ProcessingDeadLetterQueueUrl"]

    attributes = stack.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]

    assert attributes["MessageRetentionPeriod"] == "1209600"


def test_the_demo_user_signs_in_with_tokens_the_jwks_verifies(stack: LocalStack) -> None:
    tokens = stack.sign_in(*stack.demo_user)

    jwks_url = f"{stack.moto_url}/{stack.web_config['userPoolId']}/.well-known/jwks.json"
    key = jwt.PyJWKClient(jwks_url).get_signing_key_from_jwt(tokens["AccessToken"])
    claims = jwt.decode(tokens["AccessToken"], key.key, algorithms=["RS256"])
    assert claims["token_use"] == "access"
    assert claims["client_id"] == stack.web_config["clientId"]
    assert claims["username"] == stack.demo_user.username


def test_the_authorizer_environment_trusts_the_local_pool(stack: LocalStack) -> None:
    assert stack.template is not None
    environment = stack.template.functions["AuthorizerFunction"].environment

    assert environment["USER_POOL_ID"] == stack.web_config["userPoolId"]
    assert environment["USER_POOL_CLIENT_ID"] == stack.web_config["clientId"]
    assert (
        environment["JWKS_URL"] == f"{stack.moto_url}/{stack.web_config['userPoolId']}/.well-known/jwks.json"
    )


def test_api_preflight_allows_the_web_origin(stack: LocalStack) -> None:
    response = requests.options(
        stack.outputs["KeyUploadUrl"],
        headers={"Origin": stack.web_url, "Access-Control-Request-Method": "POST"},
        timeout=10,
    )

    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == stack.web_url


def test_api_without_a_token_is_401_with_cors(stack: LocalStack) -> None:
    response = requests.post(stack.outputs["KeyUploadUrl"], headers={"Origin": stack.web_url}, timeout=10)

    assert response.status_code == 401
    assert response.headers["Access-Control-Allow-Origin"] == stack.web_url


# ---------------------------------------------------------------- web page


def test_the_web_server_serves_config_json(stack: LocalStack) -> None:
    config = requests.get(f"{stack.web_url}/config.json", timeout=10).json()

    assert config == {
        "apiUrl": stack.api_url,
        "cdnUrl": stack.cdn_url,
        "cognitoEndpoint": stack.moto_url,
        "userPoolId": stack.web_config["userPoolId"],
        "clientId": stack.web_config["clientId"],
        "region": "us-east-1",
        "demoUser": {"username": stack.demo_user.username, "password": stack.demo_user.password},
        "lambdaEndpoint": stack.web_url,
        "outputs": stack.outputs,
    }


def test_the_web_server_serves_web_files_and_nothing_outside(stack: LocalStack) -> None:
    index = requests.get(f"{stack.web_url}/", timeout=10)
    escape = urllib.request.urlopen  # requests normalises "..", so send the raw path
    with pytest.raises(urllib.error.HTTPError) as outside:
        escape(f"{stack.web_url}/../template.yaml", timeout=10)

    assert index.status_code == 200
    assert index.headers["Content-Type"] == "text/html"
    assert index.content == (ROOT / "web" / "index.html").read_bytes()
    assert outside.value.code == 404


# ---------------------------------------------------------------- CDN


def test_cdn_serves_objects_with_their_headers_and_the_policy_s(stack: LocalStack) -> None:
    etag = put_asset(stack, "avatars/u1/128x128.jpg", b"\xff\xd8jpeg", "image/jpeg", "public, max-age=10")

    response = requests.get(
        f"{stack.cdn_url}/avatars/u1/128x128.jpg", headers={"Origin": stack.web_url}, timeout=10
    )

    assert response.status_code == 200
    assert response.content == b"\xff\xd8jpeg"
    assert response.headers["Content-Type"] == "image/jpeg"
    assert response.headers["Cache-Control"] == "public, max-age=10"
    assert response.headers["ETag"] == etag
    assert response.headers["Access-Control-Allow-Origin"] == stack.web_url
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Strict-Transport-Security"] == "max-age=63072000; includeSubDomains"
    assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")


def test_cdn_answers_if_none_match_with_304(stack: LocalStack) -> None:
    etag = put_asset(stack, "avatars/u2/avatar.json", b"{}", "application/json", "no-cache")

    response = requests.get(
        f"{stack.cdn_url}/avatars/u2/avatar.json", headers={"If-None-Match": etag}, timeout=10
    )
    changed = requests.get(
        f"{stack.cdn_url}/avatars/u2/avatar.json", headers={"If-None-Match": '"stale"'}, timeout=10
    )

    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["ETag"] == etag
    assert response.headers["Cache-Control"] == "no-cache"
    assert changed.status_code == 200


def test_cdn_head_has_headers_without_a_body(stack: LocalStack) -> None:
    put_asset(stack, "avatars/u3/avatar.json", b'{"a": 1}', "application/json", "no-cache")

    response = requests.head(f"{stack.cdn_url}/avatars/u3/avatar.json", timeout=10)

    assert response.status_code == 200
    assert response.headers["Content-Length"] == "8"
    assert response.content == b""


def test_cdn_missing_objects_are_404_and_other_origins_get_no_cors(stack: LocalStack) -> None:
    response = requests.get(
        f"{stack.cdn_url}/avatars/nobody/avatar.json", headers={"Origin": "http://evil.test"}, timeout=10
    )

    assert response.status_code == 404
    assert "Access-Control-Allow-Origin" not in response.headers
    assert response.headers["X-Frame-Options"] == "DENY"


def test_cdn_refuses_writes(stack: LocalStack) -> None:
    assert requests.put(f"{stack.cdn_url}/avatars/u1/x.jpg", data=b"x", timeout=10).status_code == 405


# ---------------------------------------------------------------- lifecycle


def ports_of(stack: LocalStack) -> list[int]:
    return [
        int(url.rsplit(":", 1)[1]) for url in (stack.moto_url, stack.api_url, stack.cdn_url, stack.web_url)
    ]


def test_stop_frees_every_port_and_a_new_stack_can_take_them() -> None:
    with LocalStack(root=ROOT, ports=LocalStack.free_ports()) as first:
        ports = ports_of(first)

    for port in ports:
        with socket.socket() as probe:
            # As a server binds: connections we closed may linger in TIME_WAIT, a listener may not.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", port))
    with LocalStack(root=ROOT, ports=dict(zip(("moto", "api", "cdn", "web"), ports, strict=True))) as second:
        assert ports_of(second) == ports
        assert requests.get(f"{second.web_url}/config.json", timeout=10).status_code == 200


def test_two_stacks_can_run_side_by_side(stack: LocalStack) -> None:
    with LocalStack(root=ROOT, ports=LocalStack.free_ports()) as second:
        # Each has a moto of its own: the same names, none of the other's data.
        second.client("s3").put_object(Bucket=second.outputs["AssetsBucketName"], Key="only-here", Body=b"x")
        assert second.outputs["UploadsBucketName"] == stack.outputs["UploadsBucketName"]
        assert second.web_config["userPoolId"] != stack.web_config["userPoolId"]
        assert second.sign_in(*second.demo_user)["AccessToken"]

    # The first stack lost nothing when the second started or stopped, and saw none of its writes.
    s3 = stack.client("s3")
    assert s3.get_bucket_versioning(Bucket=stack.outputs["UploadsBucketName"])["Status"] == "Enabled"
    assert "Contents" not in s3.list_objects_v2(Bucket=stack.outputs["AssetsBucketName"], Prefix="only-here")
    assert stack.sign_in(*stack.demo_user)["AccessToken"]


def test_a_port_in_use_fails_start_cleanly_and_releases_the_others() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        stack = LocalStack(root=ROOT, ports={"moto": 0, "api": 0, "cdn": 0, "web": taken})
        with pytest.raises(OSError, match="in use"):
            stack.start()

    # Nothing of the failed start keeps running: a full stack starts and stops afterwards.
    with LocalStack(root=ROOT, ports=LocalStack.free_ports()) as again:
        assert requests.get(f"{again.web_url}/config.json", timeout=10).status_code == 200


def test_the_stack_follows_a_modified_template(tmp_path: Path) -> None:
    host_settings = sys.modules["imgpipe.settings"]
    # Given a copy of the project whose trigger prefix and route changed
    text = (ROOT / "template.yaml").read_text()
    text = text.replace("Value: avatars/\n", "Value: pictures/\n").replace(
        "Path: /avatars/key_upload", "Path: /v2/key_upload"
    )
    (tmp_path / "template.yaml").write_text(text)
    for folder in ("functions", "layers"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    # The copy's shared package leaves a mark beside itself wherever it is imported.
    package = tmp_path / "layers" / "shared" / "imgpipe"
    (package / "__init__.py").write_text(
        "import os, pathlib\npathlib.Path(__file__).with_name(f'imported-by-{os.getpid()}').touch()\n"
    )

    with LocalStack(root=tmp_path, ports=LocalStack.free_ports()) as stack:
        s3 = stack.client("s3")
        (queue,) = s3.get_bucket_notification_configuration(Bucket=stack.outputs["UploadsBucketName"])[
            "QueueConfigurations"
        ]
        old = requests.post(
            f"{stack.api_url}/avatars/key_upload", headers={"Origin": stack.web_url}, timeout=10
        )
        new = requests.post(f"{stack.api_url}/v2/key_upload", headers={"Origin": stack.web_url}, timeout=10)
        token = stack.sign_in(*stack.demo_user)["AccessToken"]
        moved = requests.post(
            f"{stack.api_url}/v2/key_upload",
            json={"contentType": "image/png"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        deleted = requests.delete(
            f"{stack.api_url}/avatars", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        assert stack.runtime is not None
        presign_calls = stack.runtime.pools["PresignUploadFunction"].invocations

    assert {r["Name"].lower(): r["Value"] for r in queue["Filter"]["Key"]["FilterRules"]}[
        "prefix"
    ] == "pictures/"
    assert old.status_code == 404
    assert new.status_code == 401  # routed, and the authorizer's identity source is missing
    assert json.loads(new.content) == {"message": "Unauthorized"}
    # The moved route reaches the presign function (whose own resolver still names the old path).
    assert presign_calls == 1
    assert moved.status_code in (200, 404)
    assert deleted.status_code < 300
    # The copy's functions ran on the copy's layers/shared, each in a process of its own
    # (authorizer, presign, delete); the host's imgpipe stayed.
    assert len(list(package.glob("imported-by-*"))) == 3
    assert sys.modules["imgpipe.settings"] is host_settings

"""End-to-end fixtures: one stack per session, driven over real HTTP.

By default a LocalStack on free ports of 127.0.0.1. With AWS_SAM_STACK_NAME set, the
deployed stack of that name instead (in AWS_REGION, with the caller's AWS credentials):
its outputs come from CloudFormation, the user from IMGPIPE_E2E_USERNAME and
IMGPIPE_E2E_PASSWORD, the browser origin the API must allow from IMGPIPE_E2E_ORIGIN
(default: the template's first AllowedOrigins entry), and the page for the browser tests
from IMGPIPE_E2E_WEB_URL (optional).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import jwt
import pytest
import requests

from imgpipe import keys
from imgpipe_local.client import Client, Target, Upload
from tests.conftest import ROOT
from tests.seaweedfs_support import SeaweedS3, UploadsOnSeaweed, seaweedfs, uploads_on

DEFAULT_ORIGIN = "http://localhost:8000"
# A deployed processor is invoked asynchronously and offers no queue to watch: give an
# event this long to be handled before judging that it changed nothing.
DEPLOYED_SETTLE_SECONDS = 10
WAIT_SECONDS = 90
# CloudFront invalidations take minutes to complete.
GONE_SECONDS = 300
# The size limit the presign function signs for the enforcing-S3 suite: small, so "one byte too
# many" is a small upload (the template's MinValue).
SEAWEED_MAX_UPLOAD_BYTES = 64 * 1024


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in item.path.as_posix():
            item.add_marker(pytest.mark.e2e)


@dataclass
class E2EStack:
    """The stack under test, local or deployed, and what the tests reach into besides HTTP."""

    target: Target
    outputs: dict[str, str]
    username: str
    password: str
    origin: str
    web_url: str | None
    s3: Any  # boto3 S3 client that can read the uploads bucket (versions, tags)
    redeliver: Callable[[dict[str, Any]], None]  # hand the processor an S3 event (again)
    settle: Callable[[], None]  # return once the processor has nothing in flight
    local: Any = None  # the LocalStack, when local

    @property
    def uploads_bucket(self) -> str:
        return self.outputs["UploadsBucketName"]


def s3_event_for_latest(
    stack: E2EStack, user: str, sequencer: str, version_id: str | None = None
) -> dict[str, Any]:
    """The ObjectCreated notification S3 sent for `user`'s original (the current version unless
    `version_id` names another), as S3 shapes it."""
    bucket, key = stack.uploads_bucket, keys.upload_key(user)
    version = {"VersionId": version_id} if version_id else {}
    head = stack.s3.head_object(Bucket=bucket, Key=key, **version)
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": stack.s3.meta.region_name,
                "eventTime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                "eventName": "ObjectCreated:Post",
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "e2e-redelivery",
                    "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                    "object": {
                        "key": key,
                        "size": head["ContentLength"],
                        "eTag": head["ETag"].strip('"'),
                        "versionId": head.get("VersionId"),
                        "sequencer": sequencer,
                    },
                },
            }
        ]
    }


def upload_and_wait(
    client: Client, token: str, data: bytes, content_type: str
) -> tuple[Upload, dict[str, Any]]:
    """The whole client flow for one file; the manifest once it reports this upload."""
    upload = client.key_upload(token, content_type)
    client.upload(upload, data, content_type)
    return upload, client.wait_for_avatar(upload, timeout=WAIT_SECONDS)


def served_at_stable_url(client: Client, entry: dict[str, Any]) -> requests.Response:
    """The stable URL's response once it serves the same bytes as `entry`'s versioned URL: a
    deployed CloudFront may keep the previous copy for the stable URL's short max-age."""
    expected = client.cdn_get(entry["url"]).content
    latest: list[requests.Response] = []

    def current() -> bool:
        latest[:] = [client.cdn_get(entry["stableUrl"])]
        return latest[0].status_code == 200 and latest[0].content == expected

    wait_until(current, what=f"{entry['stableUrl']} to serve version {entry['url']}")
    return latest[0]


def wait_until(condition: Callable[[], bool], *, what: str, timeout: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.05
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for: {what}")
        time.sleep(delay)
        delay = min(delay * 2, 2.0)


# ---------------------------------------------------------------- the stack


@pytest.fixture(scope="session")
def stack() -> Iterator[E2EStack]:
    if os.environ.get("AWS_SAM_STACK_NAME"):
        yield _deployed(os.environ["AWS_SAM_STACK_NAME"])
    else:
        yield from _local()


def _local() -> Iterator[E2EStack]:
    from imgpipe_local.stack import LocalStack

    with LocalStack(root=ROOT, ports=LocalStack.free_ports()) as local:
        yield E2EStack(
            target=Target.from_outputs(local.outputs, cognito_url=local.moto_url),
            outputs=dict(local.outputs),
            username=local.demo_user.username,
            password=local.demo_user.password,
            origin=local.web_url,
            web_url=local.web_url,
            s3=local.client("s3"),
            redeliver=local.deliver_s3_event,
            settle=local.wait_idle,
            local=local,
        )


def _deployed(name: str) -> E2EStack:
    description = boto3.client("cloudformation").describe_stacks(StackName=name)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in description.get("Outputs", [])}
    region = outputs.get("Region") or outputs["UserPoolId"].split("_", 1)[0]
    lambda_client = boto3.client("lambda", region_name=region)

    def redeliver(event: dict[str, Any]) -> None:
        # The same asynchronous invocation S3 makes.
        lambda_client.invoke(
            FunctionName=outputs["ProcessImageFunctionName"],
            InvocationType="Event",
            Payload=json.dumps(event).encode(),
        )

    try:
        username = os.environ["IMGPIPE_E2E_USERNAME"]
        password = os.environ["IMGPIPE_E2E_PASSWORD"]
    except KeyError as missing:
        pytest.exit(f"AWS_SAM_STACK_NAME is set: also set {missing.args[0]} (a user of the stack's pool)", 2)
    return E2EStack(
        target=Target.from_outputs(outputs),
        outputs=outputs,
        username=username,
        password=password,
        origin=os.environ.get("IMGPIPE_E2E_ORIGIN", DEFAULT_ORIGIN),
        web_url=os.environ.get("IMGPIPE_E2E_WEB_URL"),
        s3=boto3.client("s3", region_name=region),
        redeliver=redeliver,
        settle=lambda: time.sleep(DEPLOYED_SETTLE_SECONDS),
    )


# ---------------------------------------------------------------- the user


@pytest.fixture
def client(stack: E2EStack) -> Client:
    return Client(stack.target)


@pytest.fixture(scope="session")
def tokens(stack: E2EStack) -> dict[str, Any]:
    return Client(stack.target).sign_in(stack.username, stack.password)


@pytest.fixture
def token(tokens: dict[str, Any]) -> str:
    return tokens["AccessToken"]


@pytest.fixture
def user(token: str) -> str:
    """The user's key segment, from the token's sub (the API itself verifies the token)."""
    return keys.user_key(jwt.decode(token, options={"verify_signature": False})["sub"])


# ---------------------------------------------------------------- an S3 that enforces POST policies


@pytest.fixture(scope="session")
def enforcing_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """SeaweedFS's S3 gateway, started for the session and stopped after it; what it cost is
    written to test-artifacts/seaweedfs.json."""
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server
        artefacts = ROOT / "test-artifacts"
        artefacts.mkdir(exist_ok=True)
        memory = server.memory_mib()
        report = {
            "startup_seconds": round(server.startup_seconds, 3),
            "rss_mib": round(memory["VmRSS"], 1),
            "peak_rss_mib": round(memory["VmHWM"], 1),
        }
        (artefacts / "seaweedfs.json").write_text(json.dumps(report, indent=2) + "\n")


@pytest.fixture(scope="session")
def seaweed_uploads(enforcing_s3: SeaweedS3) -> UploadsOnSeaweed:
    """template.yaml's uploads bucket on SeaweedFS and the project's presign function signing for it."""
    return uploads_on(enforcing_s3, max_upload_bytes=SEAWEED_MAX_UPLOAD_BYTES)

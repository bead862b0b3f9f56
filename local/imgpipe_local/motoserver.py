"""The embedded moto server (S3, SQS, Cognito), in a process of its own, and what the template
declares in it.

A process of its own (`python -m imgpipe_local.motoserver FD ORIGINS`, serving the socket the
stack bound): every stack gets an empty moto, moto's request handling does not compete with
the stack's servers for one interpreter, and the patch in imgpipe_local.moto_patches stays
out of the processes that run tests with mock_aws. In front of moto's app: only loopback Host
names (DNS rebinding), no /moto-api (reset, dashboard) for a web page to reach, Cognito's CORS
for the stack's origins only, and S3's CORS from each bucket's rules, which moto applies
itself once its global flask-cors is off (MOTO_DISABLE_GLOBAL_CORS).
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from imgpipe_local.cors import CorsRules, is_preflight
from imgpipe_local.httpserver import INVALID_HOST, Request, bind_socket, loopback_host

if TYPE_CHECKING:  # the moto process imports this module and needs no SAM translator
    from imgpipe_local.template import LocalTemplate

log = logging.getLogger("imgpipe_local")

FAKE_ACCESS_KEY = FAKE_SECRET_KEY = "testing"  # noqa: S105 - moto accepts any credentials
COGNITO_TARGET = "AWSCognitoIdentityProviderService."


class MotoServer:
    """moto's server on a socket bound here (a busy port is named at once), run by a child process."""

    def __init__(self, host: str, port: int) -> None:
        self._socket = bind_socket("moto", host, port)
        bound_host, bound_port = self._socket.getsockname()[:2]
        self.url = f"http://{bound_host}:{bound_port}"
        self._process: subprocess.Popen[bytes] | None = None
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def start(self, cognito_origins: Sequence[str]) -> None:
        fd = self._socket.fileno()
        self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-I", "-m", "imgpipe_local.motoserver", str(fd), ",".join(cognito_origins)],
            pass_fds=(fd,),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "MOTO_DISABLE_GLOBAL_CORS": "true"},
            start_new_session=True,  # a terminal's Ctrl-C is for the stack to handle, not moto
        )
        assert self._process.stdout is not None
        with self._process.stdout as ready:
            if ready.readline() != b"ready\n":
                raise RuntimeError(f"the moto server did not start (exit status {self._process.wait()})")

    def stop(self) -> None:
        if self._process is not None:
            assert self._process.stdin is not None
            self._process.stdin.close()  # the server exits at the end of its stdin
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        self._socket.close()

    def client(self, service: str, region: str) -> Any:
        """A boto3 client for this server, one per service (thread-safe; creating one takes ~50 ms)."""
        with self._lock:
            if (service, region) not in self._clients:
                session = boto3.session.Session(
                    aws_access_key_id=FAKE_ACCESS_KEY,
                    aws_secret_access_key=FAKE_SECRET_KEY,
                    region_name=region,
                )
                config = Config(
                    signature_version="s3v4" if service == "s3" else None, max_pool_connections=50
                )
                # Any: boto3's stubs type clients per literal service name; this one serves several.
                name: Any = service
                self._clients[service, region] = session.client(name, endpoint_url=self.url, config=config)
            return self._clients[service, region]


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def guarded(app: WsgiApp, port: int, cognito: CorsRules) -> WsgiApp:
    def guard(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        headers = [
            (key[5:].replace("_", "-"), str(value)) for key, value in environ.items() if key[:5] == "HTTP_"
        ]
        request = Request(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""), "", headers, b"", "", "")
        if not loopback_host(request.header("Host"), port):
            start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return [INVALID_HOST]
        if request.path.startswith("/moto-api"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"Not Found"]
        # Cognito's preflight names its X-Amz-Target header; S3's go to moto and the bucket's rules.
        if (
            is_preflight(request)
            and "x-amz-target" in (request.header("Access-Control-Request-Headers") or "").lower()
        ):
            granted = cognito.preflight_headers(request)
            start_response("200 OK" if granted is not None else "403 Forbidden", granted or [])
            return [b""]
        if (request.header("X-Amz-Target") or "").startswith(COGNITO_TARGET):
            extra = cognito.headers(request.header("Origin"))
            return app(
                environ, lambda status, headers, *exc: start_response(status, [*headers, *extra], *exc)
            )
        return app(environ, start_response)

    return guard


def serve(fd: int, cognito_origins: str) -> None:
    """The child: moto's app, patched and guarded, on the inherited socket until stdin closes."""
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    from imgpipe_local import moto_patches

    moto_patches.apply()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto would log every request
    with socket.socket(fileno=os.dup(fd)) as bound:
        host, port = bound.getsockname()[:2]
    cognito = CorsRules.of(cognito_origins, ["POST"], ["*"], max_age=600)
    app = guarded(DomainDispatcherApplication(create_backend_app), port, cognito)
    server = make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler, fd=fd)
    # The stack closes stdin to stop moto (or dies): nothing of moto's state is worth a clean exit.
    threading.Thread(target=lambda: (sys.stdin.buffer.read(), os._exit(0)), daemon=True).start()
    print("ready", flush=True)
    os.dup2(2, 1)  # nothing reads stdout any more: anything moto prints goes to stderr
    server.serve_forever(poll_interval=0.05)


# ---------------------------------------------------------------- provisioning


@dataclass(frozen=True)
class CognitoPool:
    user_pool_id: str
    client_id: str
    jwks_url: str
    issuer: str


def create_cognito(
    cognito: Any, moto_url: str, region: str, username: str, password: str, pool_name: str = "imgpipe"
) -> CognitoPool:
    pool = cognito.create_user_pool(
        PoolName=pool_name,
        Policies={"PasswordPolicy": {"MinimumLength": 8}},
        AutoVerifiedAttributes=["email"],
    )["UserPool"]
    client = cognito.create_user_pool_client(
        UserPoolId=pool["Id"],
        ClientName="imgpipe-web",
        GenerateSecret=False,
        ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    )["UserPoolClient"]
    cognito.admin_create_user(
        UserPoolId=pool["Id"],
        Username=username,
        TemporaryPassword=password,
        MessageAction="SUPPRESS",
        UserAttributes=[
            {"Name": "email", "Value": f"{username}@example.com"},
            {"Name": "email_verified", "Value": "true"},
        ],
    )
    cognito.admin_set_user_password(
        UserPoolId=pool["Id"], Username=username, Password=password, Permanent=True
    )
    return CognitoPool(
        user_pool_id=pool["Id"],
        client_id=client["ClientId"],
        jwks_url=f"{moto_url}/{pool['Id']}/.well-known/jwks.json",
        issuer=f"https://cognito-idp.{region}.amazonaws.com/{pool['Id']}",
    )


@dataclass(frozen=True)
class TriggerQueue:
    """An SQS queue standing in for one S3 -> Lambda notification of the template."""

    bucket: str
    function: str  # logical id
    queue_url: str


# CloudFormation's CorsRule property names -> the S3 API's.
_CORS_RULE_NAMES = {"Id": "ID", "ExposedHeaders": "ExposeHeaders", "MaxAge": "MaxAgeSeconds"}


def _s3_cors_rule(rule: dict[str, Any]) -> dict[str, Any]:
    return {_CORS_RULE_NAMES.get(key, key): value for key, value in rule.items()}


def provision(template: LocalTemplate, s3: Any, sqs: Any, region: str) -> list[TriggerQueue]:
    """Create the template's queues and buckets (versioning, CORS, notifications) in moto."""
    for queue in template.queues.values():
        sqs.create_queue(QueueName=queue.name, Attributes=queue.attributes)
    triggers = []
    for bucket in template.buckets.values():
        create: dict[str, Any] = {"Bucket": bucket.name}
        if region != "us-east-1":
            create["CreateBucketConfiguration"] = {"LocationConstraint": region}
        s3.create_bucket(**create)
        if bucket.versioned:
            s3.put_bucket_versioning(Bucket=bucket.name, VersioningConfiguration={"Status": "Enabled"})
        if bucket.cors_rules:
            rules = [_s3_cors_rule(rule) for rule in bucket.cors_rules]
            s3.put_bucket_cors(Bucket=bucket.name, CORSConfiguration={"CORSRules": rules})
        queue_configurations = []
        for trigger in bucket.triggers:
            # S3 -> Lambda needs Docker in moto; the same notification into a queue does not,
            # and keeps the template's event types and key filter.
            url = sqs.create_queue(QueueName=trigger.queue_name(bucket.name))["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
                "QueueArn"
            ]
            config: dict[str, Any] = {"QueueArn": arn, "Events": [trigger.event]}
            if trigger.filter_rules:
                config["Filter"] = {
                    "Key": {
                        "FilterRules": [
                            {"Name": name, "Value": value} for name, value in trigger.filter_rules
                        ]
                    }
                }
            queue_configurations.append(config)
            triggers.append(TriggerQueue(bucket=bucket.name, function=trigger.function, queue_url=url))
        if queue_configurations:
            s3.put_bucket_notification_configuration(
                Bucket=bucket.name, NotificationConfiguration={"QueueConfigurations": queue_configurations}
            )
    return triggers


if __name__ == "__main__":
    serve(int(sys.argv[1]), sys.argv[2])

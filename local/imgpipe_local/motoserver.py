"""The embedded moto server (S3, SQS, Cognito) and the resources the template declares in it."""

from __future__ import annotations

import itertools
import logging
import threading
import time
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

import boto3
from botocore.config import Config
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from moto.s3 import notifications as s3_notifications
from werkzeug.serving import BaseWSGIServer, make_server

from imgpipe_local.httpserver import bind_socket
from imgpipe_local.template import LocalTemplate

log = logging.getLogger("imgpipe_local")

FAKE_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


class MotoServer:
    """moto's server app on a werkzeug server this module owns, so stop() also frees the port."""

    def __init__(self, host: str, port: int) -> None:
        # moto logs every request through werkzeug; the stack logs what matters itself.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        app = DomainDispatcherApplication(create_backend_app)
        # Our own bound socket: given a busy port, werkzeug would print and sys.exit(1).
        self._socket = bind_socket("moto", host, port)
        self._server: BaseWSGIServer = make_server(
            host, port, app, threaded=True, request_handler=MotoRequestHandler, fd=self._socket.fileno()
        )
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="imgpipe-moto",
            daemon=True,
        )
        self._thread.start()

    def reset(self) -> None:
        """Forget every resource: moto's backends are process-wide, a new stack starts empty."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")  # noqa: S310 - our own http URL
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310
            pass

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()
        self._socket.close()

    def client(self, service: str, region: str) -> Any:
        return boto3.session.Session(region_name=region, **FAKE_CREDENTIALS).client(
            service,
            endpoint_url=self.url,
            config=Config(signature_version="s3v4" if service == "s3" else None),
        )


# ---------------------------------------------------------------- S3 events as S3 sends them

_sequencer = itertools.count(time.time_ns() // 1000)
_sequencer_lock = threading.Lock()
_patched = False


def enrich_s3_events() -> None:
    """Give moto's S3 notifications the fields real S3 events carry and moto leaves out.

    The processor orders events of one key by `s3.object.sequencer` and reads the exact
    `versionId` of a versioned upload; moto's events have neither. Sequencers increase
    with every event, as S3's do for one key.
    """
    global _patched
    if _patched:
        return
    original = s3_notifications._get_s3_event

    def get_s3_event(event_name: str, bucket: Any, key: Any, notification_id: str) -> dict[str, Any]:
        event = original(event_name, bucket, key, notification_id)
        with _sequencer_lock:
            sequencer = f"{next(_sequencer):018X}"
        for record in event["Records"]:
            obj = record["s3"]["object"]
            # S3 form-encodes the key but leaves its slashes alone; moto encodes them too.
            obj["key"] = quote_plus(key.name, safe="/")
            if getattr(bucket, "is_versioned", False) and getattr(key, "version_id", None):
                obj["versionId"] = key.version_id
            obj["sequencer"] = sequencer
            record.setdefault("userIdentity", {"principalId": "AWS:LOCAL"})
            record.setdefault("requestParameters", {"sourceIPAddress": "127.0.0.1"})
            record.setdefault(
                "responseElements", {"x-amz-request-id": sequencer[-16:], "x-amz-id-2": "local"}
            )
            record["s3"]["bucket"].setdefault("ownerIdentity", {"principalId": "LOCAL"})
        return event

    s3_notifications._get_s3_event = get_s3_event
    _patched = True


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
        create = {"Bucket": bucket.name}
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

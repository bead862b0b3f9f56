"""Throwaway SAM projects for the local stack's tests: a template snippet and tiny handlers in tmp_path."""

from __future__ import annotations

import json
import os
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgpipe_local import template
from imgpipe_local.gateway import Gateway
from imgpipe_local.httpserver import LocalServer
from imgpipe_local.workers import Runtime, aws_environment

API_TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  AllowedOrigins:
    Type: CommaDelimitedList
    Default: "http://app.test,http://other.test"
  CacheTtl:
    Type: Number
    Default: 300
Globals:
  Function:
    Runtime: python3.13
    Handler: app.lambda_handler
    Timeout: 5
    Environment:
      Variables:
        GREETING: hello
Resources:
  Api:
    Type: AWS::Serverless::HttpApi
    Properties:
      CorsConfiguration:
        AllowOrigins: !Ref AllowedOrigins
        AllowMethods: [GET, POST, DELETE]
        AllowHeaders: [authorization, content-type]
        ExposeHeaders: [x-request-id]
        MaxAge: 60
      Auth:
        DefaultAuthorizer: TokenAuthorizer
        Authorizers:
          TokenAuthorizer:
            FunctionArn: !GetAtt AuthFunction.Arn
            AuthorizerPayloadFormatVersion: "2.0"
            EnableSimpleResponses: true
            Identity:
              Headers: [Authorization]
              ReauthorizeEvery: !Ref CacheTtl
  AuthFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: auth
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: echo
      Environment:
        Variables:
          TABLE: !Sub "${AWS::StackName}-table"
      Events:
        Item:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Method: GET, Path: "/items/{id}"}
        Echo:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Method: POST, Path: /echo}
        Public:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Method: GET, Path: /public, Auth: {Authorizer: NONE}}
  ReplyFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: reply
      Events:
        Reply:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Method: POST, Path: /reply, Auth: {Authorizer: NONE}}
"""

# Tokens: "allow-<sub>" passes with context {"sub": <sub>}, "deny" is refused,
# "boom" makes the authorizer raise, "junk" makes it answer nonsense.
AUTH_HANDLER = """\
def lambda_handler(event, context):
    token = event["identitySource"][0].removeprefix("Bearer ")
    if token == "boom":
        raise RuntimeError("authorizer exploded")
    if token == "junk":
        return {"isAuthorized": "yes"}
    if token.startswith("allow-"):
        return {"isAuthorized": True, "context": {"sub": token[len("allow-"):], "event": event}}
    return {"isAuthorized": False}
"""

ECHO_HANDLER = """\
import os

def lambda_handler(event, context):
    return {"event": event, "env": {k: os.environ.get(k) for k in ("GREETING", "TABLE", "AWS_ENDPOINT_URL")},
            "function": context.function_name}
"""

# Replies with whatever the request body asks for, so tests can drive response conversion.
REPLY_HANDLER = """\
import json

def lambda_handler(event, context):
    wanted = json.loads(event["body"])
    if wanted == "raise":
        raise ValueError("asked to fail")
    return wanted
"""


def write_project(root: Path, template_text: str, handlers: dict[str, str]) -> Path:
    (root / "template.yaml").write_text(template_text)
    for folder, source in handlers.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / "app.py").write_text(textwrap.dedent(source))
    return root / "template.yaml"


def api_project(root: Path, template_text: str = API_TEMPLATE) -> Path:
    return write_project(
        root, template_text, {"auth": AUTH_HANDLER, "echo": ECHO_HANDLER, "reply": REPLY_HANDLER}
    )


def touch_newer(path: Path, source: str) -> None:
    """Rewrite `path` so its mtime surely differs from before, whatever the clock's granularity."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(textwrap.dedent(source))
    after = max(path.stat().st_mtime_ns, before + 1_000_000_000)
    os.utime(path, ns=(after, after))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class ServedApi:
    url: str
    runtime: Runtime
    template: template.LocalTemplate

    def invocations(self, logical_id: str) -> int:
        return int(self.runtime.pools[logical_id].invocations)


@contextmanager
def serve_api(
    template_path: Path, parameters: dict[str, str] | None = None, clock: Callable[[], float] = time.monotonic
) -> Iterator[ServedApi]:
    """The template's HTTP API on a free port of 127.0.0.1, without moto."""
    server = LocalServer("api", "127.0.0.1", 0)
    loaded = template.load(template_path, parameters or {}, api_url=server.url)
    runtime = Runtime(loaded.functions, aws_environment(None))
    try:
        server.start(Gateway(loaded.apis[0], runtime.invoke, clock=clock))
        yield ServedApi(url=server.url, runtime=runtime, template=loaded)
    finally:
        server.stop()
        runtime.stop()


TRIGGER_TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  RecordDir:
    Type: String
Resources:
  Inbox:
    Type: AWS::S3::Bucket
    Properties:
      BucketName: !Sub "${AWS::StackName}-inbox"
      VersioningConfiguration:
        Status: Enabled
  Recorder:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: recorder
      Handler: app.lambda_handler
      Runtime: python3.13
      Environment:
        Variables:
          RECORD_DIR: !Ref RecordDir
      EventInvokeConfig:
        MaximumRetryAttempts: 1
        DestinationConfig:
          OnFailure:
            Type: SQS
            Destination: !GetAtt Failures.Arn
      Events:
        Upload:
          Type: S3
          Properties:
            Bucket: !Ref Inbox
            Events: s3:ObjectCreated:*
            Filter:
              S3Key:
                Rules:
                  - Name: prefix
                    Value: incoming/
  Failures:
    Type: AWS::SQS::Queue
"""

# Records every event it gets (one file per invocation, with the worker's pid) and fails for
# keys containing "fail"; for "meet" keys it first waits, within its Timeout, until another
# invocation runs alongside it; for "sleep" keys it overruns its Timeout.
RECORDER_HANDLER = """\
import json
import os
import time
import uuid

import boto3


def lambda_handler(event, context):
    key = event["Records"][0]["s3"]["object"]["key"]
    record = {"event": event, "endpoint": os.environ.get("AWS_ENDPOINT_URL"), "pid": os.getpid()}
    if key.endswith("read-back"):
        bucket = event["Records"][0]["s3"]["bucket"]["name"]
        record["body"] = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    if "meet" in key:
        meeting = os.path.join(os.environ["RECORD_DIR"], "meeting")
        os.makedirs(meeting, exist_ok=True)
        open(os.path.join(meeting, context.aws_request_id), "w").close()
        while len(os.listdir(meeting)) < 2:
            if context.get_remaining_time_in_millis() < 500:
                raise TimeoutError("no other invocation ran alongside this one")
            time.sleep(0.01)
        record["met"] = True
    if "sleep" in key:
        time.sleep(60)
    with open(os.path.join(os.environ["RECORD_DIR"], f"{uuid.uuid4()}.json"), "w") as out:
        json.dump(record, out)
    if "fail" in key:
        raise RuntimeError(f"cannot process {key}")
"""


def recorded(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))]

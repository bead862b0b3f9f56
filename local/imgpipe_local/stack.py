"""The whole pipeline on 127.0.0.1 without Docker or an AWS account.

    with LocalStack(root=ROOT, ports=0) as stack:      # ports=0: any free ports (tests)
        tokens = stack.sign_in(*stack.demo_user)
        ... POST f"{stack.api_url}/avatars/key_upload" ...
        stack.wait_idle()

moto (S3, SQS, Cognito; a process of its own, so every stack starts empty), the functions'
worker processes, the HTTP API, S3 -> SQS -> processor dispatch, the CDN and the web page, all
wired from template.yaml.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import mimetypes
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from imgpipe_local import lambda_api
from imgpipe_local import template as template_module
from imgpipe_local.cdn import Cdn
from imgpipe_local.cfn import ACCOUNT_ID, REGION, STACK_NAME
from imgpipe_local.dispatcher import Dispatcher
from imgpipe_local.gateway import Gateway
from imgpipe_local.httpserver import App, LocalServer, Request, Response
from imgpipe_local.motoserver import MotoServer, TriggerQueue, create_cognito, provision
from imgpipe_local.workers import Runtime, aws_environment

log = logging.getLogger("imgpipe_local")

ROOT = Path(__file__).resolve().parents[2]
DEMO_USERNAME = "demo"
# A fixed development password: printed at start, known to the web page's docs and tests.
DEMO_PASSWORD = "Imgpipe-demo-1"  # noqa: S105


@dataclass(frozen=True)
class Ports:
    moto: int = 5100
    api: int = 3000
    cdn: int = 3100
    web: int = 8000

    @classmethod
    def of(cls, ports: Ports | Mapping[str, int] | int | None) -> Ports:
        if ports is None:
            return cls()
        if isinstance(ports, int):
            return cls(ports, ports, ports, ports)
        if isinstance(ports, Mapping):
            return cls(**ports)
        return ports


@dataclass(frozen=True)
class DemoUser:
    username: str
    password: str

    def __iter__(self) -> Iterator[str]:
        # Lets `stack.sign_in(*stack.demo_user)` read naturally.
        return iter((self.username, self.password))


class WebPage:
    """Static files of web/ plus /config.json, the page's pointer to the stack's endpoints, and
    /openapi.json, docs/openapi.yaml naming this stack's API as its server; and the Lambda API
    for this machine's programs (imgpipe_local.lambda_api), under its own paths."""

    def __init__(
        self,
        folder: Path,
        config: dict[str, Any],
        openapi: dict[str, Any] | None = None,
        functions: lambda_api.LambdaApi | None = None,
    ) -> None:
        self.folder = folder.resolve()
        self.config = config
        self.openapi = openapi
        self.functions = functions

    def handle(self, request: Request) -> Response:
        if self.functions is not None and request.path.startswith(lambda_api.PREFIX):
            return self.functions.handle(request)
        if request.method not in ("GET", "HEAD"):
            return Response(405, [("Allow", "GET, HEAD")])
        if request.path == "/config.json":
            # It holds the demo user's password: for this machine only, even on a wider bind.
            if not ipaddress.ip_address(request.client_ip).is_loopback:
                return Response(
                    403, [("Content-Type", "text/plain")], b"config.json is served to this machine only"
                )
            return Response.json(200, self.config, [("Cache-Control", "no-store")])
        if request.path == "/openapi.json" and self.openapi is not None:
            return Response.json(200, self.openapi, [("Cache-Control", "no-store")])
        path = (self.folder / (request.path.lstrip("/") or "index.html")).resolve()
        if path.is_dir():
            path = path / "index.html"
        if not path.is_relative_to(self.folder) or not path.is_file():
            return Response(404, [("Content-Type", "text/plain")], b"Not Found")
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return Response(
            200, [("Content-Type", content_type), ("Cache-Control", "no-cache")], path.read_bytes()
        )


class NotFound:
    """What a server answers when the template has nothing for it (no HTTP API, no distribution)."""

    def handle(self, request: Request) -> Response:
        return Response.json(404, {"message": "Not Found"})


class LocalStack:
    def __init__(
        self,
        root: str | Path = ROOT,
        ports: Ports | Mapping[str, int] | int | None = None,
        *,
        host: str = "127.0.0.1",
        template: str | Path = "template.yaml",
        parameters: Mapping[str, Any] | None = None,
        demo_username: str = DEMO_USERNAME,
        demo_password: str = DEMO_PASSWORD,
        retry_delay_seconds: int = 1,
        web_dir: str | Path | None = None,
        stack_name: str = STACK_NAME,
        aws_latency_ms: float = 0,
    ) -> None:
        self.root = Path(root).resolve()
        self.template_path = self.root / template
        self.ports = Ports.of(ports)
        self.host = host
        self.extra_parameters = dict(parameters or {})
        self.demo_user = DemoUser(demo_username, demo_password)
        self.retry_delay_seconds = retry_delay_seconds
        self.web_dir = Path(web_dir) if web_dir else self.root / "web"
        self.region = REGION
        self.stack_name = stack_name
        self.aws_latency_ms = aws_latency_ms
        self.template: template_module.LocalTemplate | None = None
        self.runtime: Runtime | None = None
        self.outputs: dict[str, Any] = {}
        self.web_config: dict[str, Any] = {}
        self._parameters: dict[str, Any] = {}
        self._moto: MotoServer | None = None
        self._servers: dict[str, LocalServer] = {}
        self._dispatchers: list[Dispatcher] = []
        self._triggers: list[TriggerQueue] = []

    @staticmethod
    def free_ports() -> Ports:
        """Ports for a stack that must not clash with `make dev` or another test run: any free ones."""
        return Ports(0, 0, 0, 0)

    @property
    def moto_url(self) -> str:
        assert self._moto is not None, "stack not started"
        return self._moto.url

    @property
    def api_url(self) -> str:
        return self._servers["api"].url

    @property
    def cdn_url(self) -> str:
        return self._servers["cdn"].url

    @property
    def web_url(self) -> str:
        return self._servers["web"].url

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> LocalStack:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        started = time.perf_counter()
        # Bind every port first: with port 0 the URLs (and so the CORS origins and the
        # endpoints in the functions' environment) are only known once bound.
        self._moto = MotoServer(self.host, self.ports.moto)
        for name in ("api", "cdn", "web"):
            self._servers[name] = LocalServer(name, self.host, getattr(self.ports, name))
        origins = self.extra_parameters.get(
            "AllowedOrigins", f"{self.web_url},http://localhost:{self._servers['web'].port}"
        )
        self._moto.start(cognito_origins=origins.split(","))
        username, password = self.demo_user
        pool = create_cognito(
            self.client("cognito-idp"),
            self.moto_url,
            self.region,
            username,
            password,
            pool_name=self.stack_name,
        )
        self._parameters = {
            "UserPoolId": pool.user_pool_id,
            "UserPoolClientId": pool.client_id,
            "JwksUrl": pool.jwks_url,
            "AllowedOrigins": origins,
            "AWS::StackName": self.stack_name,
        }
        self.template = self._load_template()
        self._triggers = provision(self.template, self.client("s3"), self.client("sqs"), self.region)
        environment = aws_environment(self.moto_url, self.region)
        self.runtime = runtime = Runtime(self.template.functions, environment, latency_ms=self.aws_latency_ms)
        self.outputs = dict(self.template.outputs)
        self.web_config = {
            "apiUrl": self.api_url,
            "cdnUrl": self.cdn_url,
            "cognitoEndpoint": self.moto_url,
            "userPoolId": pool.user_pool_id,
            "clientId": pool.client_id,
            "region": self.region,
            # Local only: the page prefills the demo user's sign-in (never in a deployed config.json).
            "demoUser": {"username": self.demo_user.username, "password": self.demo_user.password},
            # For this machine's tools (imgpipe backfill): the Lambda API, and the outputs
            # `aws cloudformation describe-stacks` would give.
            "lambdaEndpoint": self.web_url,
            "outputs": self.outputs,
        }
        apis = self.template.apis
        if len(apis) > 1:
            log.warning("several HTTP APIs in the template; serving %s", apis[0].logical_id)
        cdn = self.template.cdn
        apps: dict[str, App] = {
            "api": Gateway(apis[0], runtime.invoke, account_id=ACCOUNT_ID, region=self.region)
            if apis
            else NotFound(),
            "cdn": Cdn(cdn, self.client("s3")) if cdn is not None else NotFound(),
            "web": WebPage(
                self.web_dir,
                self.web_config,
                self._openapi(),
                lambda_api.LambdaApi(self._functions, runtime.invoke),
            ),
        }
        for name, app in apps.items():
            self._servers[name].start(app)
        for trigger in self._triggers:
            function = self.template.functions[trigger.function]
            dead_letter = function.event_invoke.on_failure_queue
            dispatcher = Dispatcher(
                self.client("sqs"),
                trigger.queue_url,
                function,
                runtime.invoke,
                dead_letter_url=self._queue_url(dead_letter) if dead_letter else None,
                concurrency=runtime.pools[trigger.function].concurrency,
                retry_delay_seconds=self.retry_delay_seconds,
            )
            dispatcher.start()
            self._dispatchers.append(dispatcher)
        log.info("local stack up in %.1f s", time.perf_counter() - started)

    def update(self, parameters: Mapping[str, Any] | None = None) -> None:
        """A stack update, data kept: template.yaml read again with these parameter overrides on
        top of the stack's; every function runs its new definition (environment, handler,
        Timeout, MemorySize) from its next invocation, on fresh workers, as after `sam deploy`.
        Buckets, queues, routes and the CDN stay as the stack started."""
        assert self.runtime is not None, "stack not started"
        self.extra_parameters.update(parameters or {})
        self.template = self._load_template()
        self.outputs.clear()
        self.outputs.update(self.template.outputs)
        self.runtime.update(self.template.functions)

    def _load_template(self) -> template_module.LocalTemplate:
        return template_module.load(
            self.template_path,
            {**self._parameters, **self.extra_parameters},
            api_url=self.api_url,
            cdn_url=self.cdn_url,
            queue_url_base=self.moto_url,
        )

    def _functions(self) -> Mapping[str, template_module.Function]:
        assert self.template is not None
        return self.template.functions

    def stop(self) -> None:
        for dispatcher in self._dispatchers:
            dispatcher.request_stop()  # all at once: each may be in a 1 s long poll
        if self.runtime is not None:
            self.runtime.stop()  # also ends the invocations under way
        for server in self._servers.values():
            server.stop()
        self._servers.clear()
        if self._moto is not None:
            self._moto.stop()  # before joining the dispatchers: it ends their long polls
            self._moto = None
        for dispatcher in self._dispatchers:
            dispatcher.stop()
        self._dispatchers.clear()

    def _openapi(self) -> dict[str, Any] | None:
        document = self.root / "docs" / "openapi.yaml"
        if not document.is_file():
            return None
        return {**yaml.safe_load(document.read_text()), "servers": [{"url": self.api_url}]}

    # ---------------------------------------------------------------- helpers for callers
    def client(self, service: str) -> Any:
        """A boto3 client for the stack's moto server."""
        assert self._moto is not None, "stack not started"
        return self._moto.client(service, self.region)

    def _queue_url(self, name: str) -> str:
        return f"{self.moto_url}/{ACCOUNT_ID}/{name}"

    def sign_in(self, username: str | None = None, password: str | None = None) -> dict[str, Any]:
        """Cognito USER_PASSWORD_AUTH; returns AuthenticationResult (AccessToken, IdToken, …)."""
        result = self.client("cognito-idp").initiate_auth(
            ClientId=self.web_config["clientId"],
            AuthFlow="USER_PASSWORD_AUTH",
            AuthParameters={
                "USERNAME": username or self.demo_user.username,
                "PASSWORD": password or self.demo_user.password,
            },
        )
        authenticated: dict[str, Any] = result["AuthenticationResult"]
        return authenticated

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Return once every trigger queue is drained and no function runs; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while not all(dispatcher.idle() for dispatcher in self._dispatchers):
            if time.monotonic() > deadline:
                raise TimeoutError(f"local stack still busy after {timeout} s")
            time.sleep(0.05)

    def deliver_s3_event(self, event: dict[str, Any]) -> None:
        """Queue `event` (S3 notification JSON) for the functions its bucket triggers, as S3 would."""
        buckets = {record["s3"]["bucket"]["name"] for record in event.get("Records", [])}
        queues = [trigger.queue_url for trigger in self._triggers if trigger.bucket in buckets]
        if not queues:
            raise ValueError(f"no function is triggered by bucket(s) {sorted(buckets)}")
        for queue_url in queues:
            self.client("sqs").send_message(QueueUrl=queue_url, MessageBody=json.dumps(event))

    def dead_letters(self) -> list[dict[str, Any]]:
        """Records in the on-failure destinations (read and left in place)."""
        assert self.template is not None
        queues = {f.event_invoke.on_failure_queue for f in self.template.functions.values()} - {None}
        records: list[dict[str, Any]] = []
        for queue in sorted(q for q in queues if q):
            response = self.client("sqs").receive_message(
                QueueUrl=self._queue_url(queue), MaxNumberOfMessages=10, VisibilityTimeout=0
            )
            records.extend(json.loads(m["Body"]) for m in response.get("Messages", []))
        return records

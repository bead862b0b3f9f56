"""The whole pipeline on 127.0.0.1 without Docker or an AWS account.

    with LocalStack(root=ROOT, ports=0) as stack:      # ports=0: any free ports (tests)
        tokens = stack.sign_in(*stack.demo_user)
        ... POST f"{stack.api_url}/avatars/key_upload" ...
        stack.wait_idle()

moto (S3, SQS, Cognito), the HTTP API, S3 -> SQS -> processor dispatch, the CDN and the web
page, all wired from template.yaml. moto's state is process-wide: the first stack of a process
starts from an empty moto, and a stack started while another runs gets its own stack name
(imgpipe-2, …), so its buckets, queues and functions do not collide with the first one's.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from imgpipe_local import template as template_module
from imgpipe_local.cdn import Cdn
from imgpipe_local.dispatcher import Dispatcher
from imgpipe_local.gateway import Gateway
from imgpipe_local.httpserver import LocalServer, Request, Response
from imgpipe_local.motoserver import MotoServer, TriggerQueue, create_cognito, enrich_s3_events, provision
from imgpipe_local.runtime import Runtime, aws_environment

log = logging.getLogger("imgpipe_local")

ROOT = Path(__file__).resolve().parents[2]
DEMO_USERNAME = "demo"
# A fixed development password: printed at start, known to the web page's docs and tests.
DEMO_PASSWORD = "Imgpipe-demo-1"  # noqa: S105


# Stack names in use by running stacks of this process (moto's backends are shared).
_LIVE: set[str] = set()
_LIVE_LOCK = threading.Lock()


def _claim_stack_name(wanted: str | None) -> tuple[str, bool]:
    """A stack name no running stack uses, and whether this is the only stack (moto may be reset)."""
    with _LIVE_LOCK:
        alone = not _LIVE
        if wanted is not None:
            if wanted in _LIVE:
                raise RuntimeError(f"a local stack named {wanted} is already running in this process")
            name = wanted
        else:
            name = template_module.STACK_NAME
            number = 1
            while name in _LIVE:
                number += 1
                name = f"{template_module.STACK_NAME}-{number}"
        _LIVE.add(name)
        return name, alone


def running_stacks() -> frozenset[str]:
    """Names of the stacks running in this process (sharing its moto backends)."""
    with _LIVE_LOCK:
        return frozenset(_LIVE)


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
    /openapi.json, docs/openapi.yaml naming this stack's API as its server."""

    def __init__(self, folder: Path, config: dict[str, Any], openapi: dict[str, Any] | None = None) -> None:
        self.folder = folder.resolve()
        self.config = config
        self.openapi = openapi

    def handle(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return Response(405, [("Allow", "GET, HEAD")])
        if request.path == "/config.json":
            return Response.json(200, self.config, [("Cache-Control", "no-store")])
        if request.path == "/openapi.json" and self.openapi is not None:
            return Response.json(200, self.openapi, [("Cache-Control", "no-store")])
        relative = request.path.lstrip("/") or "index.html"
        path = (self.folder / relative).resolve()
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
        stack_name: str | None = None,
    ) -> None:
        self.root = Path(root).resolve()
        self.template_path = self.root / template
        self.ports = Ports.of(ports)
        self.host = host
        self.extra_parameters = dict(parameters or {})
        self.demo_user = DemoUser(demo_username, demo_password)
        self.retry_delay_seconds = retry_delay_seconds
        self.web_dir = Path(web_dir) if web_dir else self.root / "web"
        self.region = template_module.REGION
        self.wanted_stack_name = stack_name
        self.stack_name: str | None = None
        self.template: template_module.LocalTemplate | None = None
        self.runtime: Runtime | None = None
        self.outputs: dict[str, Any] = {}
        self.web_config: dict[str, Any] = {}
        self._moto: MotoServer | None = None
        self._servers: dict[str, LocalServer] = {}
        self._dispatchers: list[Dispatcher] = []
        self._triggers: list[TriggerQueue] = []
        self._started = False

    @staticmethod
    def free_ports() -> Ports:
        """Ports for a stack that must not clash with `make dev` or another test run: any free ones."""
        return Ports(0, 0, 0, 0)

    # ---------------------------------------------------------------- URLs
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

    # ---------------------------------------------------------------- lifecycle
    def __enter__(self) -> LocalStack:
        self.start()
        return self

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
        self.stack_name, alone = _claim_stack_name(self.wanted_stack_name)
        enrich_s3_events()
        self._moto.start()
        if alone:
            self._moto.reset()
        s3 = self.client("s3")
        sqs = self.client("sqs")
        pool = create_cognito(
            self.client("cognito-idp"),
            self.moto_url,
            self.region,
            self.demo_user.username,
            self.demo_user.password,
            pool_name=self.stack_name,
        )
        web_port = self._servers["web"].port
        parameters = {
            "UserPoolId": pool.user_pool_id,
            "UserPoolClientId": pool.client_id,
            "JwksUrl": pool.jwks_url,
            "AllowedOrigins": f"{self.web_url},http://localhost:{web_port}",
            "AWS::StackName": self.stack_name,
            **self.extra_parameters,
        }
        self.template = template_module.load(
            self.template_path,
            parameters,
            api_url=self.api_url,
            cdn_url=self.cdn_url,
            queue_url_base=self.moto_url,
        )
        triggers = self._triggers = provision(self.template, s3, sqs, self.region)
        self.runtime = Runtime(self.template.functions, aws_environment(self.moto_url, self.region))
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
        }
        if len(self.template.apis) > 1:
            log.warning("several HTTP APIs in the template; serving %s", self.template.apis[0].logical_id)
        if self.template.apis:
            gateway = Gateway(
                self.template.apis[0],
                self.runtime.invoke,
                account_id=template_module.ACCOUNT_ID,
                region=self.region,
            )
            self._servers["api"].start(gateway)
        else:
            self._servers["api"].start(NotFound())
        self._servers["cdn"].start(
            Cdn(self.template.cdn, s3) if self.template.cdn is not None else NotFound()
        )
        openapi = self.root / "docs" / "openapi.yaml"
        self._servers["web"].start(
            WebPage(
                self.web_dir,
                self.web_config,
                {**yaml.safe_load(openapi.read_text()), "servers": [{"url": self.api_url}]}
                if openapi.is_file()
                else None,
            )
        )
        for trigger in triggers:
            function = self.template.functions[trigger.function]
            dead_letter = function.event_invoke.on_failure_queue
            dispatcher = Dispatcher(
                self.client("sqs"),
                trigger.queue_url,
                function,
                self.runtime.invoke,
                dead_letter_url=f"{self.moto_url}/{template_module.ACCOUNT_ID}/{dead_letter}"
                if dead_letter
                else None,
                retry_delay_seconds=self.retry_delay_seconds,
            )
            dispatcher.start()
            self._dispatchers.append(dispatcher)
        self._started = True
        log.info("local stack up in %.1f s", time.perf_counter() - started)

    def stop(self) -> None:
        for dispatcher in self._dispatchers:
            dispatcher.request_stop()  # all at once: each may be in a 1 s long poll
        for dispatcher in self._dispatchers:
            dispatcher.stop()
        self._dispatchers.clear()
        for server in self._servers.values():
            server.stop()
        self._servers.clear()
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
        if self.stack_name is not None:
            with _LIVE_LOCK:
                _LIVE.discard(self.stack_name)
            self.stack_name = None
        self._started = False

    # ---------------------------------------------------------------- helpers for callers
    def client(self, service: str) -> Any:
        """A boto3 client for the stack's moto server."""
        assert self._moto is not None, "stack not started"
        return self._moto.client(service, self.region)

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
        return result["AuthenticationResult"]

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Return once every trigger queue is drained and no function runs; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            if all(dispatcher.idle() for dispatcher in self._dispatchers):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"local stack still busy after {timeout} s")
            time.sleep(0.05)

    def deliver_s3_event(self, event: dict[str, Any]) -> None:
        """Queue `event` (S3 notification JSON) for the functions its bucket triggers, as S3 would."""
        buckets = {record["s3"]["bucket"]["name"] for record in event.get("Records", [])}
        queues = [trigger.queue_url for trigger in self._triggers if trigger.bucket in buckets]
        if not queues:
            raise ValueError(f"no function is triggered by bucket(s) {sorted(buckets)}")
        sqs = self.client("sqs")
        for queue_url in queues:
            sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(event))

    def dead_letters(self) -> list[dict[str, Any]]:
        """Records in the on-failure destinations (read and left in place)."""
        sqs = self.client("sqs")
        records = []
        assert self.template is not None
        for queue in {f.event_invoke.on_failure_queue for f in self.template.functions.values()} - {None}:
            url = f"{self.moto_url}/{template_module.ACCOUNT_ID}/{queue}"
            response = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0)
            records.extend(json.loads(m["Body"]) for m in response.get("Messages", []))
        return records

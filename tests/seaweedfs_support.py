"""SeaweedFS's S3 gateway on 127.0.0.1: an S3 that enforces presigned POST policies as AWS does.

moto stores whatever is posted; SeaweedFS checks the policy's conditions, its expiry and its
signature (with an identity configured; without one it checks no signature at all). `weed mini`
runs master, volume, filer and S3 gateway in one process; every port it opens is given a free
one here, so parallel runs and other developers' servers do not collide. `make seaweedfs` (a
dependency of `make e2e`) installs the pinned, hash-checked binary into .tools/seaweedfs.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from imgpipe_local.template import Bucket, Function, LocalTemplate
from imgpipe_local.template import load as load_template
from imgpipe_local.workers import FunctionPool
from tests.conftest import ROOT, load_event

WEED = Path(os.environ.get("IMGPIPE_WEED", ROOT / ".tools" / "seaweedfs" / "bin" / "weed"))
REGION = "us-east-1"
ACCESS_KEY = "IMGPIPEE2E0SEAWEEDFS"
STARTUP_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 30
# weed's admin worker dials the admin server at its HTTP port + 10000 whatever -admin.port.grpc
# says, so that port must be free too.
GRPC_PORT_OFFSET = 10000


class SeaweedFSError(RuntimeError):
    pass


@dataclass
class SeaweedS3:
    """A running gateway: its endpoint, the one identity it trusts, and the process behind it."""

    endpoint_url: str
    access_key: str
    secret_key: str
    process: subprocess.Popen[bytes]
    log_path: Path
    startup_seconds: float

    def client(self, *, secret_key: str | None = None) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            config=Config(signature_version="s3v4", retries={"max_attempts": 1}),
        )

    def environment(self, *, secret_key: str | None = None) -> dict[str, str]:
        """What a function's boto3 needs to sign for and talk to this gateway (no session token:
        the identity is a static key pair)."""
        return {
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": secret_key or self.secret_key,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
        }

    def memory_mib(self) -> dict[str, float]:
        """The gateway's resident memory now and at its peak (Linux /proc)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        return {name: int(fields[name].split()[0]) / 1024 for name in ("VmRSS", "VmHWM")}

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def seaweedfs(data_dir: Path) -> Iterator[SeaweedS3]:
    """Start `weed mini` with its data in `data_dir`, yield once S3 answers signed requests, stop it."""
    if not WEED.is_file():
        raise SeaweedFSError(f"{WEED} not found: run `make seaweedfs` (make e2e installs it)")
    secret_key = secrets.token_urlsafe(30)
    identities = data_dir / "identities.json"
    identities.write_text(json.dumps({"identities": [_identity(ACCESS_KEY, secret_key)]}))
    # A port taken between choosing it and weed binding it makes weed exit: try again.
    for attempt in range(3):
        try:
            server = _start(data_dir, identities, secret_key)
            break
        except SeaweedFSError:
            if attempt == 2:
                raise
    try:
        yield server
    finally:
        _stop(server.process)


def _identity(access_key: str, secret_key: str) -> dict[str, Any]:
    return {
        "name": "imgpipe-e2e",
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }


def _start(data_dir: Path, identities: Path, secret_key: str) -> SeaweedS3:
    s3_port = _free_port()
    admin_port = _free_port_pair(GRPC_PORT_OFFSET)
    args = [
        str(WEED),
        "mini",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-admin.ui=false",
        "-webdav=false",
        f"-s3.config={identities}",
        # Iceberg and Lance catalogs off: two ports fewer, nothing here uses them.
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.port={s3_port}",
        f"-s3.port.grpc={_free_port()}",
        f"-admin.port={admin_port}",
        "-volume.preStopSeconds=0",
    ]
    for component in ("master", "volume", "filer"):
        args += [f"-{component}.port={_free_port()}", f"-{component}.port.grpc={_free_port()}"]
    log_path = data_dir / "weed.log"
    started = time.monotonic()
    with log_path.open("ab") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=data_dir)
    server = SeaweedS3(
        endpoint_url=f"http://127.0.0.1:{s3_port}",
        access_key=ACCESS_KEY,
        secret_key=secret_key,
        process=process,
        log_path=log_path,
        startup_seconds=0.0,
    )
    try:
        _wait_until_ready(server, started)
    except BaseException:
        _stop(process)
        raise
    server.startup_seconds = time.monotonic() - started
    return server


def _wait_until_ready(server: SeaweedS3, started: float) -> None:
    """Until a signed ListBuckets succeeds: the gateway, the filer behind it and the identity."""
    client = server.client()
    delay = 0.02
    while True:
        if server.process.poll() is not None:
            raise SeaweedFSError(f"weed exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            client.list_buckets()
        except (BotoCoreError, ClientError) as error:
            if time.monotonic() - started > STARTUP_TIMEOUT_SECONDS:
                raise SeaweedFSError(
                    f"S3 not ready after {STARTUP_TIMEOUT_SECONDS}s ({error}):\n{server.log_tail()}"
                ) from None
        else:
            return
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (weed mini shuts its components down in order), SIGKILL if it does not end."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_SECONDS)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _free_port_pair(offset: int) -> int:
    """A port p with p + offset free as well (both below 65536)."""
    for _ in range(200):
        port = random.randint(20000, 65535 - offset)
        with contextlib.ExitStack() as stack:
            try:
                for candidate in (port, port + offset):
                    probe = stack.enter_context(socket.socket())
                    probe.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return port
    raise SeaweedFSError("no free port pair found")


# ---------------------------------------------------------------- the uploads bucket on it


@dataclass
class UploadsOnSeaweed:
    """template.yaml's uploads bucket created on SeaweedFS, and the project's own presign function
    (functions/presign_upload with the template's environment) signing for it, invoked in a worker
    process with API Gateway's event as the local stack invokes it."""

    server: SeaweedS3
    template: LocalTemplate

    def __post_init__(self) -> None:
        self._runners: dict[tuple[str | None, int | None], FunctionPool] = {}

    @property
    def bucket(self) -> Bucket:
        [bucket] = [b for b in self.template.buckets.values() if b.logical_id == "UploadsBucket"]
        return bucket

    @property
    def max_bytes(self) -> int:
        return int(self.presign_function.environment["MAX_UPLOAD_BYTES"])

    @property
    def presign_function(self) -> Function:
        return self.template.functions["PresignUploadFunction"]

    def provision(self, *, origins: tuple[str, ...] = ()) -> None:
        """Create the bucket as the template declares it (versioning; CORS, for `origins`)."""
        s3 = self.server.client()
        if self.bucket.name not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
            s3.create_bucket(Bucket=self.bucket.name)
        if self.bucket.versioned:
            s3.put_bucket_versioning(Bucket=self.bucket.name, VersioningConfiguration={"Status": "Enabled"})
        if origins:
            rules = [
                _s3_cors_rule({**rule, "AllowedOrigins": list(origins)}) for rule in self.bucket.cors_rules
            ]
            s3.put_bucket_cors(Bucket=self.bucket.name, CORSConfiguration={"CORSRules": rules})

    def presign(
        self,
        sub: str,
        content_type: str = "image/png",
        *,
        secret_key: str | None = None,
        ttl_seconds: int | None = None,
    ) -> dict[str, Any]:
        """The 200 body of POST /avatars/key_upload for a caller whose verified sub is `sub`,
        signed with the gateway's identity (or `secret_key` instead of its secret)."""
        runner = self._runners.get((secret_key, ttl_seconds))
        if runner is None:
            function = self.presign_function
            if ttl_seconds is not None:
                variables = {**function.environment, "UPLOAD_URL_TTL_SECONDS": str(ttl_seconds)}
                function = replace(function, environment=variables)
            environment = self.server.environment(secret_key=secret_key)
            environment["POWERTOOLS_TRACE_DISABLED"] = "true"  # no X-Ray daemon here
            runner = self._runners[(secret_key, ttl_seconds)] = FunctionPool(function, environment)
        event = load_event("presign_upload_key_upload")
        event["requestContext"]["authorizer"]["lambda"]["sub"] = sub
        event["body"] = json.dumps({"contentType": content_type})
        response = runner.invoke(event)
        assert response["statusCode"] == 200, response
        return json.loads(response["body"])  # type: ignore[no-any-return]

    def stored(self, key: str) -> list[dict[str, Any]]:
        """Every version and delete marker under `key`."""
        page = self.server.client().list_object_versions(Bucket=self.bucket.name, Prefix=key)
        return [*page.get("Versions", ()), *page.get("DeleteMarkers", ())]


# CloudFormation's CorsRule property names -> the S3 API's.
_CORS_RULE_NAMES = {"Id": "ID", "ExposedHeaders": "ExposeHeaders", "MaxAge": "MaxAgeSeconds"}


def _s3_cors_rule(rule: dict[str, Any]) -> dict[str, Any]:
    return {_CORS_RULE_NAMES.get(key, key): value for key, value in rule.items()}


def uploads_on(server: SeaweedS3, *, max_upload_bytes: int) -> UploadsOnSeaweed:
    parameters = {
        "UserPoolId": "us-east-1_SeaweedE2e",
        "UserPoolClientId": "seaweed-e2e",
        "MaxUploadBytes": max_upload_bytes,
        # Required by the template (no default); the CORS a test needs comes from provision(origins=).
        "AllowedOrigins": "http://localhost:8000",
    }
    uploads = UploadsOnSeaweed(server, load_template(ROOT / "template.yaml", parameters))
    uploads.provision()
    return uploads

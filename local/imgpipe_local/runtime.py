"""Run a template function in-process, warm, the way Lambda would.

Each function keeps its module loaded between invocations and is re-imported when a `.py`
file under its CodeUri or one of its layers changes, so an edit shows up on the next request
without a rebuild. Environment variables are process-wide, so invocations (and imports, where
settings are read) hold one lock and run with exactly the function's environment applied.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3

from imgpipe_local.handlers import Handler, load_handler, module_name
from imgpipe_local.template import Function

log = logging.getLogger("imgpipe_local")

# One Lambda "sandbox" at a time: os.environ is shared by every thread of the process.
_INVOKE_LOCK = threading.RLock()


def aws_environment(endpoint_url: str | None, region: str = "us-east-1") -> dict[str, str]:
    """What boto3 inside a handler needs to talk to the local moto server."""
    environment = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        # No X-Ray daemon locally.
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    if endpoint_url:
        environment["AWS_ENDPOINT_URL"] = endpoint_url
    return environment


@dataclass
class LambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    timeout_seconds: int
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    _deadline: float = 0.0

    def __post_init__(self) -> None:
        self.log_group_name = self.log_group_name or f"/aws/lambda/{self.function_name}"
        self._deadline = time.monotonic() + self.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@contextmanager
def applied_environment(variables: Mapping[str, str]) -> Iterator[None]:
    """Set `variables` in os.environ for the duration, restoring the previous values after."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def _on_sys_path(folders: tuple[Path, ...]) -> Iterator[None]:
    """Lambda's import path: the CodeUri folder, then each layer (/opt/python)."""
    added = [str(folder) for folder in folders]
    sys.path[0:0] = added
    try:
        yield
    finally:
        for entry in added:
            sys.path.remove(entry)


def _source_fingerprint(folders: tuple[Path, ...]) -> frozenset[tuple[str, int]]:
    files = set()
    for folder in folders:
        for path in folder.rglob("*.py"):
            try:
                files.add((str(path), path.stat().st_mtime_ns))
            except FileNotFoundError:
                continue  # deleted between listing and stat: the next look sees it gone
    return frozenset(files)


class FunctionRunner:
    """One warm function: loads on first use, reloads when its sources change.

    Each Lambda function has a process of its own. Here they share one, so each runner
    keeps its own copies of the modules its CodeUri and layers provide (`app`, `imgpipe.*`,
    a `helper.py`…) and its own boto3 default session, swaps them in for an invocation and
    out again after it. Two functions never see each other's modules or credentials, and
    the host process (a test, `imgpipe dev`) keeps its own `imgpipe` untouched.
    """

    def __init__(self, function: Function, base_environment: Mapping[str, str]) -> None:
        self.function = function
        self.environment = {
            **base_environment,
            "AWS_LAMBDA_FUNCTION_NAME": function.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_size),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            **function.environment,
        }
        self._folders = (function.code_uri, *function.layers)
        self._module_name = module_name(function.code_uri, function.handler.rpartition(".")[0])
        self._handler: Handler | None = None
        self._fingerprint: frozenset[tuple[str, int]] = frozenset()
        self._modules: dict[str, ModuleType] = {}
        self._boto3_session: boto3.session.Session | None = None
        self.invocations = 0
        self.loads = 0

    def _load(self) -> Handler:
        fingerprint = _source_fingerprint(self._folders)
        if self._handler is not None and fingerprint == self._fingerprint:
            return self._handler
        if self._handler is not None:
            log.info("%s: source changed, reloading", self.function.logical_id)
            # Fresh modules; the boto3 session stays (a new one re-reads botocore's models,
            # ~0.2 s, and nothing in it depends on the code).
            names = self._owned_names()
            for name in [name for name in sys.modules if self._owns(name, names)]:
                del sys.modules[name]
        self._handler = load_handler(self.function.code_uri, self.function.handler)
        self._fingerprint = fingerprint
        self.loads += 1
        return self._handler

    @property
    def modules(self) -> dict[str, ModuleType]:
        """The modules this function has loaded from its own folders (between invocations)."""
        return dict(self._modules)

    def _owned_names(self) -> set[str]:
        """Top-level module names this function's folders provide."""
        names = {self._module_name}
        for folder in self._folders:
            if folder.is_dir():
                names |= {path.stem for path in folder.glob("*.py")}
                names |= {path.name for path in folder.iterdir() if (path / "__init__.py").is_file()}
        return names

    @staticmethod
    def _owns(name: str, names: set[str]) -> bool:
        return name.partition(".")[0] in names

    @contextmanager
    def _sandbox(self) -> Iterator[None]:
        """Swap this function's modules and boto3 default session in, and back out after."""
        names = self._owned_names()
        host = {name: module for name, module in sys.modules.items() if self._owns(name, names)}
        for name in host:
            del sys.modules[name]
        sys.modules.update(self._modules)
        host_session, boto3.DEFAULT_SESSION = boto3.DEFAULT_SESSION, self._boto3_session
        try:
            yield
        finally:
            self._boto3_session, boto3.DEFAULT_SESSION = boto3.DEFAULT_SESSION, host_session
            self._modules = {name: module for name, module in sys.modules.items() if self._owns(name, names)}
            for name in self._modules:
                del sys.modules[name]
            sys.modules.update(host)

    def invoke(self, event: Any, context: LambdaContext | None = None) -> Any:
        """Call the handler with `event`; exceptions propagate like a function error."""
        context = context or LambdaContext(
            function_name=self.function.name,
            invoked_function_arn=self.function.arn,
            memory_limit_in_mb=self.function.memory_size,
            timeout_seconds=self.function.timeout,
        )
        with (
            _INVOKE_LOCK,
            applied_environment(self.environment),
            _on_sys_path(self._folders),
            self._sandbox(),
        ):
            handler = self._load()
            self.invocations += 1
            started = time.monotonic()
            try:
                return handler(event, context)
            finally:
                elapsed = time.monotonic() - started
                if elapsed > self.function.timeout:
                    # Not enforced (a thread cannot be killed), but Lambda would have.
                    log.warning(
                        "%s ran %.1f s, over its %d s Timeout: Lambda would have stopped it",
                        self.function.logical_id,
                        elapsed,
                        self.function.timeout,
                    )


class Runtime:
    """The warm functions of one stack, by logical id."""

    def __init__(self, functions: Mapping[str, Function], base_environment: Mapping[str, str]) -> None:
        self.runners = {
            logical_id: FunctionRunner(function, base_environment)
            for logical_id, function in functions.items()
        }

    def invoke(self, logical_id: str, event: Any) -> Any:
        return self.runners[logical_id].invoke(event)

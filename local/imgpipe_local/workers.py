"""Template functions run as Lambda runs them: in worker processes of their own.

Each function gets a pool of worker processes (imgpipe_local.lambda_worker), each with only
that function's environment, its CodeUri and layers on sys.path, an address-space cap from its
MemorySize, and its Timeout enforced from here: a worker that overruns is killed and the
invocation fails as Lambda reports it. Workers stay warm between invocations; a pool runs as
many at once as the function's ReservedConcurrentExecutions allows (DEFAULT_CONCURRENCY
without one); when a .py file under the function's folders changes, the next invocation gets
a fresh worker, so edits show up without a restart. The workers' stdout and stderr (Powertools'
JSON logs) are copied line by line to this process's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, TextIO

from imgpipe_local.template import Function

log = logging.getLogger("imgpipe_local")

# Without a reservation a function shares the account's unreserved concurrency; 10 is what
# AWS grants a new account, and ten warm workers (~80 MB resident each at rest) are what a
# developer's machine can spare.
DEFAULT_CONCURRENCY = 10
# Lambda gives the init phase (imports, module-level clients) 10 s before retrying it within
# the invocation's own Timeout.
INIT_TIMEOUT_SECONDS = 10


class FunctionError(Exception):
    """An invocation failed: the handler raised, or Lambda's runtime ended it (timeout, memory)."""

    def __init__(self, payload: Mapping[str, Any]) -> None:
        super().__init__(payload.get("errorMessage", ""))
        self.error_type = str(payload.get("errorType", "Unknown"))
        self.payload = dict(payload)

    def report(self) -> str:
        """The error as the function's log would show it: type, message, its own stack trace."""
        return f"{self.error_type}: {self}\n{''.join(self.payload.get('stackTrace', []))}".rstrip()


def aws_environment(endpoint_url: str | None, region: str = "us-east-1") -> dict[str, str]:
    """What boto3 in a worker needs to reach a local moto server and nothing else."""
    environment = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        # No ~/.aws of the developer's: a profile's region or endpoint would leak in.
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon locally
    }
    return {**environment, "AWS_ENDPOINT_URL": endpoint_url} if endpoint_url else environment


def lambda_environment(function: Function, base: Mapping[str, str]) -> dict[str, str]:
    """A worker's whole environment: Lambda's reserved variables, `base`, then the function's."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "TZ": ":UTC",
        # One glibc arena: threads share the main heap instead of reserving 64 MiB of address
        # space each, which RLIMIT_AS would count as if it were used.
        "MALLOC_ARENA_MAX": "1",
        "LAMBDA_TASK_ROOT": str(function.code_uri),
        "_HANDLER": function.handler,
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "AWS_LAMBDA_FUNCTION_NAME": function.name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_size),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function.name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "local",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        **base,
        **function.environment,
    }


def _forward(stream: IO[bytes], output: TextIO | None, default: str) -> None:
    for line in iter(stream.readline, b""):
        out = output or getattr(sys, default)  # looked up per line: a redirect_stdout applies
        out.write(line.decode(errors="replace"))
        out.flush()
    stream.close()


class Worker:
    """One warm execution environment of a function."""

    def __init__(
        self, function: Function, environment: Mapping[str, str], latency_ms: float, output: TextIO | None
    ) -> None:
        self.function = function
        requests, requests_w = os.pipe()
        self._replies, replies_w = os.pipe()
        layers = [str(layer) for layer in function.layers]
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [
                sys.executable,
                "-I",
                "-u",
                "-m",
                "imgpipe_local.lambda_worker",
                str(requests),
                str(replies_w),
                str(latency_ms),
                *layers,
            ],
            pass_fds=(requests, replies_w),
            env=dict(environment),
            cwd=function.code_uri,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # a terminal's Ctrl-C is for the stack to handle
        )
        os.close(requests)
        os.close(replies_w)
        self._requests = os.fdopen(requests_w, "wb")  # buffered: a write is whole, whatever its size
        self._buffer = bytearray()
        streams = ((self.process.stdout, "stdout"), (self.process.stderr, "stderr"))
        self._forwarders = [
            threading.Thread(target=_forward, args=(s, output, d), daemon=True) for s, d in streams
        ]
        for forwarder in self._forwarders:
            forwarder.start()
        self.generation, self.cold = 0, True
        ready = self._reply(time.monotonic() + max(INIT_TIMEOUT_SECONDS, function.timeout), "init")
        if "initError" in ready:
            self.stop()
            raise FunctionError(ready["initError"])
        self.pid, self.init_ms = int(ready["ready"]["pid"]), float(ready["ready"]["initMs"])

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def invoke(self, event: Any) -> Any:
        request_id, timeout = str(uuid.uuid4()), self.function.timeout
        context = {"aws_request_id": request_id, "invoked_function_arn": self.function.arn}
        request = {"event": event, "context": {**context, "deadline_ms": int((time.time() + timeout) * 1000)}}
        with contextlib.suppress(BrokenPipeError):  # a worker that is gone: reading its reply says how
            self._requests.write(json.dumps(request).encode() + b"\n")
            self._requests.flush()
        reply = self._reply(time.monotonic() + timeout, request_id)
        log.info(
            "%s REPORT RequestId: %s Duration: %.1f ms Memory Size: %d MB Max Memory Used: %s MB%s",
            self.function.logical_id,
            request_id,
            reply.get("durationMs", 0.0),
            self.function.memory_size,
            reply.get("maxRssMb", "?"),
            f" Init Duration: {self.init_ms:.0f} ms" if self.cold else "",
        )
        self.cold = False
        if reply.get("fatal"):
            self.kill()
        if "error" in reply:
            error = dict(reply["error"])
            if error["errorType"].startswith("Runtime."):
                error["errorMessage"] = f"RequestId: {request_id} Error: {error['errorMessage']}"
            raise FunctionError(error)
        return reply["result"]

    def _reply(self, deadline: float, request_id: str) -> dict[str, Any]:
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._replies], [], [], remaining)[0]:
                self.kill()
                message = (
                    f"RequestId: {request_id} Error: Task timed out after {self.function.timeout:.2f} seconds"
                )
                raise FunctionError({"errorType": "Sandbox.Timedout", "errorMessage": message})
            chunk = os.read(self._replies, 1 << 20)
            if not chunk:
                code = self.process.wait()
                detail = f"signal: {-code}" if code < 0 else f"exit status {code}"
                message = f"RequestId: {request_id} Error: Runtime exited with error: {detail}"
                raise FunctionError({"errorType": "Runtime.ExitError", "errorMessage": message})
            self._buffer += chunk
        line, _, rest = self._buffer.partition(b"\n")
        self._buffer = bytearray(rest)
        reply: dict[str, Any] = json.loads(line)
        return reply

    def kill(self) -> None:
        if self.alive:
            self.process.kill()
        self.stop()

    def stop(self, wait: float = 5.0) -> None:
        """Close the request pipe (the worker exits at its end) and reap the process."""
        with contextlib.suppress(OSError):  # closed already, or the worker is gone
            self._requests.close()
        with contextlib.suppress(OSError):
            os.close(self._replies)
        self._replies = -1
        try:
            self.process.wait(wait)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for forwarder in self._forwarders:
            forwarder.join()


def _source_fingerprint(folders: tuple[Path, ...]) -> frozenset[tuple[str, int]]:
    files = set()
    for folder in folders:
        for path in folder.rglob("*.py"):
            with contextlib.suppress(FileNotFoundError):  # deleted since listed: the next look sees it gone
                files.add((str(path), path.stat().st_mtime_ns))
    return frozenset(files)


class FunctionPool:
    """The warm workers of one function, at most `concurrency` of them busy at once."""

    def __init__(
        self,
        function: Function,
        base_environment: Mapping[str, str],
        *,
        latency_ms: float = 0,
        output: TextIO | None = None,
    ) -> None:
        self.function = function
        self.concurrency = function.reserved_concurrency or DEFAULT_CONCURRENCY
        self._base_environment = dict(base_environment)
        self._environment = lambda_environment(function, base_environment)
        self._latency_ms, self._output = latency_ms, output
        # Beyond its concurrency Lambda throttles; a local request waits for a worker instead.
        self._slots = threading.BoundedSemaphore(self.concurrency)
        self._lock = threading.Lock()
        self._idle: list[Worker] = []
        self._busy: set[Worker] = set()
        self._folders = (function.code_uri, *function.layers)
        self._fingerprint = _source_fingerprint(self._folders)
        self._generation = 0
        self._closed = False
        self.invocations = 0
        self.loads = 0  # workers started: cold starts

    def invoke(self, event: Any) -> Any:
        with self._slots:
            worker = self._take()
            try:
                return worker.invoke(event)
            finally:
                self._give_back(worker)

    def update(self, function: Function) -> None:
        """A new definition of the function (a stack update): fresh workers run it from the next
        invocation; invocations under way finish on the old one. Its concurrency stays."""
        with self._lock:
            self.function = function
            self._environment = lambda_environment(function, self._base_environment)
            self._folders = (function.code_uri, *function.layers)
            self._fingerprint = _source_fingerprint(self._folders)
            idle = self._next_generation()
        for worker in idle:
            worker.stop()

    def retire(self, latency_ms: float | None = None) -> None:
        """From the next invocation on, fresh workers (with this AWS latency, if given)."""
        with self._lock:
            self._latency_ms = self._latency_ms if latency_ms is None else latency_ms
            idle = self._next_generation()
        for worker in idle:
            worker.stop()

    def _next_generation(self) -> list[Worker]:
        """(Under the lock.) Workers started from now on are a new generation; the idle ones go."""
        self._generation += 1
        idle, self._idle = self._idle, []
        return idle

    def _take(self) -> Worker:
        if _source_fingerprint(self._folders) != self._fingerprint:
            log.info("%s: code changed, starting a fresh worker", self.function.logical_id)
            self._fingerprint = _source_fingerprint(self._folders)
            self.retire()
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self.function.logical_id}: the local stack is stopping")
            self.invocations += 1
            worker = self._idle.pop() if self._idle else None
            generation, latency_ms = self._generation, self._latency_ms
            function, environment = self.function, self._environment
            self.loads += worker is None
        if worker is None:
            worker = Worker(function, environment, latency_ms, self._output)
            worker.generation = generation
        with self._lock:
            self._busy.add(worker)
        return worker

    def _give_back(self, worker: Worker) -> None:
        with self._lock:
            self._busy.discard(worker)
            if worker.alive and worker.generation == self._generation and not self._closed:
                self._idle.append(worker)  # last in, first out: the warmest worker next
                return
        worker.stop()

    def stop(self) -> None:
        """Stop every worker, busy ones included (their invocations fail)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            busy = list(self._busy)
        for worker in busy:
            worker.process.kill()
        for worker in idle:
            worker.stop()


class Runtime:
    """The function pools of one stack, by logical id."""

    def __init__(
        self,
        functions: Mapping[str, Function],
        base_environment: Mapping[str, str],
        *,
        latency_ms: float = 0,
        output: TextIO | None = None,
    ) -> None:
        self.pools = {
            logical_id: FunctionPool(function, base_environment, latency_ms=latency_ms, output=output)
            for logical_id, function in functions.items()
        }

    def invoke(self, logical_id: str, event: Any) -> Any:
        return self.pools[logical_id].invoke(event)

    def update(self, functions: Mapping[str, Function]) -> None:
        """New definitions of the functions (a stack update), each from its next invocation."""
        for logical_id, function in functions.items():
            pool = self.pools.get(logical_id)
            if pool is None:
                log.warning("%s is new in the template: restart the local stack to run it", logical_id)
            else:
                pool.update(function)

    def set_aws_latency(self, ms: float) -> None:
        """Every AWS call of every function waits `ms` first, from each one's next (cold) start."""
        for pool in self.pools.values():
            pool.retire(latency_ms=ms)

    def stop(self) -> None:
        threads = [threading.Thread(target=pool.stop) for pool in self.pools.values()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

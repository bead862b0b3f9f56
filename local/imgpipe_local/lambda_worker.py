"""One Lambda execution environment: `python -m imgpipe_local.lambda_worker REQUEST_FD REPLY_FD`.

Started by imgpipe_local.workers with the function's environment (and nothing of the parent's)
and its CodeUri as the working directory. The first request line is the function's setup; the
worker caps its address space, puts CodeUri and the layers first on sys.path (Lambda's /var/task
and /opt/python), imports the handler (the init phase) and answers `ready`. Then it serves one
invocation per line, JSON in and JSON out, until its request pipe closes.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any, BinaryIO

# Address space a worker may reserve without using it, on top of MemorySize: two thread stacks
# (8 MiB each). With MALLOC_ARENA_MAX=1 (workers.lambda_environment) threads add no 64 MiB glibc
# arenas, and what is mapped tracks what is resident: processing 12 and 48 MP JPEGs, peak
# mapped minus peak resident stayed at the 18 MiB of shared libraries a worker maps at rest.
SLACK_BYTES = 16 * 2**20


@dataclass
class LambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    aws_request_id: str
    log_group_name: str
    log_stream_name: str
    deadline_ms: int
    identity: None = None
    client_context: None = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.deadline_ms - int(time.time() * 1000))


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise LookupError(field)


def cap_address_space(memory_mb: int) -> int:
    """RLIMIT_AS so that what is mapped now, plus MemorySize of new resident memory, fits.

    Lambda counts resident memory against MemorySize; an address-space cap counts every
    mapping, so the mapped-but-not-resident part of the process (shared libraries) is added
    on top. Called again after the init phase, it narrows the cap to the handler's real size.
    """
    mapped, resident = _status_kib("VmSize") * 1024, _status_kib("VmRSS") * 1024
    limit = mapped + max(memory_mb * 2**20 - resident, 0) + SLACK_BYTES
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    return limit


def error_reply(error: BaseException, error_type: str | None = None) -> dict[str, Any]:
    # Lambda's shape for a function error.
    return {
        "errorMessage": str(error),
        "errorType": error_type or type(error).__name__,
        "stackTrace": traceback.format_exception(error)[1:],
    }


def _send(reply: BinaryIO, message: dict[str, Any]) -> None:
    reply.write(json.dumps(message).encode() + b"\n")
    reply.flush()


def _init(setup: dict[str, Any]) -> Any:
    # The venv's editable install would otherwise let a function import the project's own
    # package without the layer that ships it, which Lambda would refuse.
    sys.meta_path[:] = [
        f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")
    ]
    sys.path[0:0] = [setup["code_uri"], *setup["layers"]]
    if setup["latency_ms"]:
        from imgpipe_local import latency

        latency.delay_default_session(setup["latency_ms"])
    module, _, name = setup["handler"].rpartition(".")
    return getattr(importlib.import_module(module), name)


def main(request_fd: int, reply_fd: int) -> None:
    with os.fdopen(request_fd, "rb") as requests, os.fdopen(reply_fd, "wb") as reply:
        setup = json.loads(requests.readline())
        memory_mb = int(setup["memory_mb"])
        started = time.perf_counter()
        try:
            cap_address_space(memory_mb)
            handler = _init(setup)
            cap_address_space(memory_mb)
        except MemoryError as error:
            _send(reply, {"initError": error_reply(error, "Runtime.OutOfMemory")})
            return
        except SyntaxError as error:
            _send(reply, {"initError": error_reply(error, "Runtime.UserCodeSyntaxError")})
            return
        except Exception as error:  # noqa: BLE001 - any init failure is reported, as Lambda does
            kind = "Runtime.ImportModuleError" if isinstance(error, ImportError) else None
            _send(reply, {"initError": error_reply(error, kind)})
            return
        _send(reply, {"ready": {"pid": os.getpid(), "initMs": (time.perf_counter() - started) * 1000}})
        for line in requests:
            request = json.loads(line)
            context = LambdaContext(**request["context"])
            began = time.perf_counter()
            out: dict[str, Any]
            try:
                out = {"result": handler(request["event"], context)}
            except MemoryError as error:
                # Lambda stops an environment that runs out of memory; so does this one.
                _send(reply, {"error": error_reply(error, "Runtime.OutOfMemory"), "fatal": True})
                return
            except Exception as error:  # noqa: BLE001 - a function error is a reply, not the worker's end
                out = {"error": error_reply(error)}
            out["durationMs"] = (time.perf_counter() - began) * 1000
            out["maxRssMb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
            try:
                _send(reply, out)
            except (TypeError, ValueError) as error:
                _send(reply, {"error": error_reply(error, "Runtime.MarshalError")})


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))

"""One Lambda execution environment: `python -m imgpipe_local.lambda_worker REQUESTS REPLIES MS [LAYER…]`.

Started by imgpipe_local.workers with the function's environment (Lambda's reserved variables
included, nothing of the parent's) and its CodeUri as the working directory. The worker caps
its address space, puts CodeUri and the layers first on sys.path (Lambda's /var/task and
/opt/python), imports the handler (the init phase) and answers `ready`; then it serves one
invocation per line on the REQUESTS pipe, JSON in and JSON out on REPLIES, until the pipe closes.
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

    aws_request_id: str
    invoked_function_arn: str
    deadline_ms: int
    function_name: str = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
    function_version: str = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
    memory_limit_in_mb: int = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
    log_group_name: str = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
    log_stream_name: str = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
    identity: None = None
    client_context: None = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.deadline_ms - int(time.time() * 1000))


def cap_address_space(memory_mb: int) -> None:
    """RLIMIT_AS so that what is mapped now, plus MemorySize of new resident memory, fits.

    Lambda counts resident memory against MemorySize; an address-space cap counts every
    mapping, so the mapped-but-not-resident part (shared libraries) is added on top. Called
    again after the init phase, it narrows the cap to the handler's real size.
    """
    if not os.path.exists("/proc/self/status"):
        return  # not Linux: macOS, for one, does not enforce RLIMIT_AS anyway
    with open("/proc/self/status") as status:
        kib = {
            line.split(":")[0]: int(line.split()[1])
            for line in status
            if line.startswith(("VmSize", "VmRSS"))
        }
    limit = (kib["VmSize"] + max(memory_mb * 1024 - kib["VmRSS"], 0)) * 1024 + SLACK_BYTES
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    resource.setrlimit(
        resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard)
    )


def error_reply(error: BaseException, error_type: str | None = None) -> dict[str, Any]:
    # Lambda's shape for a function error.
    stack = traceback.format_exception(error)[1:]
    return {"errorMessage": str(error), "errorType": error_type or type(error).__name__, "stackTrace": stack}


def _send(replies: BinaryIO, message: dict[str, Any]) -> None:
    replies.write(json.dumps(message).encode() + b"\n")
    replies.flush()


def _init(latency_ms: float, layers: list[str]) -> Any:
    # The venv's editable install would otherwise let a function import the project's own
    # package without the layer that ships it, which Lambda would refuse.
    sys.meta_path[:] = [
        f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")
    ]
    sys.path[0:0] = [os.getcwd(), *layers]
    if latency_ms:
        from imgpipe_local import latency

        latency.delay_default_session(latency_ms)
    module, _, name = os.environ["_HANDLER"].rpartition(".")
    return getattr(importlib.import_module(module), name)


def main(requests_fd: int, replies_fd: int, latency_ms: float, layers: list[str]) -> None:
    memory_mb = int(os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"])
    with os.fdopen(requests_fd, "rb") as requests, os.fdopen(replies_fd, "wb") as replies:
        started = time.perf_counter()
        try:
            cap_address_space(memory_mb)
            handler = _init(latency_ms, layers)
            cap_address_space(memory_mb)
        except Exception as error:  # noqa: BLE001 - any init failure is reported, as Lambda does
            kinds = {
                MemoryError: "OutOfMemory",
                SyntaxError: "UserCodeSyntaxError",
                ImportError: "ImportModuleError",
            }
            kind = next((f"Runtime.{k}" for cls, k in kinds.items() if isinstance(error, cls)), None)
            _send(replies, {"initError": error_reply(error, kind)})
            return
        _send(replies, {"ready": {"pid": os.getpid(), "initMs": (time.perf_counter() - started) * 1000}})
        for line in requests:
            request = json.loads(line)
            began = time.perf_counter()
            try:
                reply = {"result": handler(request["event"], LambdaContext(**request["context"]))}
            except MemoryError as error:
                # Lambda stops an environment that runs out of memory; so does this one.
                _send(replies, {"error": error_reply(error, "Runtime.OutOfMemory"), "fatal": True})
                return
            except Exception as error:  # noqa: BLE001 - a function error is a reply, not the worker's end
                reply = {"error": error_reply(error)}
            reply["durationMs"] = (time.perf_counter() - began) * 1000
            reply["maxRssMb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
            try:
                _send(replies, reply)
            except (TypeError, ValueError) as error:  # a result JSON cannot carry
                _send(replies, {"error": error_reply(error, "Runtime.MarshalError")})


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4:])

"""The Lambda service's own API for the local stack's functions: Invoke and GetFunctionConfiguration.

`sam local start-lambda`'s counterpart, served by the local stack's web server (config.json names
it, `lambdaEndpoint`), so boto3 and the AWS CLI reach the stack's functions as they reach
deployed ones:

    boto3.client("lambda", endpoint_url="http://127.0.0.1:8000").invoke(FunctionName=..., Payload=...)
    aws lambda invoke --endpoint-url http://127.0.0.1:8000 --function-name imgpipe-BackfillFunction out.json

An invocation runs in the function's warm worker processes, under its concurrency, Timeout and
MemorySize, exactly as the stack's own triggers run it; a function error is a 200 with
`X-Amz-Function-Error: Unhandled` and Lambda's error document, as Lambda answers. Functions are
named by name, ARN or logical id. `imgpipe backfill` drives BackfillFunction through it.

Only this machine's programs may call it: the caller must be on loopback, carry a SigV4
`Authorization` header (any credentials; like moto, nothing is verified) and no `Origin`. A web
page cannot send such a request to 127.0.0.1: its browser would ask a CORS preflight first,
which this server never grants.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote

from imgpipe_local.httpserver import Request, Response
from imgpipe_local.template import Function
from imgpipe_local.workers import FunctionError

PREFIX = "/2015-03-31/functions/"
_ROUTE = re.compile(r"/2015-03-31/functions/([^/]+)/(invocations|configuration)")
# Lambda's limit for a synchronous invocation's request payload.
MAX_PAYLOAD_BYTES = 6 * 2**20

Invoke = Callable[[str, Any], Any]  # (logical id, event) -> result, FunctionError on failure


class LambdaApi:
    def __init__(self, functions: Callable[[], Mapping[str, Function]], invoke: Invoke) -> None:
        # A callable: a stack update replaces the functions' definitions.
        self._functions = functions
        self._invoke = invoke

    def handle(self, request: Request) -> Response:
        refused = _refusal(request)
        if refused is not None:
            return refused
        match = _ROUTE.fullmatch(request.path)
        if match is None:
            return _error(404, "UnknownOperationException", f"no Lambda operation at {request.path}")
        function = self._find(unquote(match.group(1)))
        if function is None:
            return _error(404, "ResourceNotFoundException", f"Function not found: {unquote(match.group(1))}")
        if match.group(2) == "configuration":
            if request.method != "GET":
                return _error(405, "UnknownOperationException", "GET a function's configuration")
            return Response.json(200, configuration(function))
        if request.method != "POST":
            return _error(405, "UnknownOperationException", "POST an invocation")
        return self._invocation(function, request)

    def _find(self, name: str) -> Function | None:
        # A name, an ARN (a qualifier, :$LATEST, is accepted and ignored) or a logical id.
        bare = name.split(":function:", 1)[-1].split(":", 1)[0]
        functions = self._functions()
        return functions.get(bare) or next((f for f in functions.values() if f.name == bare), None)

    def _invocation(self, function: Function, request: Request) -> Response:
        kind = request.header("X-Amz-Invocation-Type") or "RequestResponse"
        if kind == "DryRun":
            return Response(204)
        if kind != "RequestResponse":
            return _error(400, "InvalidParameterValueException", f"{kind} invocations are not served locally")
        if len(request.body) > MAX_PAYLOAD_BYTES:
            return _error(413, "RequestTooLargeException", "Request must be smaller than 6291456 bytes")
        try:
            event = json.loads(request.body or b"{}")
        except ValueError:
            return _error(400, "InvalidRequestContentException", "Could not parse request body into json")
        headers = [("X-Amz-Executed-Version", "$LATEST")]
        try:
            result = self._invoke(function.logical_id, event)
        except FunctionError as error:
            return Response.json(200, error.payload, [*headers, ("X-Amz-Function-Error", "Unhandled")])
        except RuntimeError as error:  # the stack is stopping
            return _error(503, "ServiceException", str(error))
        return Response.json(200, result, headers)


def configuration(function: Function) -> dict[str, Any]:
    """GetFunctionConfiguration's answer, as far as the local stack knows it."""
    return {
        "FunctionName": function.name,
        "FunctionArn": function.arn,
        "Runtime": "python3.13",
        "Handler": function.handler,
        "Timeout": function.timeout,
        "MemorySize": function.memory_size,
        "Environment": {"Variables": dict(function.environment)},
        "Version": "$LATEST",
        "State": "Active",
        "LastUpdateStatus": "Successful",
        "PackageType": "Zip",
    }


def _refusal(request: Request) -> Response | None:
    if not ipaddress.ip_address(request.client_ip).is_loopback:
        return _error(403, "AccessDeniedException", "the local Lambda API serves this machine only")
    if request.header("Origin") is not None or not (request.header("Authorization") or "").startswith(
        "AWS4-HMAC-SHA256 "
    ):
        return _error(403, "AccessDeniedException", "sign the request (SigV4, any credentials); no Origin")
    return None


def _error(status: int, code: str, message: str) -> Response:
    # The shape botocore's rest-json parser reads: the code in a header, the message in the body.
    return Response.json(status, {"Type": "User", "message": message}, [("x-amzn-ErrorType", code)])

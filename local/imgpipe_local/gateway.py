"""The template's HTTP API, run the way API Gateway runs it (payload format 2.0).

CORS preflight is answered from the API's CorsConfiguration before any route or authorizer;
every other response, the gateway's own denials included, carries the CORS headers. The
Lambda REQUEST authorizer gets a real 2.0 authorizer event and its decision is cached per
identity-source value for the template's ReauthorizeEvery seconds.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote

from imgpipe_local.cors import is_preflight
from imgpipe_local.httpserver import Request, Response
from imgpipe_local.template import Authorizer, HttpApi, Route
from imgpipe_local.workers import FunctionError

log = logging.getLogger("imgpipe_local")

Invoke = Callable[[str, dict[str, Any]], Any]

UNAUTHORIZED = {"message": "Unauthorized"}
FORBIDDEN = {"message": "Forbidden"}
INTERNAL_ERROR = {"message": "Internal Server Error"}
NOT_FOUND = {"message": "Not Found"}

_TEXT_TYPES = re.compile(
    r"^(text/|application/(json|xml|javascript|x-www-form-urlencoded|[\w.+-]+\+(json|xml)))", re.IGNORECASE
)


# ---------------------------------------------------------------- routing


def _path_pattern(path: str) -> re.Pattern[str]:
    pattern = ""
    for segment in path.strip("/").split("/"):
        greedy = re.fullmatch(r"\{(\w+)\+\}", segment)
        param = re.fullmatch(r"\{(\w+)\}", segment)
        if greedy:
            pattern += f"/(?P<{greedy.group(1)}>.+)"
        elif param:
            pattern += f"/(?P<{param.group(1)}>[^/]+)"
        else:
            pattern += "/" + re.escape(segment)
    return re.compile(pattern if pattern != "/" else "/")


def match_route(routes: tuple[Route, ...], method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    """The most specific route for `method path`, as API Gateway picks it, with path parameters."""
    candidates: list[tuple[tuple[int, int, int, int], Route, dict[str, str]]] = []
    for route in routes:
        if route.path == "$default":
            candidates.append(((3, 0, 0, 0), route, {}))
            continue
        if route.method not in (method, "ANY"):
            continue
        match = _path_pattern(route.path).fullmatch(path)
        if match is None:
            continue
        segments = route.path.strip("/").split("/")
        greedy = any(s.endswith("+}") for s in segments)
        count = sum(1 for s in segments if s.startswith("{"))
        rank = (2 if greedy else (1 if count else 0), count, -len(segments), int(route.method == "ANY"))
        candidates.append((rank, route, {k: unquote(v) for k, v in match.groupdict().items()}))
    if not candidates:
        return None
    _rank, best, params = min(candidates, key=lambda c: c[0])
    return best, params


# ---------------------------------------------------------------- events


def _headers(request: Request) -> dict[str, str]:
    headers: dict[str, str] = {}
    for key, value in request.headers:
        name = key.lower()
        if name == "cookie":
            continue
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    return headers


def _body(request: Request) -> tuple[str | None, bool]:
    if not request.body:
        return None, False
    content_type = request.header("Content-Type") or ""
    if _TEXT_TYPES.match(content_type):
        try:
            return request.body.decode(), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(request.body).decode(), True


@dataclass
class _Context:
    request: Request
    api: HttpApi
    route_key: str
    path_parameters: dict[str, str]
    request_id: str
    received: datetime


def _request_fields(ctx: _Context, account_id: str) -> dict[str, Any]:
    request = ctx.request
    host = request.header("Host") or ""
    headers = {
        **_headers(request),
        "x-forwarded-for": request.client_ip,
        "x-forwarded-proto": "http",
        "x-forwarded-port": host.rsplit(":", 1)[-1] if ":" in host else "80",
        "x-amzn-trace-id": f"Root=1-{int(ctx.received.timestamp()):08x}-{uuid.uuid4().hex[:24]}",
    }
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": ctx.route_key,
        "rawPath": request.path,
        "rawQueryString": request.query,
        "headers": headers,
        "requestContext": {
            "accountId": account_id,
            "apiId": ctx.api.api_id,
            "domainName": host,
            "domainPrefix": host.split(".", 1)[0],
            "http": {
                "method": request.method,
                "path": request.path,
                "protocol": request.protocol,
                "sourceIp": request.client_ip,
                "userAgent": request.header("User-Agent") or "",
            },
            "requestId": ctx.request_id,
            "routeKey": ctx.route_key,
            "stage": ctx.api.stage,
            "time": ctx.received.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(ctx.received.timestamp() * 1000),
        },
    }
    cookie = request.header("Cookie")
    if cookie:
        event["cookies"] = [part.strip() for part in cookie.replace(",", ";").split(";") if part.strip()]
    if request.query:
        query: dict[str, str] = {}
        for key, value in parse_qsl(request.query, keep_blank_values=True):
            query[key] = f"{query[key]},{value}" if key in query else value
        event["queryStringParameters"] = query
    if ctx.path_parameters:
        event["pathParameters"] = ctx.path_parameters
    return event


def integration_event(
    ctx: _Context, account_id: str, authorizer_context: dict[str, Any] | None
) -> dict[str, Any]:
    event = _request_fields(ctx, account_id)
    if authorizer_context is not None:
        event["requestContext"]["authorizer"] = {"lambda": authorizer_context}
    body, encoded = _body(ctx.request)
    if body is not None:
        event["body"] = body
    event["isBase64Encoded"] = encoded
    return event


def route_arn(region: str, account_id: str, api: HttpApi, method: str, path: str) -> str:
    return f"arn:aws:execute-api:{region}:{account_id}:{api.api_id}/{api.stage}/{method}{path}"


def authorizer_event(
    ctx: _Context, account_id: str, region: str, identity: list[str], method: str, path: str
) -> dict[str, Any]:
    fields = _request_fields(ctx, account_id)
    return {
        "version": "2.0",
        "type": "REQUEST",
        "routeArn": route_arn(region, account_id, ctx.api, method, path),
        "identitySource": identity,
        **{key: value for key, value in fields.items() if key != "version"},
    }


# ---------------------------------------------------------------- responses


class IntegrationError(Exception):
    """The function's answer cannot be turned into an HTTP response."""


def lambda_response(result: Any) -> Response:
    """Turn a handler's return value into HTTP per the payload 2.0 rules."""
    if not (isinstance(result, dict) and "statusCode" in result):
        # API Gateway infers the format: any valid JSON without statusCode is a 200 JSON body.
        text = result if isinstance(result, str) else json.dumps(result)
        return Response(200, [("Content-Type", "application/json")], text.encode())
    try:
        status = int(result["statusCode"])
    except (TypeError, ValueError) as exc:
        raise IntegrationError(f"statusCode {result['statusCode']!r} is not an integer") from exc
    headers: list[tuple[str, str]] = []
    for key, value in (result.get("headers") or {}).items():
        headers.append((str(key), str(value)))
    for key, values in (result.get("multiValueHeaders") or {}).items():
        headers.extend((str(key), str(value)) for value in values)
    headers.extend(("Set-Cookie", str(cookie)) for cookie in result.get("cookies") or [])
    body: Any = result.get("body")
    if body is None:
        data = b""
    elif result.get("isBase64Encoded"):
        try:
            data = base64.b64decode(str(body), validate=True)
        except binascii.Error as exc:
            raise IntegrationError("isBase64Encoded body is not base64") from exc
    else:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
    return Response(status, headers, data)


# ---------------------------------------------------------------- the gateway


@dataclass
class _Decision:
    response: dict[str, Any]
    expires: float


class Gateway:
    """An App for LocalServer: one HTTP API of the template."""

    def __init__(
        self,
        api: HttpApi,
        invoke: Invoke,
        *,
        account_id: str = "123456789012",
        region: str = "us-east-1",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.invoke = invoke
        self.account_id = account_id
        self.region = region
        self.clock = clock
        self._cache: dict[tuple[str, tuple[str, ...]], _Decision] = {}
        self._cache_lock = threading.Lock()

    def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        response = self._handle(request)
        log.info(
            "API %s %s -> %d (%.0f ms)",
            request.method,
            request.path,
            response.status,
            (time.perf_counter() - started) * 1000,
        )
        return response

    def _handle(self, request: Request) -> Response:
        cors = self.api.cors
        if cors is not None and is_preflight(request):
            granted = cors.preflight_headers(request)
            return Response(204, granted if granted is not None else [("Vary", "Origin")])
        response = self._route(request)
        if cors is not None:
            cors_headers = cors.headers(request.header("Origin"))
            # With a CorsConfiguration, API Gateway's CORS headers replace the integration's.
            response.headers = [
                (k, v) for k, v in response.headers if not k.lower().startswith("access-control-")
            ]
            vary = response.header("Vary")
            for name, value in cors_headers:
                if name == "Vary" and vary:
                    if "origin" not in vary.lower():
                        response.headers = [(k, v) for k, v in response.headers if k.lower() != "vary"]
                        response.headers.append(("Vary", f"{vary}, Origin"))
                    continue
                response.headers.append((name, value))
        return response

    def _route(self, request: Request) -> Response:
        path = request.path
        if self.api.stage != "$default":
            prefix = f"/{self.api.stage}"
            if not (path == prefix or path.startswith(prefix + "/")):
                return Response.json(404, NOT_FOUND)
            path = path[len(prefix) :] or "/"
        matched = match_route(self.api.routes, request.method, unquote(path))
        if matched is None:
            return Response.json(404, NOT_FOUND)
        route, params = matched
        ctx = _Context(
            request=request,
            api=self.api,
            route_key=route.route_key,
            path_parameters=params,
            request_id=base64.b32encode(uuid.uuid4().bytes[:10]).decode().rstrip("=")[:16],
            received=datetime.now(UTC),
        )
        authorizer_context: dict[str, Any] | None = None
        if route.authorizer is not None:
            denial, authorizer_context = self._authorize(self.api.authorizers[route.authorizer], ctx, path)
            if denial is not None:
                return denial
        if route.payload_version != "2.0":
            log.error(
                "%s: payload format %s is not supported locally", route.route_key, route.payload_version
            )
            return Response.json(500, INTERNAL_ERROR)
        event = integration_event(ctx, self.account_id, authorizer_context)
        try:
            return lambda_response(self.invoke(route.function, event))
        except FunctionError as error:
            log.error("%s: %s failed: %s", route.route_key, route.function, error.report())  # noqa: TRY400 - the function's trace, not ours
        except Exception:  # IntegrationError, or the stack's own trouble: a 500 with CORS all the same
            log.exception("%s: %s failed", route.route_key, route.function)
        return Response.json(500, INTERNAL_ERROR)

    # -- authorizer
    def _identity(self, authorizer: Authorizer, ctx: _Context) -> list[str] | None:
        values = []
        query = dict(parse_qsl(ctx.request.query, keep_blank_values=True))
        for source in authorizer.identity_sources:
            if source.lower().startswith("$request.header."):
                value = ctx.request.header(source[len("$request.header.") :])
            elif source.lower().startswith("$request.querystring."):
                value = query.get(source[len("$request.querystring.") :])
            else:
                log.warning("identity source %s is not supported locally; treated as missing", source)
                value = None
            if not value:
                return None
            values.append(value)
        return values

    def _authorize(
        self, authorizer: Authorizer, ctx: _Context, path: str
    ) -> tuple[Response | None, dict[str, Any] | None]:
        identity = self._identity(authorizer, ctx)
        if identity is None:
            # API Gateway answers 401 itself and never calls the authorizer.
            return Response.json(401, UNAUTHORIZED), None
        key = (authorizer.name, tuple(identity))
        now = self.clock()
        with self._cache_lock:
            cached = self._cache.get(key)
        if cached is not None and cached.expires > now:
            answer = cached.response
        else:
            event = authorizer_event(ctx, self.account_id, self.region, identity, ctx.request.method, path)
            try:
                answer = self.invoke(authorizer.function, event)
            except FunctionError as error:
                log.error("authorizer %s failed: %s", authorizer.function, error.report())  # noqa: TRY400 - the function's trace, not ours
                return Response.json(500, INTERNAL_ERROR), None
            except Exception:
                log.exception("authorizer %s failed", authorizer.function)
                return Response.json(500, INTERNAL_ERROR), None
            if authorizer.ttl_seconds > 0:
                with self._cache_lock:
                    self._cache[key] = _Decision(answer, now + authorizer.ttl_seconds)
        try:
            allowed, context = self._decision(
                authorizer,
                answer,
                route_arn(self.region, self.account_id, self.api, ctx.request.method, path),
            )
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            log.error("authorizer %s returned an invalid response (%s): %r", authorizer.function, exc, answer)  # noqa: TRY400 - the answer, not a traceback, is the news
            return Response.json(500, INTERNAL_ERROR), None
        if not allowed:
            return Response.json(403, FORBIDDEN), None
        return None, context

    @staticmethod
    def _decision(authorizer: Authorizer, answer: Any, route_arn: str) -> tuple[bool, dict[str, Any]]:
        if authorizer.simple_responses:
            allowed = answer["isAuthorized"]
            if not isinstance(allowed, bool):
                raise TypeError("isAuthorized must be a boolean")
            return allowed, dict(answer.get("context") or {})
        return policy_allows(answer["policyDocument"], route_arn), dict(answer.get("context") or {})


def policy_allows(policy: dict[str, Any], resource: str) -> bool:
    """IAM-style evaluation of an authorizer's policy for execute-api:Invoke on `resource`."""
    statements = policy["Statement"]
    statements = statements if isinstance(statements, list) else [statements]

    def matches(statement: dict[str, Any]) -> bool:
        actions = statement.get("Action", [])
        resources = statement.get("Resource", [])
        actions = [actions] if isinstance(actions, str) else actions
        resources = [resources] if isinstance(resources, str) else resources
        return any(fnmatch.fnmatchcase("execute-api:Invoke", a) for a in actions) and any(
            fnmatch.fnmatchcase(resource, r) for r in resources
        )

    relevant = [s for s in statements if matches(s)]
    if any(s.get("Effect") == "Deny" for s in relevant):
        return False
    return any(s.get("Effect") == "Allow" for s in relevant)

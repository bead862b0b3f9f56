"""CORS, one reading for the HTTP API's CorsConfiguration, the CDN's ResponseHeadersPolicy and
the local Cognito: which origins, methods and headers a cross-origin request may use."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from imgpipe_local.httpserver import Request


def as_tuple(value: Any) -> tuple[str, ...]:
    """A template list, or a comma-separated string, as a tuple of strings."""
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return tuple(str(item) for item in value)


def is_preflight(request: Request) -> bool:
    return (
        request.method == "OPTIONS"
        and request.header("Origin") is not None
        and request.header("Access-Control-Request-Method") is not None
    )


@dataclass(frozen=True)
class CorsRules:
    allow_origins: tuple[str, ...] = ()
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: int | None = None
    allow_credentials: bool = False

    @classmethod
    def of(
        cls, origins: Iterable[str], methods: Iterable[str], headers: Iterable[str], **more: Any
    ) -> CorsRules:
        return cls(as_tuple(origins), tuple(m.upper() for m in as_tuple(methods)), as_tuple(headers), **more)

    def allows(self, origin: str) -> bool:
        # "*" and wildcard subdomains such as "https://*.example.com", as API Gateway allows them.
        return any(
            allowed == "*" or allowed == origin or ("*" in allowed and fnmatch.fnmatchcase(origin, allowed))
            for allowed in self.allow_origins
        )

    def headers(self, origin: str | None) -> list[tuple[str, str]]:
        """The CORS headers of an answer to a request from `origin` (none for another origin)."""
        if not origin or not self.allows(origin):
            return []
        wildcard = "*" in self.allow_origins and not self.allow_credentials
        headers = [("Access-Control-Allow-Origin", "*" if wildcard else origin), ("Vary", "Origin")]
        if self.allow_credentials:
            headers.append(("Access-Control-Allow-Credentials", "true"))
        if self.expose_headers:
            headers.append(("Access-Control-Expose-Headers", ",".join(self.expose_headers)))
        return headers

    def preflight_headers(self, request: Request) -> list[tuple[str, str]] | None:
        """The headers granting a preflight, or None when its origin or method is not allowed."""
        origin = request.header("Origin") or ""
        method = (request.header("Access-Control-Request-Method") or "").upper()
        if not self.allows(origin) or not ("*" in self.allow_methods or method in self.allow_methods):
            return None
        requested = request.header("Access-Control-Request-Headers")
        allow_headers = requested if "*" in self.allow_headers and requested else ",".join(self.allow_headers)
        headers = [*self.headers(origin), ("Access-Control-Allow-Methods", ",".join(self.allow_methods))]
        if allow_headers:
            headers.append(("Access-Control-Allow-Headers", allow_headers))
        if self.max_age is not None:
            headers.append(("Access-Control-Max-Age", str(self.max_age)))
        return headers

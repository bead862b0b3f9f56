"""A small threaded HTTP server shared by the local API, CDN and web page.

Each server is bound first (so the stack knows its port before wiring anything, which matters
for `port=0`) and given its application afterwards.
"""

from __future__ import annotations

import errno
import json
import logging
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import urlsplit

log = logging.getLogger("imgpipe_local")


@dataclass
class Request:
    method: str
    path: str  # raw path, still percent-encoded
    query: str  # raw query string, without "?"
    headers: list[tuple[str, str]]  # as received, in order
    body: bytes
    client_ip: str
    protocol: str

    def header(self, name: str) -> str | None:
        """The value of header `name` (case-insensitive); repeated headers joined with ','."""
        values = [value for key, value in self.headers if key.lower() == name.lower()]
        return ",".join(values) if values else None


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @classmethod
    def json(cls, status: int, payload: Any, headers: list[tuple[str, str]] | None = None) -> Response:
        return cls(
            status,
            [("Content-Type", "application/json"), *(headers or [])],
            json.dumps(payload, separators=(",", ":")).encode(),
        )

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


INVALID_HOST = b"Invalid Host header: the local stack answers 127.0.0.1, localhost and [::1] only."


def loopback_host(host: str | None, port: int) -> bool:
    """Whether a request's Host names this machine's loopback at `port`.

    A DNS rebinding page reaches 127.0.0.1 under its own domain name, which it cannot make one
    of these (`*.localhost` always resolves to loopback); so refusing other names keeps such a
    page from reading or driving the local stack.
    """
    if not host or any(char in host for char in "@/?#\\"):
        return False
    try:
        parts = urlsplit(f"//{host}")
        name, given = parts.hostname or "", parts.port or 80
    except ValueError:
        return False
    return (name in ("127.0.0.1", "localhost", "::1") or name.endswith(".localhost")) and given == port


class PortInUse(OSError):
    """A port the stack was told to use is taken; `name` says which server wanted it."""

    def __init__(self, name: str, host: str, port: int) -> None:
        super().__init__(errno.EADDRINUSE, f"{host}:{port} is already in use")
        self.name, self.host, self.port = name, host, port


def bind_socket(name: str, host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or PortInUse naming the server that wanted it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # As http.server does: a port whose last connections linger in TIME_WAIT is free to reuse.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise PortInUse(name, host, port) from None
        raise
    return sock


class App(Protocol):
    def handle(self, request: Request) -> Response: ...


class _Handler(BaseHTTPRequestHandler):
    server: LocalServer
    # HTTP/1.0: every response closes its connection, so stopping the server leaves no
    # keep-alive threads holding sockets.
    protocol_version = "HTTP/1.0"

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        request = Request(
            method=self.command,
            path=parts.path,
            query=parts.query,
            headers=list(self.headers.items()),
            body=self.rfile.read(length) if length else b"",
            client_ip=self.client_address[0],
            protocol=self.request_version,
        )
        app = self.server.app
        if not loopback_host(request.header("Host"), self.server.port):
            response = Response(403, [("Content-Type", "text/plain")], INVALID_HOST)
        elif app is None:
            response = Response.json(503, {"message": "starting"})
        else:
            try:
                response = app.handle(request)
            except Exception:
                log.exception("%s %s failed in the local server", request.method, request.path)
                response = Response.json(500, {"message": "Internal Server Error"})
        try:
            self.send_response(response.status)
            for key, value in response.headers:
                self.send_header(key, value)
            if response.header("Content-Length") is None:
                self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if self.command != "HEAD" and response.status not in (204, 304):
                self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            # The client left before its answer (a Ctrl-C'd `imgpipe backfill` mid-invocation).
            log.debug("%s %s: the client closed the connection first", request.method, request.path)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.server.name, format % args)


class LocalServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, name: str, host: str, port: int) -> None:
        self.name = name
        self.app: App | None = None
        self._thread: threading.Thread | None = None
        super().__init__((host, port), _Handler, bind_and_activate=False)
        # Bound by bind_socket, so a busy port says which server wanted it.
        self.socket.close()
        self.socket = bind_socket(name, host, port)
        self.server_address = self.socket.getsockname()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self, app: App) -> None:
        self.app = app
        self._thread = threading.Thread(
            # A short poll interval makes shutdown() return quickly.
            target=self.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"imgpipe-{self.name}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
            self._thread = None
        self.server_close()

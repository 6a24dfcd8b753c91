"""The agent's small HTTP API, on the standard library (no web framework in the core install).

Routes are registered by the parts that own them (summaries, /metrics, the OTLP receiver, ...):
``server.route("GET", "/health", handler)`` where ``handler(request) -> Response``. Binds
127.0.0.1 unless told otherwise. A handler's exception becomes a 500 with a JSON reason.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["ApiServer", "Request", "Response", "json_response", "to_jsonable"]

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024 * 1024


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def to_jsonable(v: Any) -> Any:
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, dict):
        return {k: to_jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [to_jsonable(x) for x in v]
    return v


def json_response(obj: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(to_jsonable(obj), default=str).encode() + b"\n")


def error_response(status: int, reason: str) -> Response:
    return json_response({"error": reason}, status)


Handler = Callable[[Request], Response]


class ApiServer:
    def __init__(self, host: str, port: int) -> None:
        self.routes: dict[tuple[str, str], Handler] = {}
        self._server = _Server((host, port), _make_handler(self))
        self.host, self.port = self._server.server_address[:2]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def route(self, method: str, path: str, handler: Handler) -> None:
        self.routes[(method.upper(), path)] = handler

    def start(self) -> "ApiServer":
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="infermeter-api", daemon=True)
        self._thread.start()
        return self

    def shutdown(self, timeout_s: float = 5.0) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout_s)
            self._thread = None
        self._server.server_close()

    def dispatch(self, req: Request) -> Response:
        handler = self.routes.get((req.method, req.path))
        if handler is None:
            if any(p == req.path for _, p in self.routes):
                return error_response(405, f"method {req.method} not allowed on {req.path}")
            return error_response(404, f"no route {req.path}; see /api/v1")
        try:
            return handler(req)
        except ValueError as e:  # bad query parameters and the like
            return error_response(400, str(e))
        except Exception as e:  # noqa: BLE001 - a request edge
            logger.exception("API handler %s %s failed", req.method, req.path)
            return error_response(500, f"{type(e).__name__}: {e}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def _make_handler(api: ApiServer) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "infermeter"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - no access log
            pass

        def _handle(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            headers = {k.lower(): v for k, v in self.headers.items()}
            length = int(headers.get("content-length") or 0)
            if length > MAX_BODY_BYTES:
                resp = error_response(413, f"body of {length} bytes exceeds {MAX_BODY_BYTES}")
                self.close_connection = True
            else:
                body = self.rfile.read(length) if length else b""
                resp = api.dispatch(Request(self.command, parts.path.rstrip("/") or "/", query, headers, body))
            self.send_response(resp.status)
            self.send_header("Content-Type", resp.content_type)
            self.send_header("Content-Length", str(len(resp.body)))
            for k, v in resp.headers.items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(resp.body)

        do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _handle

    return _Handler

"""``infermeter.instrument_app(app)``: the sidecar's measurements inside a FastAPI model server.

For servers that are FastAPI apps (llama-cpp-python's server, vLLM's OpenAI server, your own):
OpenTelemetry's FastAPI instrumentation makes the HTTP server span, and :class:`InferenceMiddleware`
(plain ASGI, wrapping ``receive`` and ``send``) reads each request and reply exactly as the proxy
does: the same wire protocols, the same record, built on the pipeline thread. Each record carries
the trace and span ids of that request's server span. Call it before the app starts serving.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from opentelemetry import trace

from ..config import Settings
from . import runtime
from .proxy.exchange import Exchange, RecordBuilder, Tap, key_hash, response_kind
from .proxy.routes import Router

__all__ = ["instrument_app", "InferenceMiddleware"]

logger = logging.getLogger(__name__)

_perf = time.perf_counter_ns
_now = time.time_ns

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


def instrument_app(app: Any, *, settings: Settings | None = None, pipeline: Any = None) -> Any:
    """Instrument a FastAPI (or Starlette) app in place and return it.

    Records go to ``pipeline`` when given, else to this process's agent (started on first use,
    as for ``@track``; ``INFERMETER_*`` settings apply). Needs the ``[fastapi]`` extra.
    """
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    app.add_middleware(InferenceMiddleware, settings=settings or Settings.load(), pipeline=pipeline)
    FastAPIInstrumentor.instrument_app(app)  # its server span wraps ours: current while we run
    return app


class InferenceMiddleware:
    """Plain ASGI middleware: one :class:`~.proxy.exchange.Exchange` per HTTP request, as in the proxy."""

    def __init__(self, app: ASGIApp, settings: Settings, pipeline: Any = None) -> None:
        self.app = app
        self.router = Router(settings.proxy_routes or ())
        self.builder = RecordBuilder(hash_prompts=settings.hash_prompts)
        self.max_parse = settings.max_parse_bytes
        self.tenant_header = settings.tenant_header.lower().encode()
        self.pipeline = pipeline

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        ex = Exchange(self.router(path), path, scope["method"], _now(), _perf())
        ex.request_bytes = 0
        self._read_headers(ex, scope.get("headers") or ())
        sc = trace.get_current_span().get_span_context()
        if sc.is_valid:
            ex.trace_id, ex.span_id = sc.trace_id, sc.span_id
        proto = ex.protocol
        keep: list[bytes] | None = [] if proto.reads_bodies else None
        ex.tap = Tap() if proto.reads_bodies else None
        state = {"done": False}

        async def receive_wrapper() -> Message:
            nonlocal keep
            msg = await receive()
            if msg["type"] == "http.request":
                body = msg.get("body", b"")
                ex.request_bytes += len(body)
                if keep is not None:
                    keep.append(body)
                    if ex.request_bytes > self.max_parse:
                        keep = None  # too big to parse: measured, not kept
            return msg

        async def send_wrapper(msg: Message) -> None:
            kind = msg["type"]
            if kind == "http.response.start":
                ex.status_code = msg["status"]
                headers = {k.lower(): v for k, v in msg.get("headers") or ()}
                ex.kind = response_kind(headers.get(b"content-type", b"").decode("latin-1"))
                if b"content-encoding" in headers:
                    ex.encoding = headers[b"content-encoding"].decode("latin-1")
                capture = getattr(proto, "capture_headers", None)
                if capture:
                    ex.headers = {h: headers[h.encode()].decode("latin-1") for h in capture if h.encode() in headers}
            elif kind == "http.response.body":
                chunk = msg.get("body", b"")
                if chunk:
                    ex.observe(chunk, ex.kind in ("sse", "ndjson"))
                    ex.response_bytes += len(chunk)
                if not msg.get("more_body", False):
                    state["done"] = True
            await send(msg)

        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        except BaseException as e:
            if isinstance(e, asyncio.CancelledError) or (ex.status_code is not None and _client_gone(e)):
                ex.cancelled = True
            else:
                ex.error_type = type(e).__qualname__
                ex.status_code = ex.status_code or 500
            raise
        finally:
            if ex.status_code is not None and not state["done"] and ex.error_type is None:
                ex.cancelled = True  # the app stopped mid-reply: the client went away
            ex.t_end = _perf()
            if keep is not None:
                ex.request_body = b"".join(keep)
            p = self.pipeline if self.pipeline is not None else runtime.pipeline()
            if p is not None:
                p.submit(self.builder, ex)

    def _read_headers(self, ex: Exchange, headers: Any) -> None:  # ASGI: lower-case byte names
        cred = None
        for name, value in headers:
            if name == self.tenant_header:
                ex.tenant = value.decode("latin-1")
            elif name in (b"authorization", b"x-api-key", b"api-key"):
                cred = value.decode("latin-1")
            elif name == b"traceparent":
                ex.traceparent = value.decode("latin-1")
        if cred and not ex.tenant:
            ex.key = key_hash(cred)


def _client_gone(e: BaseException) -> bool:
    # uvicorn's ClientDisconnected is an OSError; Starlette raises ClientDisconnect reading a body
    return isinstance(e, OSError) or type(e).__name__ == "ClientDisconnect"

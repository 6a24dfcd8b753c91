"""The sidecar's reverse proxy: aiohttp's low-level server and one pooled aiohttp client.

Per request the event loop does only what forwarding needs plus a few cheap looks: it picks the
wire protocol by path, forwards method, raw path and query, headers (hop-by-hop removed) and body,
then streams the reply back chunk by chunk as it arrives, counting content events and keeping a
bounded copy of the body for the pipeline thread to parse. Nothing is logged per request.

Faults: an unreachable upstream is a 502, a silent one a 504 after ``upstream_timeout_s``, both
with a JSON body; a client that leaves cancels the upstream request. Silence is watched by one
sweep over the requests in flight (every ``upstream_timeout_s / 4``, at most 1 s), not by a timer
per read: a request times out once the upstream sent nothing for ``upstream_timeout_s`` (found up to
two sweeps late), never while the client is the one not reading. Telemetry (the pipeline) is fed with
one ``deque.append`` and can neither fail nor slow a reply.

Trace context: each request gets its span id here (and a trace id, unless the client's
``traceparent`` names one); the upstream receives a ``traceparent`` naming that span as its parent,
so the model server's own spans join the trace. The client's ``tracestate`` passes on with a valid
``traceparent`` and is dropped when the proxy starts a new trace.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from aiohttp.web_request import BaseRequest
from yarl import URL

from ...config import Settings, parse_hostport
from ...errors import ConfigError
from .exchange import Exchange, RecordBuilder, Tap, response_kind
from .routes import Router
from .sse import UsageStripper

__all__ = ["ProxyServer", "forwardable", "provider_for_host", "valid_traceparent"]

logger = logging.getLogger(__name__)

_perf = time.perf_counter_ns
_now = time.time_ns
_random = random.getrandbits  # the random module reseeds itself in forked children
_current_task = asyncio.current_task

# hop-by-hop (RFC 9110 7.6.1), plus Host, which the client side sets for the next hop
HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
                 "host", "proxy-authenticate", "proxy-authorization"})
_REWRITTEN = frozenset({"content-length", "accept-encoding"})  # when the proxy changes the request body
# request headers, by (the proxy rewrote the body, the client sent a valid traceparent): the proxy
# sends its own traceparent; a tracestate without a valid traceparent is dropped with it (W3C 3.3.1)
_DROP = {
    (False, True): HOP | {"traceparent"},
    (False, False): HOP | {"traceparent", "tracestate"},
    (True, True): HOP | _REWRITTEN | {"traceparent"},
    (True, False): HOP | _REWRITTEN | {"traceparent", "tracestate"},
}
# W3C trace context, version 00 (and later versions' first four fields, W3C 3.3.2.3)
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(?:-.*)?", re.ASCII)
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
_HOSTED = {"api.openai.com": "openai", "api.anthropic.com": "anthropic", "openrouter.ai": "openrouter",
           "api.groq.com": "groq", "api.together.xyz": "together", "api.mistral.ai": "mistral_ai",
           "api.fireworks.ai": "fireworks", "api.deepseek.com": "deepseek", "generativelanguage.googleapis.com": "gcp.gemini"}


def forwardable(headers: Any, drop: frozenset[str] = HOP) -> list[tuple[str, str]]:
    """Headers minus hop-by-hop ones (and those the ``Connection`` header names), minus ``drop``."""
    conn = headers.get("Connection")
    if conn:
        drop = drop | {t.strip().lower() for t in conn.split(",")}
    return [(k, v) for k, v in headers.items() if k.lower() not in drop]


def valid_traceparent(tp: str | None) -> bool:
    """Whether a ``traceparent`` header is one the proxy can continue (W3C trace context)."""
    if not tp or len(tp) < 55 or not _TRACEPARENT.fullmatch(tp):
        return False
    version = tp[:2]
    if version == "ff" or (version == "00" and len(tp) != 55):
        return False
    return tp[3:35] != _ZERO_TRACE and tp[36:52] != _ZERO_SPAN


def provider_for_host(host: str | None) -> str | None:
    """``gen_ai.provider.name`` for hosted APIs known by their host; None for self-hosted servers."""
    return _HOSTED.get((host or "").lower())


def _error(status: int, kind: str, message: str) -> web.Response:
    body = json.dumps({"error": {"message": message, "type": kind, "code": status}}).encode()
    return web.Response(status=status, body=body, content_type="application/json")


class ProxyServer:
    """The proxy on the running asyncio loop: ``await start()``, ``await stop()``; ``url`` once started.

    Feeds ``pipeline`` (anything with ``submit(build, payload)``) one payload per request.
    """

    def __init__(self, settings: Settings, pipeline: Any) -> None:
        if not settings.upstream:
            raise ConfigError("upstream", settings.upstream, "the proxy needs one: --upstream URL or INFERMETER_UPSTREAM")
        parts = urlsplit(settings.upstream)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("upstream", settings.upstream, "expected an http(s) URL such as http://127.0.0.1:8000")
        self.upstream = settings.upstream.rstrip("/")
        self.host, self.port = parse_hostport(settings.listen, "0.0.0.0")
        self.settings = settings
        self.pipeline = pipeline
        self.router = Router(settings.proxy_routes or ())
        self.builder = RecordBuilder(hash_prompts=settings.hash_prompts, server_address=parts.netloc,
                                     provider=provider_for_host(parts.hostname))
        self._max_parse = settings.max_parse_bytes
        self._tenant_header = settings.tenant_header
        self._inject = settings.inject_stream_usage
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.ServerRunner | None = None
        self._timeout = settings.upstream_timeout_s
        self._inflight: dict[Exchange, tuple[Any, Any]] = {}  # the requests waiting on the upstream: (task, client transport)
        self._sweeper: asyncio.TimerHandle | None = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        t = self._timeout
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),  # one keep-alive pool, unbounded: the upstream sets the pace
            # no sock_read: aiohttp would re-arm a timer on every read; _sweep() watches for silence instead
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=t),
            auto_decompress=False, skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
        )
        limit = self._max_parse + 1
        loop = asyncio.get_running_loop()

        def make_request(message: Any, payload: Any, protocol: Any, writer: Any, task: Any) -> BaseRequest:
            return BaseRequest(message, payload, protocol, writer, task, loop, client_max_size=limit)

        server = web.Server(self._handle, request_factory=make_request, access_log=None,
                            handler_cancellation=True, auto_decompress=False)
        self._runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=5.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=4096)
        try:
            await site.start()
        except OSError as e:
            await self.stop()
            raise ConfigError("listen", self.settings.listen, f"cannot listen there: {e.strerror or e}") from e
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._sweep_every = min(1.0, t / 4)
        self._sweeper = loop.call_later(self._sweep_every, self._sweep)

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- the hot path -------------------------------------------------------------------------------
    async def _handle(self, request: BaseRequest) -> web.StreamResponse:
        t0 = _perf()
        path = request.path
        ex = Exchange(self.router(path), path, request.method, _now(), t0)
        try:
            return await self._forward(request, ex)
        except asyncio.CancelledError:  # the client left (handler cancellation)
            ex.cancelled = True
            raise
        finally:
            self._inflight.pop(ex, None)
            ex.t_end = _perf()
            self.pipeline.submit(self.builder, ex)

    async def _forward(self, request: BaseRequest, ex: Exchange) -> web.StreamResponse:
        proto = ex.protocol
        headers = request.headers
        tenant = headers.get(self._tenant_header)
        if tenant:
            ex.tenant = tenant
        else:  # hashed on the pipeline thread, and only when no better tenant turns up
            ex.cred = headers.get("Authorization") or headers.get("X-Api-Key") or headers.get("Api-Key")
        span = ex.span_id = _random(64) or 1
        tp = headers.get("traceparent")
        if tp is not None and valid_traceparent(tp):
            ex.traceparent = tp
            ours = f"00-{tp[3:35]}-{span:016x}-{tp[53:55]}"
            continued = True
        else:
            trace = ex.trace_id = _random(128) or 1
            ours = f"00-{trace:032x}-{span:016x}-01"
            continued = False
        strip = None
        rewritten = False
        length = request.content_length
        if not request.body_exists:
            data: Any = None
            ex.request_bytes = 0
        elif length is not None and length <= self._max_parse:
            data = await request.read()
            ex.request_bytes = len(data)
            if proto.reads_bodies:
                ex.request_body = data
                if self._inject:
                    new = _prepare(proto, ex.path, data)
                    if new is not None:
                        data, strip, rewritten = new, UsageStripper(), True
        else:  # too big to parse (or of unknown length): stream it through untouched
            data = request.content
            ex.request_bytes = length
        if proto.reads_bodies:
            ex.tap = Tap()
        fwd = forwardable(headers, _DROP[rewritten, continued])
        fwd.append(("traceparent", ours))
        self._inflight[ex] = (_current_task(), request.transport)
        try:
            up = await self._session.request(  # type: ignore[union-attr]
                request.method, URL(self.upstream + request.raw_path, encoded=True), headers=fwd, data=data)
        except asyncio.CancelledError:
            if not ex.timed_out:
                raise
            _current_task().uncancel()  # type: ignore[union-attr]
            return self._timed_out(ex)
        except asyncio.TimeoutError as e:  # before aiohttp.ClientError: ServerTimeoutError is both
            return self._timed_out(ex, type(e).__name__)
        except (aiohttp.ClientError, OSError) as e:
            ex.status_code, ex.error_type = 502, "upstream_unreachable"
            return _error(502, "upstream_unreachable", f"infermeter proxy: upstream {self.upstream} unreachable: {e}")
        return await self._relay(request, ex, up, strip)

    def _timed_out(self, ex: Exchange, why: str = "no reply") -> web.Response:
        ex.status_code, ex.error_type = 504, "upstream_timeout"
        return _error(504, "upstream_timeout", f"infermeter proxy: upstream {self.upstream} did not answer "
                      f"within {self._timeout:g}s ({why})")

    def _sweep(self) -> None:
        """Time out the requests whose upstream sent nothing for ``upstream_timeout_s``; re-arms itself."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        limit = self._timeout
        for ex, (task, transport) in list(self._inflight.items()):
            if ex.progress != ex.swept:  # bytes came since the last sweep (or this is the first)
                ex.swept, ex.quiet_since = ex.progress, now
            elif now - ex.quiet_since >= limit and not ex.timed_out:
                if transport is not None and transport.get_write_buffer_size():
                    ex.quiet_since = now  # the client is not reading: the upstream waits on it, not silent
                    continue
                ex.timed_out = True
                task.cancel()
        self._sweeper = loop.call_later(self._sweep_every, self._sweep)

    async def _relay(self, request: BaseRequest, ex: Exchange, up: aiohttp.ClientResponse,
                     strip: UsageStripper | None) -> web.StreamResponse:
        ex.status_code = up.status
        uh = up.headers
        kind = ex.kind = response_kind(uh.get("Content-Type"))
        ex.encoding = uh.get("Content-Encoding")
        capture = getattr(ex.protocol, "capture_headers", None)
        if capture:
            ex.headers = {h: uh[h] for h in capture if h in uh}
        out_headers = forwardable(uh)
        if strip is not None:
            if kind == "sse" and "Content-Encoding" not in uh:
                out_headers = [(k, v) for k, v in out_headers if k.lower() != "content-length"]
            else:
                strip = None  # an error reply, or bytes the proxy cannot read: nothing to hide
        streaming = kind == "sse" or kind == "ndjson"
        observe = ex.observe
        resp = web.StreamResponse(status=up.status, reason=up.reason, headers=out_headers)
        sent = 0
        try:
            await resp.prepare(request)
            async for chunk in up.content.iter_any():
                ex.progress += 1
                observe(chunk, streaming)
                if strip is not None:
                    chunk = strip.feed(chunk)
                    if not chunk:
                        continue
                try:
                    await resp.write(chunk)
                except ConnectionError:  # the client left: cancel the upstream request
                    ex.cancelled = True
                    up.close()
                    return resp
                sent += len(chunk)
            if strip is not None:
                rest = strip.flush()
                if rest:
                    await resp.write(rest)
                    sent += len(rest)
        except asyncio.CancelledError:
            up.close()
            if not ex.timed_out:
                raise
            _current_task().uncancel()  # type: ignore[union-attr]
            ex.error_type = "upstream_timeout"  # silent mid-reply: the client must see a cut reply
            if request.transport is not None:
                request.transport.close()
            return resp
        except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as e:
            up.close()
            if isinstance(e, ConnectionError) and (request.transport is None or request.transport.is_closing()):
                ex.cancelled = True  # prepare() or the last write found the client gone
                return resp
            # the upstream broke off mid-reply
            ex.error_type = "upstream_timeout" if isinstance(e, asyncio.TimeoutError) else "upstream_broken"
            if request.transport is not None:
                request.transport.close()  # the client must see a cut reply, not a clean end
            return resp
        finally:
            ex.response_bytes = sent
        up.release()
        return resp


def _prepare(proto: Any, path: str, body: bytes) -> bytes | None:
    try:
        return proto.prepare(path, body)
    except Exception:  # noqa: BLE001 - a telemetry edge: forward what the client sent
        return None

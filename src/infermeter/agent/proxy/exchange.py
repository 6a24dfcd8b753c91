"""One proxied request as the hot path saw it, and the record the pipeline thread makes of it.

The event loop fills an :class:`Exchange` (timestamps, sizes, status, what it kept of the bodies)
and hands it to ``pipeline.submit(builder, exchange)``. :class:`RecordBuilder` runs later on the
pipeline thread: it lets the wire protocol read the bodies, estimates what no usage said (and says
so), picks the tenant and hashes the prompt. Each record gets its own span id, in the caller's
trace when the request carried a ``traceparent``; the exporters turn records into spans (one per
request) with these ids. The ASGI middleware (``instrument_app``) uses the same two pieces, with
the ids of the request's server span.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
import zlib

from ...records import CostSource, InferenceRecord, Operation, Source, Status
from .protocols import Body, Extracted, WireProtocol, hash_prompt
from .protocols.base import json_or_none, prompt_size

__all__ = ["Exchange", "Tap", "RecordBuilder", "key_hash", "response_kind"]

_perf = time.perf_counter_ns
_random = random.getrandbits  # span ids; the random module reseeds itself in forked children
_NO_ESTIMATE = (Operation.INFERENCE, Operation.OTHER)  # tensors and plain HTTP have no tokens to guess


def key_hash(credential: str) -> str:
    """A short, stable name for an API key: never the key, not reversible."""
    token = credential.split(None, 1)[-1] if credential[:7].lower() == "bearer " else credential
    return "key-" + hashlib.blake2b(token.encode(), digest_size=6).hexdigest()


def response_kind(content_type: str | None) -> str:
    """'sse', 'ndjson', 'json' or 'other', from a Content-Type: streams are the first two."""
    if not content_type:
        return "other"
    ct = content_type.lower()
    if ct.startswith("text/event-stream"):
        return "sse"
    if "ndjson" in ct or "jsonl" in ct:
        return "ndjson"
    if "json" in ct:
        return "json"
    return "other"


class Tap:
    """Keeps a response body for parsing: whole when small, else its first 8 KiB and last 16 KiB."""

    __slots__ = ("parts", "size", "head", "tail")
    KEEP_ALL = 64 * 1024
    HEAD = 8 * 1024
    TAIL = 16 * 1024

    def __init__(self) -> None:
        self.parts: list[bytes] | None = []
        self.size = 0
        self.head: bytes | None = None
        self.tail = b""

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.parts is not None:
            self.parts.append(chunk)
            if self.size > self.KEEP_ALL:
                whole = b"".join(self.parts)
                self.parts = None
                self.head, self.tail = whole[: self.HEAD], whole[-self.TAIL:]
        else:
            t = self.tail + chunk
            self.tail = t[-self.TAIL:] if len(t) > self.TAIL else t

    def body(self, kind: str, content_events: int, headers: dict[str, str] | None, encoding: str | None = None) -> Body:
        """What was kept, decompressed when the reply was gzip/deflate and is whole (OpenAI's API gzips JSON)."""
        if self.parts is not None:
            data = b"".join(self.parts)
            if encoding:
                try:
                    data = _decompress(data, encoding)
                except (zlib.error, ValueError):
                    return Body(b"", b"", False, kind, content_events, headers)  # unreadable: tokens unknown
            return Body(data, b"", True, kind, content_events, headers)
        if encoding:
            return Body(b"", b"", False, kind, content_events, headers)  # compressed fragments say nothing
        return Body(self.head or b"", self.tail, False, kind, content_events, headers)


def _decompress(data: bytes, encoding: str) -> bytes:
    if encoding.strip().lower() not in ("gzip", "x-gzip", "deflate"):
        raise ValueError(f"cannot read {encoding!r}")  # br, zstd: tokens stay unknown
    # wbits 47: a gzip or a zlib header; at most 4 MiB out, so a zip bomb stays small
    return zlib.decompressobj(47).decompress(data, 64 * Tap.KEEP_ALL)


class Exchange:
    """What the hot path knows about one request; read by :class:`RecordBuilder` on the pipeline thread."""

    __slots__ = (
        "protocol", "path", "start_ns", "t0", "t_end", "ttft_ns", "status_code", "request_body", "request_bytes",
        "response_bytes", "kind", "tap", "content_events", "cancelled", "error_type", "tenant", "key", "cred",
        "traceparent", "headers", "trace_id", "span_id", "method", "encoding", "progress", "swept", "quiet_since",
        "timed_out",
    )

    def __init__(self, protocol: WireProtocol, path: str, method: str, start_ns: int, t0: int) -> None:
        self.protocol = protocol
        self.path = path
        self.method = method
        self.start_ns = start_ns
        self.t0 = t0
        self.t_end = t0
        self.ttft_ns: int | None = None
        self.status_code: int | None = None
        self.request_body: bytes | None = None  # None: not kept (too big, or the protocol reads no bodies)
        self.request_bytes: int | None = None
        self.response_bytes = 0
        self.kind = "other"
        self.tap: Tap | None = None
        self.content_events = 0
        self.cancelled = False
        self.error_type: str | None = None
        self.tenant: str | None = None  # from the tenant header
        self.key: str | None = None  # key_hash() of the credential, never the credential
        self.cred: str | None = None  # or the credential itself, for the builder to hash (never stored)
        self.traceparent: str | None = None  # the caller's, when the trace id comes from it
        self.headers: dict[str, str] | None = None  # response headers the protocol asked for
        self.encoding: str | None = None  # the reply's Content-Encoding, if any
        self.trace_id: int | None = None  # the record's ids when known at the start: the proxy's own, or
        self.span_id: int | None = None  # (in-process instrumentation) those of the request's server span
        self.progress = 0  # proxy: reply chunks so far, and what its timeout sweep saw of them
        self.swept = -1
        self.quiet_since = 0.0
        self.timed_out = False

    def observe(self, chunk: bytes, streaming: bool) -> None:
        """Hot path, once per reply chunk: time to first content, content events, the kept copy."""
        if streaming:
            creg = self.protocol.content_re
            hits = 1 if creg is None else len(creg.findall(chunk))
            if hits:
                if self.ttft_ns is None:
                    self.ttft_ns = _perf() - self.t0
                self.content_events += hits
        if self.tap is not None:
            self.tap.add(chunk)


class RecordBuilder:
    """Turns a finished :class:`Exchange` into an :class:`InferenceRecord`; runs on the pipeline thread."""

    def __init__(self, *, hash_prompts: bool, server_address: str | None = None, provider: str | None = None) -> None:
        self.hash_prompts = hash_prompts
        self.server_address = server_address
        self.provider = provider  # from the upstream's host (api.openai.com -> openai); else the protocol's

    def __call__(self, ex: Exchange) -> InferenceRecord:
        proto = ex.protocol
        if proto.reads_bodies:
            request = json_or_none(ex.request_body)
            body = (ex.tap.body(ex.kind, ex.content_events, ex.headers, ex.encoding) if ex.tap is not None
                    else Body(b"", kind=ex.kind))
            x = proto.extract(ex.path, request, body)
        else:
            x = Extracted(operation=proto.operation(ex.path))
        cancelled = ex.cancelled and not x.finished  # SDKs hang up right after the last event: not a cancel
        inp, out, estimated = _tokens(ex, x, cancelled)
        status = Status.CANCELLED if cancelled else Status.OK
        error_type = ex.error_type
        if ex.status_code is not None and ex.status_code >= 400 and not cancelled:
            status = Status.ERROR
            error_type = error_type or str(ex.status_code)
        elif error_type is not None and not cancelled:
            status = Status.ERROR
        tp_trace, tp_parent = _traceparent_ids(ex.traceparent)
        return InferenceRecord(
            start_time_ns=ex.start_ns,
            duration_s=(ex.t_end - ex.t0) / 1e9,
            operation=x.operation or Operation.OTHER,
            source=Source.PROXY,
            status=status,
            trace_id=ex.trace_id or tp_trace or _random(128),
            span_id=ex.span_id or _random(64),
            ttft_s=None if ex.ttft_ns is None else ex.ttft_ns / 1e9,
            request_model=x.request_model,
            response_model=x.response_model,
            provider=self.provider or proto.provider,
            endpoint=ex.path,
            server_address=self.server_address,
            tenant=ex.tenant or x.user or ex.key or (key_hash(ex.cred) if ex.cred else None),
            error_type=error_type,
            finish_reason=x.finish_reason,
            streaming=ex.kind in ("sse", "ndjson"),
            input_tokens=inp,
            output_tokens=out,
            cached_tokens=x.cached_tokens,
            tokens_estimated=estimated,
            request_bytes=ex.request_bytes,
            response_bytes=ex.response_bytes,
            http_status=ex.status_code,
            cost_usd=x.cost_usd,
            cost_currency="USD" if x.cost_usd is not None else None,
            cost_source=CostSource.PROVIDER if x.cost_usd is not None else None,
            prompt_hash=hash_prompt(x.prompt) if self.hash_prompts else None,
            parent_span_id=tp_parent,
        )


def _tokens(ex: Exchange, x: Extracted, cancelled: bool) -> tuple[int | None, int | None, bool]:
    """The token counts, estimated (and flagged) only where a good reply reported none."""
    inp, out = x.input_tokens, x.output_tokens
    estimated = False
    answered = ex.status_code is not None and ex.status_code < 400
    if not answered or x.operation in _NO_ESTIMATE or (x.malformed and not cancelled):
        return inp, out, False
    if cancelled and ex.content_events > (out or 0):
        out, estimated = ex.content_events, True  # what streamed before the client left
    elif out is None:
        if ex.content_events:
            out, estimated = ex.content_events, True  # one content event ~ one token
        elif x.output_chars is not None:
            out, estimated = math.ceil(x.output_chars / 4), True
    if inp is None and out is not None and x.prompt is not None:
        inp, estimated = math.ceil(prompt_size(x.prompt) / 4), True
    return inp, out, estimated


def _traceparent_ids(traceparent: str | None) -> tuple[int | None, int | None]:
    """(trace id, parent span id) of a W3C ``traceparent`` header (``00-<32 hex>-<16 hex>-<2 hex>``);
    (None, None) when it is not one, and no parent id when that field is zero."""
    if not traceparent:
        return None, None
    parts = traceparent.strip().split("-")
    if len(parts) < 4 or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None, None
    try:
        tid = int(parts[1], 16)
    except ValueError:
        return None, None
    if not tid:
        return None, None
    try:
        sid = int(parts[2], 16)
    except ValueError:
        sid = 0
    return tid, sid or None

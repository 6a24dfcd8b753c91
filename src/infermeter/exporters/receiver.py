"""The agent's OTLP receiver: GenAI spans from other processes become records, priced like the rest.

``POST /v1/traces`` (http/protobuf or http/json, gzip allowed) on the agent API. Understood:

- infermeter's own record spans (a worker with ``INFERMETER_ENDPOINT`` set): every field comes
  back, cost included (``gen_ai.usage.cost.amount`` / ``.source``), so the stored row agrees with
  the one the worker would have written itself;
- the GenAI semantic conventions (``gen_ai.request.model``, ``gen_ai.usage.input_tokens``, ...),
  as OpenLIT and current OpenLLMetry send them;
- the older names (``gen_ai.system``, ``gen_ai.usage.prompt_tokens`` / ``completion_tokens``,
  ``llm.request.type``, ``llm.request.model``, ``llm.usage.*``) of OpenLLMetry;
- vLLM's ``--otlp-traces-endpoint`` spans (``llm_request``, scope ``vllm.*``,
  ``gen_ai.latency.time_to_first_token``).

Spans that are not model calls (HTTP, tools, agents, workflows) are ignored and counted. A cost a
foreign span states without ``gen_ai.usage.cost.source`` is not trusted (OpenLIT prices unknown
models at $0): that record is priced here like any other. The decorator's live spans (scope
``infermeter``) are skipped: the same call arrives as its record span. A malformed payload gets
400 with the reason; a span with bad values is rejected alone (``partial_success``); a full
pipeline answers 503 before taking anything, so the sender's retry duplicates nothing.
"""

from __future__ import annotations

import json
import logging
import threading
from decimal import Decimal, InvalidOperation
from typing import Any

from ..agent.api import Request, Response, error_response
from ..records import InferenceRecord, Operation, Source, Status, new_request_id
from .forward import Forwarder
from .otlp_wire import PayloadError, PayloadTooLarge, WireSpan, decode_traces, decompress

__all__ = ["OtlpReceiver", "span_to_record", "SpanRejected"]

logger = logging.getLogger(__name__)

DECORATOR_SCOPE = "infermeter"
_NOT_INFERENCE = {"execute_tool", "invoke_agent", "create_agent", "embeddings_retrieval"}
_LLM_REQUEST_TYPE = {"chat": Operation.CHAT, "completion": Operation.TEXT_COMPLETION, "embedding": Operation.EMBEDDINGS,
                     "rerank": Operation.OTHER}


class SpanRejected(ValueError):
    """One span has a value that cannot be a record (the rest of its payload still counts)."""


def _first(a: dict[str, Any], *keys: str) -> Any:
    for k in keys:
        v = a.get(k)
        if v is not None and v != "" and v != ():
            return v
    return None


def _str(v: Any) -> str | None:
    return None if v is None else str(v)


def _count(a: dict[str, Any], *keys: str) -> int | None:
    v = _first(a, *keys)
    if v is None:
        return None
    if isinstance(v, bool):
        raise SpanRejected(f"{keys[0]}: expected a token count, got {v!r}")
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, str) and v.isdigit():
        v = int(v)
    if not isinstance(v, int) or v < 0:
        raise SpanRejected(f"{keys[0]}: expected a non-negative integer, got {v!r}")
    return v


def _seconds(a: dict[str, Any], *keys: str) -> float | None:
    v = _first(a, *keys)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
        raise SpanRejected(f"{keys[0]}: expected seconds, got {v!r}")
    return float(v)


def _int_attr(a: dict[str, Any], key: str) -> int | None:
    v = a.get(key)
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _cost(a: dict[str, Any]) -> tuple[Decimal | None, str | None, str | None]:
    source = _str(a.get("gen_ai.usage.cost.source"))
    if source is None:
        return None, None, None  # a cost without provenance is not ours to trust
    raw = _first(a, "gen_ai.usage.cost.amount", "gen_ai.usage.cost")
    if raw is None:
        return None, None, source
    try:
        amount = Decimal(raw if isinstance(raw, str) else repr(float(raw)))
    except (InvalidOperation, TypeError, ValueError):
        raise SpanRejected(f"gen_ai.usage.cost.amount: not a number: {raw!r}") from None
    if not amount.is_finite():
        raise SpanRejected(f"gen_ai.usage.cost.amount: not a number: {raw!r}")
    return amount, _str(a.get("gen_ai.usage.cost.currency")) or "USD", source


def _is_model_call(a: dict[str, Any], op: str | None) -> bool:
    if op in _NOT_INFERENCE:
        return False
    return any(k in a for k in (
        "gen_ai.request.model", "gen_ai.response.model", "llm.request.model", "llm.response.model",
        "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "gen_ai.usage.prompt_tokens",
        "gen_ai.usage.completion_tokens", "llm.usage.prompt_tokens", "llm.usage.completion_tokens",
    ))


def span_to_record(ws: WireSpan) -> InferenceRecord | None:
    """The record a span stands for, or None when it is not a model call (or a duplicate)."""
    a = ws.attributes
    if ws.scope == DECORATOR_SCOPE and "infermeter.request_id" not in a:
        return None  # the decorator's live span: its record span carries the same call
    op = _str(a.get("gen_ai.operation.name"))
    if not _is_model_call(a, op):
        return None
    if op is None:
        op = _LLM_REQUEST_TYPE.get(str(a.get("llm.request.type") or "").lower(), Operation.CHAT)
    if ws.start_ns <= 0:
        raise SpanRejected("startTimeUnixNano is missing")
    if ws.end_ns < ws.start_ns:
        raise SpanRejected(f"span ends ({ws.end_ns}) before it starts ({ws.start_ns})")
    provider = _first(a, "gen_ai.provider.name", "gen_ai.system", "llm.vendor")
    if provider is None and ws.scope.startswith("vllm"):
        provider = "vllm"
    server = _str(a.get("server.address"))
    if server and a.get("server.port") is not None:
        server = f"{server}:{a['server.port']}"
    finish = a.get("gen_ai.response.finish_reasons")
    if isinstance(finish, (tuple, list)):
        finish = finish[0] if finish else None
    status = Status.OK
    if a.get("infermeter.status") == Status.CANCELLED:
        status = Status.CANCELLED
    elif ws.error or a.get("error.type"):
        status = Status.ERROR
    cost, currency, cost_source = _cost(a)
    rid = _int_attr(a, "infermeter.request_id")
    return InferenceRecord(
        start_time_ns=ws.start_ns,
        duration_s=(ws.end_ns - ws.start_ns) / 1e9,
        operation=op,
        source=Source.OTLP,
        status=status,
        trace_id=ws.trace_id,
        span_id=ws.span_id,
        ttft_s=_seconds(a, "gen_ai.server.time_to_first_token", "gen_ai.latency.time_to_first_token"),
        request_model=_str(_first(a, "gen_ai.request.model", "llm.request.model")),
        response_model=_str(_first(a, "gen_ai.response.model", "llm.response.model")),
        provider=str(provider).lower() if provider is not None else None,
        endpoint=_str(_first(a, "infermeter.endpoint", "code.function.name", "http.route")),
        server_address=server,
        tenant=_str(_first(a, "infermeter.tenant", "tenant.id")),
        error_type=_str(a.get("error.type")),
        finish_reason=_str(finish),
        streaming=bool(_first(a, "infermeter.streaming", "gen_ai.request.is_stream", "llm.is_streaming") or False),
        input_tokens=_count(a, "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.usage.prompt_tokens"),
        output_tokens=_count(a, "gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", "llm.usage.completion_tokens"),
        cached_tokens=_count(a, "gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens"),
        tokens_estimated=bool(a.get("infermeter.tokens_estimated") or False),
        request_bytes=_int_attr(a, "http.request.body.size"),
        response_bytes=_int_attr(a, "http.response.body.size"),
        http_status=_int_attr(a, "http.response.status_code"),
        cost_usd=cost,
        cost_currency=currency,
        cost_source=cost_source,
        prompt_hash=_int_attr(a, "infermeter.prompt_hash"),
        request_id=rid if rid is not None and 0 <= rid < 2**63 else new_request_id(),
        parent_span_id=ws.parent_span_id or None,
    )


class OtlpReceiver:
    """Handlers for ``POST /v1/traces`` (and a discarding ``/v1/metrics``), feeding ``pipeline``."""

    def __init__(self, pipeline: Any, *, max_bytes: int = 8 * 1024 * 1024, forward_url: str | None = None) -> None:
        self.pipeline = pipeline
        self.max_bytes = max_bytes
        self.forwarder = Forwarder(forward_url) if forward_url else None
        self._lock = threading.Lock()
        self.counts = {"payloads": 0, "spans": 0, "records": 0, "ignored": 0, "rejected": 0,
                       "bad_payloads": 0, "busy": 0, "metrics_discarded": 0}

    # -- lifecycle (an agent component) -----------------------------------------------------------
    def start(self) -> "OtlpReceiver":
        if self.forwarder is not None:
            self.forwarder.start()
        return self

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        return self.forwarder.force_flush(timeout_s) if self.forwarder is not None else True

    def shutdown(self, timeout_s: float = 10.0) -> None:
        if self.forwarder is not None:
            self.forwarder.shutdown(timeout_s)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = dict(self.counts)
        if self.forwarder is not None:
            out["forward"] = self.forwarder.stats()
        return out

    def _add(self, **counts: int) -> None:
        with self._lock:
            for k, v in counts.items():
                self.counts[k] += v

    # -- handlers ---------------------------------------------------------------------------------
    def handle_traces(self, req: Request) -> Response:
        ctype = req.headers.get("content-type", "")
        as_json = ctype.split(";")[0].strip().lower() == "application/json"
        try:
            body = decompress(req.body, req.headers.get("content-encoding"), self.max_bytes)
            spans = decode_traces(body, ctype)
        except PayloadTooLarge as e:
            self._add(bad_payloads=1)
            return error_response(413, str(e))
        except PayloadError as e:
            self._add(bad_payloads=1)
            return error_response(400, str(e))
        records, errors, ignored = [], [], 0
        for ws in spans:
            try:
                rec = span_to_record(ws)
            except SpanRejected as e:
                errors.append(f"span {ws.span_id or 0:016x} ({ws.name}): {e}")
                continue
            if rec is None:
                ignored += 1
            else:
                records.append(rec)
        p = self.pipeline
        if records and p.queued + len(records) > p.queue_size:
            self._add(busy=1)
            resp = error_response(503, "the agent's pipeline is full; retry later")
            resp.headers["Retry-After"] = "1"
            return resp
        for rec in records:
            p.submit_record(rec)
        if self.forwarder is not None:
            self.forwarder.submit(req.body, ctype, req.headers.get("content-encoding"))
        self._add(payloads=1, spans=len(spans), records=len(records), ignored=ignored, rejected=len(errors))
        if errors and len(errors) == 1:
            logger.debug("OTLP receiver rejected a span: %s", errors[0])
        return _export_response(as_json, len(errors), "; ".join(errors[:5]))

    def handle_metrics(self, req: Request) -> Response:
        """Accepted and discarded: the agent makes its metrics from the spans it receives."""
        self._add(metrics_discarded=1)
        as_json = req.headers.get("content-type", "").split(";")[0].strip().lower() == "application/json"
        return Response(200, b"{}" if as_json else b"", "application/json" if as_json else "application/x-protobuf")

    def handle_stats(self, req: Request) -> Response:
        from ..agent.api import json_response

        return json_response(self.stats())


def _export_response(as_json: bool, rejected: int, message: str) -> Response:
    if as_json:
        body: dict[str, Any] = {}
        if rejected:
            body["partialSuccess"] = {"rejectedSpans": str(rejected), "errorMessage": message}
        return Response(200, json.dumps(body).encode(), "application/json")
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    resp = ExportTraceServiceResponse()
    if rejected:
        resp.partial_success.rejected_spans = rejected
        resp.partial_success.error_message = message
    return Response(200, resp.SerializeToString(), "application/x-protobuf")

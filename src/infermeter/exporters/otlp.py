"""OTLP export of traces and metrics, over http/protobuf or gRPC, configured the standard way.

Where: ``INFERMETER_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT`` (a base URL; ``/v1/traces`` and
``/v1/metrics`` are appended for http/protobuf) or the per-signal
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``_METRICS_ENDPOINT`` (used as given). How:
``OTEL_EXPORTER_OTLP_PROTOCOL`` (``http/protobuf``, the default, or ``grpc``). Who:
``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES``. Headers, timeout, compression, TLS files and
temporality preference are read by the OpenTelemetry exporters themselves from their standard
``OTEL_EXPORTER_OTLP_*`` variables.

Spans: :class:`SpanSink` turns each finished record into one GenAI span carrying the cost
(``gen_ai.usage.cost`` and ``.amount`` / ``.currency`` / ``.source``), with the record's own start
and end times, and hands it to the SDK's ``BatchSpanProcessor``: the export runs on that
processor's thread, never on the request's. The exporter packages are imported only here, only
when export is configured.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.status import Status as OtelStatus
from opentelemetry.trace.status import StatusCode

from ..errors import ConfigError
from ..records import InferenceRecord, Source, Status, new_request_id
from .metrics import genai_attributes

__all__ = [
    "OtlpConfig",
    "SpanSink",
    "record_span",
    "record_attributes",
    "ensure_request_ids",
    "build_resource",
    "span_exporter",
    "metric_reader",
    "RECORDS_SCOPE",
    "EXPORT_HINT",
]

logger = logging.getLogger(__name__)

RECORDS_SCOPE = "infermeter.records"
"""Instrumentation scope of the spans made from records (the decorator's live spans use ``infermeter``)."""

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_UNSET = OtelStatus(StatusCode.UNSET)

EXPORT_HINT = "OTLP export needs the exporter packages: pip install 'infermeter[export]'"


@dataclass(frozen=True)
class OtlpConfig:
    """Where and how to export; ``None`` endpoints mean that signal is not exported."""

    protocol: str  # http/protobuf | grpc
    traces_endpoint: str | None
    metrics_endpoint: str | None
    metric_export_interval_ms: int
    service_name: str
    resource_attributes: Mapping[str, str]

    @classmethod
    def from_settings(cls, s: Any, *, remote: bool = False, environ: Mapping[str, str] | None = None) -> "OtlpConfig | None":
        """The export ``s`` asks for, or None when it asks for none.

        ``remote``: this process is a worker exporting its records instead of running an agent.
        A worker whose endpoint is ``INFERMETER_ENDPOINT`` (an infermeter agent) sends spans only
        under ``OTEL_METRICS_EXPORTER=auto``: the agent derives the metrics from those spans.
        """
        env = os.environ if environ is None else environ
        base = _url(s.endpoint) if s.endpoint else None
        http = s.otlp_protocol != "grpc"
        traces = s.otlp_traces_endpoint or (base and (_join(base, "v1/traces") if http else base))
        metrics = s.otlp_metrics_endpoint or (base and (_join(base, "v1/metrics") if http else base))
        if s.traces_exporter == "none":
            traces = None
        if s.metrics_exporter == "none" or (s.metrics_exporter == "auto" and remote and env.get("INFERMETER_ENDPOINT")):
            metrics = None
        if not traces and not metrics:
            return None
        return cls(
            protocol=s.otlp_protocol,
            traces_endpoint=_url(traces) if traces else None,
            metrics_endpoint=_url(metrics) if metrics else None,
            metric_export_interval_ms=s.metric_export_interval_ms,
            service_name=s.service_name,
            resource_attributes=parse_resource_attributes(s.resource_attributes),
        )


def _url(u: str) -> str:
    return u if "://" in u else f"http://{u}"


def _join(base: str, path: str) -> str:
    return f"{base.rstrip('/')}/{path}"


def parse_resource_attributes(text: str | None) -> dict[str, str]:
    """``OTEL_RESOURCE_ATTRIBUTES``: ``key=value,key=value`` with percent-encoded values."""
    out: dict[str, str] = {}
    if not text:
        return out
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError("OTEL_RESOURCE_ATTRIBUTES", text, f"{item.strip()!r} is not key=value")
        out[key.strip()] = unquote(value.strip())
    return out


def build_resource(cfg: OtlpConfig | None, service_name: str = "infermeter", extra: Mapping[str, Any] | None = None) -> Any:
    from opentelemetry.sdk.resources import Resource

    attrs: dict[str, Any] = {"host.name": socket.gethostname(), "process.pid": os.getpid()}
    if cfg is not None:
        attrs.update(cfg.resource_attributes)
    attrs["service.name"] = cfg.service_name if cfg is not None else service_name
    attrs.update(extra or {})
    # Resource.create adds telemetry.sdk.*; explicit attributes win over what it reads itself.
    return Resource.create(attrs)


# -- exporters (imported lazily: the [export] extra) ---------------------------------------------

def span_exporter(cfg: OtlpConfig) -> Any:
    try:
        if cfg.protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc

            return Grpc(endpoint=cfg.traces_endpoint, insecure=cfg.traces_endpoint.startswith("http://"))
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http

        return Http(endpoint=cfg.traces_endpoint)
    except ImportError as e:
        raise ConfigError("OTEL_EXPORTER_OTLP_ENDPOINT", cfg.traces_endpoint, f"{EXPORT_HINT} ({e.name} is missing)") from e


def metric_reader(cfg: OtlpConfig, histograms: Any = None, resource: Any = None) -> Any:
    """A periodic OTLP metric reader; with ``histograms`` (:class:`.histograms.Histograms`), every
    export also carries infermeter's own GenAI histograms."""
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    try:
        if cfg.protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as Grpc

            exporter = Grpc(endpoint=cfg.metrics_endpoint, insecure=cfg.metrics_endpoint.startswith("http://"))
        else:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as Http

            exporter = Http(endpoint=cfg.metrics_endpoint)
    except ImportError as e:
        raise ConfigError("OTEL_EXPORTER_OTLP_ENDPOINT", cfg.metrics_endpoint, f"{EXPORT_HINT} ({e.name} is missing)") from e
    if histograms is not None:
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        from .. import __version__
        from .histograms import MergingMetricExporter

        exporter = MergingMetricExporter(exporter, histograms, resource, InstrumentationScope("infermeter", __version__))
    return PeriodicExportingMetricReader(exporter, export_interval_millis=cfg.metric_export_interval_ms)


# -- records as spans ---------------------------------------------------------------------------

_SPAN_FIELDS = (  # (span attribute, record field), set when the field is known
    ("gen_ai.usage.input_tokens", "input_tokens"), ("gen_ai.usage.output_tokens", "output_tokens"),
    ("gen_ai.usage.cache_read.input_tokens", "cached_tokens"), ("gen_ai.server.time_to_first_token", "ttft_s"),
    ("error.type", "error_type"), ("http.response.status_code", "http_status"), ("http.request.body.size", "request_bytes"),
    ("http.response.body.size", "response_bytes"), ("infermeter.tenant", "tenant"), ("infermeter.request_id", "request_id"),
    ("infermeter.prompt_hash", "prompt_hash"),
)


def record_attributes(r: InferenceRecord) -> dict[str, Any]:
    """The span attributes of a record: GenAI conventions first, infermeter's own under ``infermeter.*``."""
    a = genai_attributes(r)
    for attr, name in _SPAN_FIELDS:
        value = getattr(r, name)
        if value is not None:
            a[attr] = value
    if r.finish_reason:
        a["gen_ai.response.finish_reasons"] = (r.finish_reason,)
    if r.cost_usd is not None:
        a["gen_ai.usage.cost"] = float(r.cost_usd)
        a["gen_ai.usage.cost.amount"] = str(r.cost_usd)  # exact decimal, for receivers that sum money
        a["gen_ai.usage.cost.currency"] = r.cost_currency or "USD"
    if r.cost_source:
        a["gen_ai.usage.cost.source"] = r.cost_source
    if r.endpoint:
        a["infermeter.endpoint"] = r.endpoint
        if r.source == Source.DECORATOR:
            a["code.function.name"] = r.endpoint
    a["infermeter.source"] = r.source
    if r.status == Status.CANCELLED:
        a["infermeter.status"] = Status.CANCELLED
    if r.streaming:
        a["infermeter.streaming"] = True
    if r.tokens_estimated:
        a["infermeter.tokens_estimated"] = True
    return a


def record_span(r: InferenceRecord, resource: Any, scope: Any = None, ids: tuple[int, int] | None = None) -> Any:
    """An SDK ``ReadableSpan`` for a finished record, with the record's ids or else ``ids``.

    The SDK's Tracer only makes spans that start now with ids it draws itself; a record is a
    span that already happened, so it is built directly as the object span processors consume.
    A record without a live span is matched to its stored row by ``infermeter.request_id``.
    """
    trace_id, span_id = (r.trace_id, r.span_id) if r.span_id is not None else ids or (0, 0)
    ctx = SpanContext(trace_id, span_id, is_remote=False, trace_flags=_SAMPLED)
    status = OtelStatus(StatusCode.ERROR, r.error_type) if r.status == Status.ERROR else _UNSET
    model = r.model
    parent = (SpanContext(trace_id, r.parent_span_id, is_remote=r.source != Source.DECORATOR, trace_flags=_SAMPLED)
              if r.parent_span_id and r.span_id is not None else None)
    return ReadableSpan(
        name=f"{r.operation} {model}" if model else r.operation,
        context=ctx,
        parent=parent,
        resource=resource,
        attributes=record_attributes(r),
        kind=SpanKind.CLIENT,
        status=status,
        start_time=r.start_time_ns,
        end_time=r.start_time_ns + round(r.duration_s * 1e9),
        instrumentation_scope=scope or _scope(),
    )


def _scope() -> Any:
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    from .. import __version__

    return InstrumentationScope(RECORDS_SCOPE, __version__)


def ensure_request_ids(batch: list[InferenceRecord]) -> list[InferenceRecord]:
    """Processor: give records without a ``request_id`` one before the sinks run, so the stored
    row and the exported span (``infermeter.request_id``) carry the same key."""
    if all(r.request_id is not None for r in batch):
        return batch
    return [r if r.request_id is not None else r.replace(request_id=new_request_id()) for r in batch]


class SpanSink:
    """Pipeline sink: one span per record, exported in batches by the SDK's BatchSpanProcessor.

    A record without a live span (proxy; decorator with no SDK tracer provider) gets fresh ids.
    ``skip_live``: leave out decorator records that have a live span, which the application's
    own tracer provider exports (an agent does; a remote worker sends every record, since the
    agent learns of records only from these spans, and keeps the live span's ids).
    ``skip_received``: leave out records the OTLP receiver made (when the raw spans are
    forwarded upstream instead).
    """

    def __init__(self, processor: Any, resource: Any, *, skip_live: bool = True, skip_received: bool = False) -> None:
        self.processor = processor
        self.resource = resource
        self.skip_live = skip_live
        self.skip_received = skip_received
        self.exported = 0
        self._scope = _scope()
        self._ids: Any = None
        self._closed = False

    @classmethod
    def for_config(cls, cfg: OtlpConfig, resource: Any, **kw: Any) -> "SpanSink":
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        return cls(BatchSpanProcessor(span_exporter(cfg)), resource, **kw)

    def consume(self, records: Sequence[InferenceRecord]) -> None:
        if self._closed:
            return
        on_end = self.processor.on_end
        for r in records:
            ids = None
            if r.span_id is None:
                if self._ids is None:
                    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

                    self._ids = RandomIdGenerator()
                ids = (self._ids.generate_trace_id(), self._ids.generate_span_id())
            elif self.skip_live and r.source == Source.DECORATOR:
                continue
            if self.skip_received and r.source == Source.OTLP:
                continue
            on_end(record_span(r, self.resource, self._scope, ids))
            self.exported += 1

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        if self._closed:
            return True
        return bool(self.processor.force_flush(int(timeout_s * 1000)))

    def shutdown(self, timeout_s: float = 10.0) -> None:
        if self._closed:
            return
        self._closed = True
        self.processor.shutdown()


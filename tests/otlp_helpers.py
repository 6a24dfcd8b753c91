"""Real OTLP receivers for the export tests, and builders of OTLP payloads for the receiver tests.

- :class:`Tap`: oteltap's in-process OTLP/HTTP receiver, keeping everything it receives (its own
  awaiters only see messages that arrive after they are registered).
- :class:`GrpcCollector`: a gRPC OTLP server (the opentelemetry-proto service stubs on grpcio),
  keeping whole export requests, resource included.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import urllib.error
import urllib.request
from concurrent import futures
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: bytes, content_type: str = "application/json", headers: dict | None = None) -> tuple[int, bytes, dict]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": content_type, **(headers or {})}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def attrs_of(span: Any) -> dict[str, Any]:
    """A protobuf span's (or metric point's) attributes as a dict."""
    out = {}
    for kv in span.attributes:
        kind = kv.value.WhichOneof("value")
        v = getattr(kv.value, kind) if kind else None
        if kind == "array_value":
            v = tuple(getattr(x, x.WhichOneof("value")) for x in v.values)
        out[kv.key] = v
    return out


class Tap:
    """``async with Tap() as tap``: oteltap on an ephemeral 127.0.0.1 port, collecting spans and metrics."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.spans: list[Any] = []
        self.metrics: list[Any] = []
        self._cond: asyncio.Condition | None = None
        self._tasks: list[asyncio.Task] = []

    async def __aenter__(self) -> "Tap":
        from oteltap import OtelTapHttpProtobufReceiver, OtelTapHttpProtobufReceiverSettings

        self._cond = asyncio.Condition()
        self._rx = OtelTapHttpProtobufReceiver(OtelTapHttpProtobufReceiverSettings(http_port=self.port))
        await self._rx.start()
        self._tasks = [asyncio.create_task(self._collect(self._rx.stream_traces(), self.spans)),
                       asyncio.create_task(self._collect(self._rx.stream_metrics(), self.metrics))]
        await asyncio.sleep(0)  # let the collectors subscribe before anything is sent
        return self

    async def __aexit__(self, *exc: Any) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._rx.stop()

    async def _collect(self, stream: Any, into: list) -> None:
        async for msg in stream:
            into.append(msg)
            async with self._cond:
                self._cond.notify_all()

    async def wait(self, what: str, pred: Any, timeout: float = 30.0) -> list[Any]:
        """The received ``what`` ('spans' or 'metrics') matching ``pred``, once there is at least one."""
        items = getattr(self, what)

        async def matched() -> list[Any]:
            async with self._cond:
                await self._cond.wait_for(lambda: any(pred(x) for x in items))
            return [x for x in items if pred(x)]

        return await asyncio.wait_for(matched(), timeout)


class GrpcCollector:
    """A real OTLP/gRPC endpoint on 127.0.0.1 (ephemeral port) that keeps every export request."""

    def __init__(self) -> None:
        import grpc
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

        self.trace_requests: list[Any] = []
        self.metric_requests: list[Any] = []
        outer = self

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request, context):  # noqa: N802 - the gRPC method name
                outer.trace_requests.append(request)
                return trace_service_pb2.ExportTraceServiceResponse()

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request, context):  # noqa: N802
                outer.metric_requests.append(request)
                return metrics_service_pb2.ExportMetricsServiceResponse()

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), self.server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "GrpcCollector":
        self.server.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.stop(grace=None).wait(5)


# -- payload builders ---------------------------------------------------------------------------------

def _json_value(v: Any) -> dict:
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    if isinstance(v, (list, tuple)):
        return {"arrayValue": {"values": [_json_value(x) for x in v]}}
    return {"stringValue": str(v)}


def json_span(name: str, attributes: dict, *, trace_id: str = "0af7651916cd43dd8448eb211c80319c",
              span_id: str = "b7ad6b7169203331", start_ns: int = 1_700_000_000_000_000_000, duration_ns: int = 1_500_000_000,
              kind: int = 3, error: bool = False) -> dict:
    span = {"traceId": trace_id, "spanId": span_id, "name": name, "kind": kind,
            "startTimeUnixNano": str(start_ns), "endTimeUnixNano": str(start_ns + duration_ns),
            "attributes": [{"key": k, "value": _json_value(v)} for k, v in attributes.items()]}
    if error:
        span["status"] = {"code": 2, "message": "boom"}
    return span


def json_payload(*spans: dict, scope: str = "openlit", resource: dict | None = None) -> bytes:
    res = {"attributes": [{"key": k, "value": _json_value(v)} for k, v in (resource or {"service.name": "app"}).items()]}
    return json.dumps({"resourceSpans": [{"resource": res, "scopeSpans": [{"scope": {"name": scope}, "spans": list(spans)}]}]}).encode()


def pb_payload(spans: list[tuple[str, dict]], *, scope: str = "opentelemetry.instrumentation.openai", kind: int = 3,
               start_ns: int = 1_700_000_000_000_000_000, duration_ns: int = 2_000_000_000) -> bytes:
    """An ExportTraceServiceRequest with one span per (name, attributes)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    def anyvalue(v: Any) -> AnyValue:
        if isinstance(v, bool):
            return AnyValue(bool_value=v)
        if isinstance(v, int):
            return AnyValue(int_value=v)
        if isinstance(v, float):
            return AnyValue(double_value=v)
        if isinstance(v, (list, tuple)):
            out = AnyValue()
            out.array_value.values.extend(anyvalue(x) for x in v)
            return out
        return AnyValue(string_value=str(v))

    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value="app")))
    ss = rs.scope_spans.add()
    ss.scope.name = scope
    for n, (name, attributes) in enumerate(spans):
        sp = ss.spans.add()
        sp.trace_id = (0x1234 + n).to_bytes(16, "big")
        sp.span_id = (0x99 + n).to_bytes(8, "big")
        sp.name = name
        sp.kind = kind
        sp.start_time_unix_nano = start_ns
        sp.end_time_unix_nano = start_ns + duration_ns
        for k, v in attributes.items():
            sp.attributes.append(KeyValue(key=k, value=anyvalue(v)))
    return req.SerializeToString()


def gzipped(body: bytes) -> bytes:
    return gzip.compress(body)

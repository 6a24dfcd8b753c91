"""What the exporters cost the pipeline thread, and how fast the OTLP receiver ingests.

1. Sink cost: the same N records through the metrics sink (GenAI histograms + cost), the span
   sink (record -> SDK span -> BatchSpanProcessor, with an exporter that drops) and both, timed
   side by side in one run; printed as records/s and as microseconds per record. The store sink
   is measured the same way for scale (it writes on its own thread; here: submit + commit).
2. Receiver: OTLP/HTTP payloads of 512 spans (what the SDK's batch processor sends), protobuf and
   JSON, decoded and mapped to records (no HTTP), spans/s.

Medians of --repeats runs; the machine is shared, so read ratios, not absolutes.

    .venv/bin/python benchmarks/bench_exporters.py [--records 100000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_store import make_records  # noqa: E402

from infermeter.exporters.metrics import MetricsSink  # noqa: E402
from infermeter.exporters.otlp import SpanSink, build_resource, record_attributes  # noqa: E402
from infermeter.exporters.otlp_wire import decode_traces  # noqa: E402
from infermeter.exporters.receiver import span_to_record  # noqa: E402
from infermeter.records import CostSource  # noqa: E402
from infermeter.store import open_store  # noqa: E402


class _Drop:
    def export(self, spans):  # noqa: D401 - the SDK's SpanExporter shape
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS

    def shutdown(self):
        pass

    def force_flush(self, timeout_millis=30000):
        return True


def _metrics_sink():
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from prometheus_client import CollectorRegistry

    reader = PrometheusMetricReader(registry=CollectorRegistry(auto_describe=False), scope_info_enabled=False)
    mp = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    return MetricsSink(mp), mp


def _span_sink():
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    proc = BatchSpanProcessor(_Drop(), max_queue_size=1_000_000, max_export_batch_size=4096)
    return SpanSink(proc, build_resource(None))


def _time_sink(make, records, batch=8192) -> float:
    sink, closer = make()
    t0 = time.perf_counter()
    for i in range(0, len(records), batch):
        sink.consume(records[i:i + batch])
    if hasattr(sink, "force_flush"):
        sink.force_flush(60)
    dt = time.perf_counter() - t0
    closer()
    return dt


def _store_time(records, tmp) -> float:
    path = os.path.join(tmp, f"s{time.perf_counter_ns()}.duckdb")
    store = open_store(path).start()
    t0 = time.perf_counter()
    for i in range(0, len(records), 8192):
        store.write_records(records[i:i + 8192])
    store.force_flush(120)
    dt = time.perf_counter() - t0
    store.shutdown()
    return dt


def _payloads(records, per=512):
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace import ReadableSpan  # noqa: F401 - via record_span

    from infermeter.exporters.otlp import record_span

    res = build_resource(None)
    pb, js = [], []
    for i in range(0, len(records), per):
        chunk = records[i:i + per]
        spans = [record_span(r, res, ids=(r.request_id << 1 | 1, r.request_id or 1)) for r in chunk]
        pb.append(encode_spans(spans).SerializeToString())
        js.append(json.dumps({"resourceSpans": [{"scopeSpans": [{"scope": {"name": "x"}, "spans": [
            {"traceId": f"{1 + i:032x}", "spanId": f"{1 + i:016x}", "name": "chat", "kind": 3,
             "startTimeUnixNano": str(r.start_time_ns), "endTimeUnixNano": str(r.start_time_ns + 10**6),
             "attributes": [{"key": k, "value": _jv(v)} for k, v in record_attributes(r).items()]}
            for i, r in enumerate(chunk)]}]}]}).encode())
    return pb, js


def _jv(v):
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    if isinstance(v, tuple):
        return {"arrayValue": {"values": [_jv(x) for x in v]}}
    return {"stringValue": str(v)}


def _time_receiver(payloads, ctype) -> tuple[float, int]:
    t0 = time.perf_counter()
    n = 0
    for body in payloads:
        for ws in decode_traces(body, ctype):
            if span_to_record(ws) is not None:
                n += 1
    return time.perf_counter() - t0, n


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    records = [r.replace(cost_usd=None if i % 3 else None, cost_source=CostSource.GPU_TIME) for i, r in enumerate(make_records(a.records))]

    def metrics():
        s, mp = _metrics_sink()
        return s, lambda: mp.shutdown()

    def spans():
        s = _span_sink()
        return s, lambda: s.shutdown()

    def both():
        m, mp = _metrics_sink()
        s = _span_sink()

        class Both:
            def consume(self, recs):
                m.consume(recs)
                s.consume(recs)

            def force_flush(self, t):
                return s.force_flush(t)

        return Both(), lambda: (s.shutdown(), mp.shutdown())

    res: dict[str, list[float]] = {"store": [], "metrics": [], "spans": [], "metrics+spans": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(a.repeats):  # interleaved, so noise hits every configuration alike
            res["store"].append(_store_time(records, tmp))
            res["metrics"].append(_time_sink(metrics, records))
            res["spans"].append(_time_sink(spans, records))
            res["metrics+spans"].append(_time_sink(both, records))
    med = {k: statistics.median(v) for k, v in res.items()}
    print(f"{a.records:,} records, median of {a.repeats} runs (shared 2-core machine: compare ratios)")
    for k, v in med.items():
        print(f"  {k:14s} {a.records / v:>12,.0f} records/s  {v / a.records * 1e6:7.2f} us/record  "
              f"x{v / med['store']:.2f} of the store's time")
    pb, js = _payloads(records[:51_200])
    for name, payloads, ctype in (("protobuf", pb, "application/x-protobuf"), ("json", js, "application/json")):
        runs = [_time_receiver(payloads, ctype) for _ in range(a.repeats)]
        dt = statistics.median(t for t, _ in runs)
        n = runs[0][1]
        print(f"  receiver {name:8s} {n / dt:>12,.0f} spans/s decoded+mapped ({len(payloads)} payloads of 512)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""OTLP export of spans and metrics, received by real OTLP endpoints: oteltap (http/protobuf) and a gRPC server."""

import asyncio
import time
from decimal import Decimal

import pytest

import infermeter
from infermeter.agent.agent import Agent
from infermeter.collectors import FakeNvml, GpuCollector, Nvml, Sampler
from infermeter.config import Settings
from infermeter.errors import ConfigError
from infermeter.exporters.metrics import DURATION_BUCKETS, TOKEN_BUCKETS, TTFT_BUCKETS
from infermeter.exporters.otlp import OtlpConfig, parse_resource_attributes
from infermeter.records import InferenceRecord
from tests.otlp_helpers import GrpcCollector, Tap, attrs_of, free_port


def run(coro):
    return asyncio.run(coro)


def stored(agent):
    assert agent.force_flush(10)
    return agent.store.query("requests.recent", since_ns=0, limit=100)


def start_agent(**settings):
    """An agent process (as `infermeter run`/`proxy` make one): with an endpoint it exports, it stays an agent."""
    return Agent(Settings.load(environ={}, api="127.0.0.1:0", sampling=False, **settings)).start()


@infermeter.track(model="gpt-4o", provider="openai", tenant="acme")
def chat_gpt4o():
    return {"usage": {"prompt_tokens": 12, "completion_tokens": 7}, "choices": [{"finish_reason": "stop"}]}


PROXY_START = 1_750_000_000_123_456_789
HOSTED = InferenceRecord(start_time_ns=0, duration_s=0.4, request_model="gpt-4o", provider="openai", tenant="acme",
                         input_tokens=12, output_tokens=7, finish_reason="stop")
PROXIED = InferenceRecord(start_time_ns=PROXY_START, duration_s=0.25, source="proxy", request_model="sim-llama", provider="vllm",
                          server_address="127.0.0.1:8000", input_tokens=5, output_tokens=9, ttft_s=0.02, http_status=200,
                          endpoint="/v1/chat/completions")


def points(metric):
    data = getattr(metric, metric.WhichOneof("data"))
    return list(data.data_points)


def test_agent_exports_priced_spans_and_genai_metrics(db_path):
    async def main():
        async with Tap() as tap:
            a = await asyncio.to_thread(start_agent, db=db_path, endpoint=tap.url)
            a.sampler = Sampler([GpuCollector(Nvml(FakeNvml.standard()))], a.store, host="box")
            await asyncio.to_thread(a.sampler.tick, time.time_ns())
            a.pipeline.submit_record(HOSTED._replace(start_time_ns=time.time_ns()))
            a.pipeline.submit_record(PROXIED)
            try:
                rows = await asyncio.to_thread(stored, a)  # force_flush exports spans and metrics now
                spans = await tap.wait("spans", lambda s: len(tap.spans) >= 2)
                metrics = await tap.wait("metrics", lambda m: m.name == "hw.energy")
            finally:
                await asyncio.to_thread(a.shutdown)
            return a, rows, spans, metrics, tap.metrics

    a, rows, spans, _, metrics = run(main())
    row = {r["source"]: r for r in rows}["decorator"]
    assert row["cost_source"] == "catalog" and row["cost_usd"] > 0
    by_name = {s.name: s for s in spans}
    s = attrs_of(by_name["chat gpt-4o"])
    assert Decimal(s["gen_ai.usage.cost.amount"]) == row["cost_usd"]
    assert s["gen_ai.usage.cost"] == pytest.approx(float(row["cost_usd"]))
    assert (s["gen_ai.usage.cost.currency"], s["gen_ai.usage.cost.source"]) == ("USD", "catalog")
    assert (s["gen_ai.request.model"], s["gen_ai.provider.name"], s["gen_ai.usage.input_tokens"], s["gen_ai.usage.output_tokens"]) == (
        "gpt-4o", "openai", 12, 7)
    assert s["gen_ai.response.finish_reasons"] == ("stop",) and s["infermeter.tenant"] == "acme"
    assert s["infermeter.request_id"] == row["request_id"]  # the stored row and the span match
    p = by_name["chat sim-llama"]  # a proxy record has no live span: one is made from the record
    assert p.start_time_unix_nano == PROXY_START and p.end_time_unix_nano == PROXY_START + 250_000_000
    pa = attrs_of(p)
    assert (pa["server.address"], pa["server.port"], pa["http.response.status_code"], pa["infermeter.source"]) == ("127.0.0.1", 8000, 200, "proxy")
    assert pa["gen_ai.server.time_to_first_token"] == 0.02 and pa["gen_ai.usage.cost.source"] == "gpu_time"
    assert "gen_ai.usage.cost.amount" not in pa  # self-hosted: known only after attribution, never $0

    m = {x.name: x for x in metrics}
    tok = points(m["gen_ai.client.token.usage"])
    by_type = {(attrs_of(d)["gen_ai.request.model"], attrs_of(d)["gen_ai.token.type"]): d for d in tok}
    assert by_type[("gpt-4o", "input")].sum == 12 and by_type[("gpt-4o", "output")].sum == 7
    assert tuple(by_type[("gpt-4o", "input")].explicit_bounds) == TOKEN_BUCKETS
    assert m["gen_ai.client.token.usage"].unit == "{token}"
    for name in ("gen_ai.client.operation.duration", "gen_ai.server.request.duration"):
        assert m[name].unit == "s"
        assert all(tuple(d.explicit_bounds) == DURATION_BUCKETS for d in points(m[name]))
    (ttft,) = points(m["gen_ai.server.time_to_first_token"])
    assert tuple(ttft.explicit_bounds) == TTFT_BUCKETS and ttft.sum == 0.02
    (cost,) = [d for d in points(m["infermeter.cost"]) if attrs_of(d)["infermeter.cost.source"] == "catalog"]
    assert attrs_of(cost)["infermeter.tenant"] == "acme" and cost.as_double == pytest.approx(float(row["cost_usd"]))
    assert m["infermeter.cost"].unit == "USD"
    gpus = {attrs_of(d)["hw.id"]: d for d in points(m["hw.gpu.utilization"])}
    h100 = attrs_of(gpus["GPU-11111111-1111-1111-1111-111111111111"])
    assert h100["hw.type"] == "gpu" and h100["hw.name"] == "NVIDIA H100 80GB HBM3"
    assert gpus["GPU-11111111-1111-1111-1111-111111111111"].as_double == pytest.approx(0.87)
    assert {attrs_of(d)["hw.id"] for d in points(m["hw.energy"])} >= {"GPU-11111111-1111-1111-1111-111111111111"}
    assert "GPU-22222222-2222-2222-2222-222222222222" not in {attrs_of(d)["hw.id"] for d in points(m["hw.energy"])}  # no counter: no point
    for name in ("hw.gpu.memory.usage", "hw.gpu.memory.limit", "hw.power"):
        assert points(m[name]), name


def test_grpc_export_with_service_name_and_resource_attributes(db_path):
    with GrpcCollector() as col:
        a = start_agent(db=db_path, endpoint=col.url, otlp_protocol="grpc", service_name="checkout",
                        resource_attributes="deployment.environment=prod,team=ml%20infra")
        try:
            a.pipeline.submit_record(HOSTED._replace(start_time_ns=time.time_ns()))
            assert a.force_flush(10)
            assert a.exporters.config.protocol == "grpc"
        finally:
            a.shutdown()
    spans = [(rs.resource, sp) for req in col.trace_requests for rs in req.resource_spans for ss in rs.scope_spans for sp in ss.spans]
    (resource, span), = spans
    res = attrs_of(resource)
    assert (res["service.name"], res["deployment.environment"], res["team"]) == ("checkout", "prod", "ml infra")
    assert span.name == "chat gpt-4o" and attrs_of(span)["gen_ai.usage.cost.source"] == "catalog"
    names = {m.name for req in col.metric_requests for rm in req.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert {"gen_ai.client.token.usage", "gen_ai.client.operation.duration", "infermeter.cost"} <= names


def test_remote_worker_sends_spans_with_cost_and_no_store(tmp_path, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://placeholder")  # replaced below; proves env wiring

    async def main():
        async with Tap() as tap:
            monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", tap.url)
            await asyncio.to_thread(chat_gpt4o)  # the implicit default: a remote worker, not an agent
            w = infermeter.agent.runtime.current_agent()
            try:
                assert await asyncio.to_thread(infermeter.force_flush, 10)
                spans = await tap.wait("spans", lambda s: s.name == "chat gpt-4o")
                metrics = await tap.wait("metrics", lambda m: m.name == "gen_ai.client.token.usage")
            finally:
                await asyncio.to_thread(infermeter.shutdown)
            return w, spans, metrics

    w, spans, metrics = run(main())
    assert type(w).__name__ == "RemoteAgent" and w.store is None
    assert not list(tmp_path.glob("*.duckdb"))  # no store was opened
    s = attrs_of(spans[0])
    assert s["gen_ai.usage.cost.source"] == "catalog" and Decimal(s["gen_ai.usage.cost.amount"]) > 0
    assert metrics  # a generic OTLP backend (OTEL_EXPORTER_OTLP_ENDPOINT) gets the metrics too


def test_otlp_config_from_settings():
    s = Settings.load(environ={"INFERMETER_ENDPOINT": "127.0.0.1:9187"})
    cfg = OtlpConfig.from_settings(s, remote=True, environ={"INFERMETER_ENDPOINT": "127.0.0.1:9187"})
    assert cfg.traces_endpoint == "http://127.0.0.1:9187/v1/traces" and cfg.metrics_endpoint is None  # the agent makes metrics
    assert OtlpConfig.from_settings(s).metrics_endpoint == "http://127.0.0.1:9187/v1/metrics"  # an agent exporting upstream
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://tempo:4318/v1/traces",
           "OTEL_METRICS_EXPORTER": "none"}
    cfg = OtlpConfig.from_settings(Settings.load(environ=env), remote=True, environ=env)
    assert (cfg.traces_endpoint, cfg.metrics_endpoint) == ("http://tempo:4318/v1/traces", None)
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    cfg = OtlpConfig.from_settings(Settings.load(environ=env), environ=env)
    assert (cfg.protocol, cfg.traces_endpoint, cfg.metrics_endpoint) == ("grpc", "http://collector:4317", "http://collector:4317")
    assert OtlpConfig.from_settings(Settings.load(environ={})) is None
    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_PROTOCOL='http/json'"):
        Settings.load(environ={"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
    with pytest.raises(ConfigError, match="OTEL_RESOURCE_ATTRIBUTES"):
        parse_resource_attributes("a=1,oops")


def test_a_dead_endpoint_never_fails_the_call(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")  # seconds the exporter keeps retrying
    w = infermeter.configure(endpoint=f"http://127.0.0.1:{free_port()}")

    @infermeter.track(model="m")
    def f():
        return 42

    assert [f() for _ in range(1000)] == [42] * 1000
    w.force_flush(10)
    assert w.pipeline.stats()["processed"] == 1000 and w.pipeline.stats()["errors"] == 0
    assert w.spans.exported == 1000  # handed to the exporter, whose failures stay on its own thread


def test_delta_temporality_histograms_carry_only_the_new_points(db_path, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta")  # what Datadog prefers
    with GrpcCollector() as col:
        a = start_agent(db=db_path, endpoint=col.url, otlp_protocol="grpc")
        try:
            for n in (3, 2):
                for _ in range(n):
                    a.pipeline.submit_record(HOSTED._replace(start_time_ns=time.time_ns()))
                assert a.force_flush(10)
        finally:
            a.shutdown()

    def counts(req):
        return [dp.count for rm in req.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
                if m.name == "gen_ai.client.operation.duration" for dp in m.histogram.data_points]

    per_export = [c for c in (counts(r) for r in col.metric_requests) if c]
    assert per_export[:2] == [[3], [2]]
    temporality = {m.histogram.aggregation_temporality for r in col.metric_requests for rm in r.resource_metrics
                   for sm in rm.scope_metrics for m in sm.metrics if m.name == "gen_ai.client.token.usage"}
    assert temporality == {1}  # AGGREGATION_TEMPORALITY_DELTA


def test_histogram_cardinality_is_bounded():
    from infermeter.exporters.histograms import Histograms, HistogramSpec

    h = Histograms([HistogramSpec("x", "s", "", (1.0, 2.0))], max_points=3)
    with h.lock:
        for i in range(10):
            h.record("x", f"model-{i}", {"gen_ai.request.model": f"model-{i}"}, 1.5)
    points = h.snapshot()["x"]
    assert len(points) == 4  # three attribute sets, then everything else in the overflow point
    overflow = [p for p in points if p[0] == {"otel.metric.overflow": True}]
    assert overflow[0][3] == 7 and overflow[0][1] == [0, 7, 0]

"""The agent's OTLP receiver: real HTTP posts of http/protobuf and http/json payloads into a real store."""

import json
import urllib.request
from decimal import Decimal

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

import infermeter
from tests.otlp_helpers import gzipped, json_payload, json_span, pb_payload, post


def rows(agent):
    assert infermeter.force_flush(10)
    return agent.store.query("requests.recent", since_ns=0, limit=1000)


def by_model(agent):
    return {r["request_model"] or r["response_model"]: r for r in rows(agent)}


def traces(agent):
    return agent.api_url + "/v1/traces"


def test_genai_conventions_json_openlit_style(agent):
    span = json_span("chat my-finetune", {
        "gen_ai.operation.name": "chat", "gen_ai.system": "openai", "gen_ai.request.model": "my-finetune",
        "gen_ai.response.model": "my-finetune-0613", "gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 50,
        "gen_ai.server.time_to_first_token": 0.25, "gen_ai.request.is_stream": True,
        "gen_ai.response.finish_reasons": ["stop"], "server.address": "api.openai.com", "server.port": 443,
        "gen_ai.usage.cost": 0.0,  # OpenLIT's own price: $0 for a model it does not know
        "gen_ai.prompt": "secret prompt text",
    })
    status, body, headers = post(traces(agent), json_payload(span))
    assert status == 200 and json.loads(body) == {}
    assert headers["Content-Type"] == "application/json"
    r = by_model(agent)["my-finetune"]
    assert (r["source"], r["operation"], r["provider"], r["response_model"]) == ("otlp", "chat", "openai", "my-finetune-0613")
    assert (r["input_tokens"], r["output_tokens"], r["ttft_s"], r["streaming"]) == (100, 50, 0.25, True)
    assert (r["finish_reason"], r["server_address"], r["duration_s"]) == ("stop", "api.openai.com:443", 1.5)
    assert r["trace_id"] == 0x0AF7651916CD43DD8448EB211C80319C and r["span_id"] == 0xB7AD6B7169203331
    # a foreign cost without provenance is not trusted: never a silent $0
    assert r["cost_usd"] is None and r["cost_source"] != "provider"
    assert "secret prompt text" not in json.dumps(r, default=str)


def test_openllmetry_legacy_attributes_protobuf(agent):
    payload = pb_payload([
        ("openai.completion", {"llm.request.type": "completion", "gen_ai.system": "OpenAI", "gen_ai.request.model": "gpt-3.5-turbo-instruct",
                               "gen_ai.usage.prompt_tokens": 11, "gen_ai.usage.completion_tokens": 22, "llm.is_streaming": True}),
        ("openai.embeddings", {"llm.request.type": "embedding", "llm.vendor": "OpenAI", "llm.request.model": "text-embedding-3-small",
                               "llm.usage.prompt_tokens": 8}),
    ])
    status, body, headers = post(traces(agent), payload, "application/x-protobuf")
    assert status == 200 and headers["Content-Type"] == "application/x-protobuf"
    assert not ExportTraceServiceResponse.FromString(body).HasField("partial_success")
    got = by_model(agent)
    c, e = got["gpt-3.5-turbo-instruct"], got["text-embedding-3-small"]
    assert (c["operation"], c["provider"], c["input_tokens"], c["output_tokens"], c["streaming"]) == ("text_completion", "openai", 11, 22, True)
    assert (e["operation"], e["provider"], e["input_tokens"], e["output_tokens"]) == ("embeddings", "openai", 8, None)
    assert c["duration_s"] == 2.0 and c["span_id"] == 0x99


def test_vllm_llm_request_spans(agent):
    payload = pb_payload([("llm_request", {
        "gen_ai.response.model": "meta-llama/Llama-3.1-8B-Instruct", "gen_ai.request.id": "cmpl-1",
        "gen_ai.usage.prompt_tokens": 512, "gen_ai.usage.completion_tokens": 128,
        "gen_ai.latency.time_to_first_token": 0.042, "gen_ai.latency.e2e": 2.0, "gen_ai.latency.time_in_queue": 0.001,
    })], scope="vllm.llm_engine", kind=2)
    status, _, _ = post(traces(agent), payload, "application/x-protobuf")
    assert status == 200
    (r,) = rows(agent)
    assert (r["response_model"], r["provider"], r["input_tokens"], r["output_tokens"], r["ttft_s"]) == (
        "meta-llama/Llama-3.1-8B-Instruct", "vllm", 512, 128, 0.042)
    assert r["cost_source"] in (None, "gpu_time")  # self-hosted: priced by attribution, never at ingest


def test_non_model_spans_and_decorator_live_spans_are_ignored(agent):
    http = json_span("GET /health", {"http.route": "/health", "http.response.status_code": 200}, span_id="0000000000000001")
    tool = json_span("execute_tool search", {"gen_ai.operation.name": "execute_tool", "gen_ai.request.model": "x"}, span_id="0000000000000002")
    model = json_span("chat m", {"gen_ai.request.model": "m", "gen_ai.usage.input_tokens": 3}, span_id="0000000000000003")
    assert post(traces(agent), json_payload(http, tool, model))[0] == 200
    # the decorator's own live span: its record span carries the same call
    live = json_span("chat m", {"gen_ai.request.model": "m", "gen_ai.usage.input_tokens": 3}, span_id="0000000000000004")
    assert post(traces(agent), json_payload(live, scope="infermeter"))[0] == 200
    assert [r["span_id"] for r in rows(agent)] == [3]
    with urllib.request.urlopen(agent.api_url + "/api/v1/receiver") as resp:
        stats = json.loads(resp.read())
    assert (stats["spans"], stats["records"], stats["ignored"], stats["payloads"]) == (4, 1, 3, 2)


def test_our_own_record_span_keeps_every_field_and_a_provider_cost(agent):
    span = json_span("chat gpt-4o", {
        "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o", "gen_ai.provider.name": "openai",
        "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 5, "gen_ai.usage.cache_read.input_tokens": 4,
        "gen_ai.usage.cost": 0.0123, "gen_ai.usage.cost.amount": "0.012300001", "gen_ai.usage.cost.currency": "USD",
        "gen_ai.usage.cost.source": "provider", "infermeter.tenant": "acme", "infermeter.endpoint": "app.chat",
        "infermeter.request_id": 1234567, "infermeter.status": "cancelled", "infermeter.tokens_estimated": True,
        "infermeter.prompt_hash": -42, "http.response.status_code": 200, "http.request.body.size": 300,
        "http.response.body.size": 900, "error.type": None,
    })
    assert post(traces(agent), json_payload(span, scope="infermeter.records"))[0] == 200
    (r,) = rows(agent)
    assert r["cost_usd"] == Decimal("0.012300001") and (r["cost_currency"], r["cost_source"]) == ("USD", "provider")
    assert (r["tenant"], r["endpoint"], r["request_id"], r["status"], r["tokens_estimated"]) == ("acme", "app.chat", 1234567, "cancelled", True)
    assert (r["cached_tokens"], r["prompt_hash"], r["http_status"], r["request_bytes"], r["response_bytes"]) == (4, -42, 200, 300, 900)


def test_error_status(agent):
    span = json_span("chat m", {"gen_ai.request.model": "m", "error.type": "TimeoutError"}, error=True)
    assert post(traces(agent), json_payload(span))[0] == 200
    (r,) = rows(agent)
    assert (r["status"], r["error_type"]) == ("error", "TimeoutError")


@pytest.mark.parametrize("body, ctype, reason", [
    (b"{not json", "application/json", "not JSON"),
    (b"[1, 2]", "application/json", "resourceSpans"),
    (b'{"resourceSpans": {"a": 1}}', "application/json", "resourceSpans: expected a list"),
    (json_payload(json_span("x", {"gen_ai.request.model": "m"}, trace_id="xyz")), "application/json",
     "resourceSpans[0].scopeSpans[0].spans[0].traceId: expected 32 hex digits"),
    (json_payload({"name": "x", "traceId": "0af7651916cd43dd8448eb211c80319c", "startTimeUnixNano": "soon"}), "application/json",
     "startTimeUnixNano: expected an integer"),
    (b"\xff\xff\xff\xff garbage", "application/x-protobuf", "not an OTLP ExportTraceServiceRequest"),
    (b"hello", "text/plain", "unsupported Content-Type"),
])
def test_malformed_payloads_get_400_with_a_reason(agent, body, ctype, reason):
    status, out, _ = post(traces(agent), body, ctype)
    assert status == 400
    assert reason in json.loads(out)["error"]
    assert rows(agent) == []


def test_a_bad_span_is_rejected_alone(agent):
    good = json_span("chat m", {"gen_ai.request.model": "good", "gen_ai.usage.input_tokens": 3}, span_id="00000000000000aa")
    bad = json_span("chat m", {"gen_ai.request.model": "bad", "gen_ai.usage.input_tokens": -3}, span_id="00000000000000bb")
    backwards = json_span("chat m", {"gen_ai.request.model": "late"}, span_id="00000000000000cc", duration_ns=-5)
    status, body, _ = post(traces(agent), json_payload(good, bad, backwards))
    assert status == 200
    partial = json.loads(body)["partialSuccess"]
    assert partial["rejectedSpans"] == "2"
    assert "gen_ai.usage.input_tokens" in partial["errorMessage"] and "ends" in partial["errorMessage"]
    assert [r["request_model"] for r in rows(agent)] == ["good"]


def test_gzip_is_accepted_and_size_is_limited(db_path):
    a = infermeter.configure(db=db_path, api="127.0.0.1:0", otlp_max_bytes=4096, sampling=False)
    small = json_payload(json_span("chat m", {"gen_ai.request.model": "m"}))
    assert post(a.api_url + "/v1/traces", gzipped(small), headers={"Content-Encoding": "gzip"})[0] == 200
    big = json_payload(*[json_span("chat m", {"gen_ai.request.model": "m" * 200}, span_id=f"{i + 1:016x}") for i in range(40)])
    assert len(big) > 4096
    status, out, _ = post(a.api_url + "/v1/traces", big)
    assert status == 413 and "exceeds the limit of 4096" in json.loads(out)["error"]
    bomb = gzipped(b'{"resourceSpans": [' + b" " * 2_000_000 + b"]}")
    assert len(bomb) < 4096
    status, out, _ = post(a.api_url + "/v1/traces", bomb, headers={"Content-Encoding": "gzip"})
    assert status == 413 and "decompressed" in json.loads(out)["error"]
    status, out, _ = post(a.api_url + "/v1/traces", b"not gzip", headers={"Content-Encoding": "gzip"})
    assert status == 400 and "gzip" in json.loads(out)["error"]
    assert [r["request_model"] for r in rows(a)] == ["m"]


def test_a_full_pipeline_answers_503_and_takes_nothing(db_path):
    a = infermeter.configure(db=db_path, api="127.0.0.1:0", queue_size=2, sampling=False)
    spans = [json_span("chat m", {"gen_ai.request.model": "m"}, span_id=f"{i + 1:016x}") for i in range(5)]
    status, out, headers = post(a.api_url + "/v1/traces", json_payload(*spans))
    assert status == 503 and headers["Retry-After"] == "1"
    assert rows(a) == []


def test_metrics_posts_are_accepted_and_discarded(agent):
    status, body, _ = post(agent.api_url + "/v1/metrics", b"{}")
    assert status == 200 and body == b"{}"
    assert rows(agent) == []


def test_forwarding_sends_what_was_received_upstream(db_path):
    import asyncio

    from tests.otlp_helpers import Tap, attrs_of

    async def main():
        async with Tap() as tap:
            a = await asyncio.to_thread(infermeter.configure, db=db_path, api="127.0.0.1:0", sampling=False,
                                        otlp_forward=tap.url + "/v1/traces")
            payload = pb_payload([("chat m", {"gen_ai.request.model": "m", "vendor.extra": "kept"}),
                                  ("GET /x", {"http.route": "/x"})])
            status, _, _ = await asyncio.to_thread(post, a.api_url + "/v1/traces", payload, "application/x-protobuf")
            assert status == 200
            assert await asyncio.to_thread(infermeter.force_flush, 10)
            spans = await tap.wait("spans", lambda s: len(tap.spans) >= 2)
            stats = a.exporters.receiver.stats()
            await asyncio.to_thread(infermeter.shutdown)
            return spans, stats

    spans, stats = asyncio.run(main())
    by_name = {s.name: s for s in spans}
    assert set(by_name) == {"chat m", "GET /x"}  # everything accepted goes on, not only model calls
    assert attrs_of(by_name["chat m"])["vendor.extra"] == "kept"
    assert stats["forward"]["sent"] == 1 and stats["forward"]["failed"] == 0

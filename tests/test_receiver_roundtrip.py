"""Remote mode end to end: @track in another process with INFERMETER_ENDPOINT -> OTLP -> the agent's
receiver -> a store row that agrees with the record the worker made itself."""

import json
from decimal import Decimal

import pytest

import infermeter
from tests.conftest import run_python

WORKER = r'''
import json
import infermeter
from infermeter.agent import runtime

LIVE_SPANS = False
if LIVE_SPANS:  # the application has its own tracer provider: the decorator makes live spans
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    trace.set_tracer_provider(TracerProvider())

captured = []

class Capture:
    def consume(self, records):
        captured.extend(records)

@infermeter.track(model="gpt-4o", provider="openai", tenant="acme")
def chat():
    return {"model": "gpt-4o-2024-08-06", "choices": [{"finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1200, "completion_tokens": 300, "prompt_tokens_details": {"cached_tokens": 1000}}}

@infermeter.track(model="llama-3-8b", provider="vllm", endpoint="worker.stream")
def stream():
    yield "a"
    yield "b"
    yield "c"

@infermeter.track(model="gpt-4o-mini", provider="openai")
def fails():
    raise TimeoutError("upstream")

runtime.pipeline()  # starts the remote worker
w = runtime.current_agent()
assert type(w).__name__ == "RemoteAgent", type(w)
w.pipeline.sinks.insert(0, Capture())  # what the worker itself made, after pricing
chat()
list(stream())
try:
    fails()
except TimeoutError:
    pass
infermeter.shutdown()  # flushes the spans to the agent
print(json.dumps([r._asdict() for r in captured], default=str))
'''


def worker(agent, live_spans):
    code = WORKER.replace("LIVE_SPANS = False", f"LIVE_SPANS = {live_spans}")
    r = run_python(code, env={"INFERMETER_ENDPOINT": agent.api_url})
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def _normal(v, key):
    if key == "cost_usd" and v is not None:
        return Decimal(str(v)).quantize(Decimal("1e-9"))
    if key in ("trace_id", "span_id", "request_id", "prompt_hash") and v is not None:
        return int(v)
    return v


@pytest.mark.parametrize("live_spans", [False, True], ids=["no-tracer-provider", "app-tracer-provider"])
def test_worker_records_arrive_as_the_same_records(agent, live_spans):
    local = worker(agent, live_spans)
    assert len(local) == 3
    assert infermeter.force_flush(10)
    stored = {r["request_id"]: r for r in agent.store.query("requests.recent", since_ns=0, limit=100)}
    assert len(stored) == 3
    for rec in local:
        row = stored[int(rec["request_id"])]
        assert row["source"] == "otlp"
        differ = {k: (_normal(v, k), row[k]) for k, v in rec.items()
                  if k != "source" and _normal(v, k) != row[k] and not (k in ("trace_id", "span_id") and v is None)}
        assert differ == {}, rec["request_model"]
        if live_spans:
            assert row["trace_id"] == int(rec["trace_id"]) and row["span_id"] == int(rec["span_id"])
    by_model = {r["request_model"]: r for r in stored.values()}
    chat, stream, fails = by_model["gpt-4o"], by_model["llama-3-8b"], by_model["gpt-4o-mini"]
    assert chat["cost_source"] == "catalog" and chat["cost_usd"] > 0 and chat["cached_tokens"] == 1000
    assert (stream["tokens_estimated"], stream["output_tokens"], stream["streaming"], stream["cost_source"]) == (True, 3, True, "gpu_time")
    assert stream["endpoint"] == "worker.stream" and stream["ttft_s"] is not None
    assert (fails["status"], fails["error_type"]) == ("error", "TimeoutError")

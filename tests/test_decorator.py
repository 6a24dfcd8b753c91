import asyncio
import traceback

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import infermeter
from infermeter.agent import decorator as deco
from infermeter.agent import runtime


def rows(agent):
    assert infermeter.force_flush(10)
    return agent.store.query("requests.recent", since_ns=0, limit=1000)


OPENAI_RESULT = {"model": "llama-3-8b-instruct", "choices": [{"finish_reason": "stop"}],
                 "usage": {"prompt_tokens": 12, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 4}}}


@pytest.fixture
def sdk_spans(monkeypatch):
    """Install a real SDK TracerProvider for one test (and restore the global afterwards)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    yield exporter
    provider.shutdown()


def test_sync_bare_and_with_arguments(agent):
    @infermeter.track
    def bare():
        return "x"

    @infermeter.track(model="llama-3-8b", provider="vllm", tenant="acme")
    def chat():
        return OPENAI_RESULT

    assert bare() == "x"
    assert chat() is OPENAI_RESULT
    rs = {r["endpoint"].rsplit(".", 1)[-1]: r for r in rows(agent)}
    assert set(rs) == {"bare", "chat"}
    c = rs["chat"]
    assert (c["request_model"], c["response_model"], c["provider"], c["tenant"]) == ("llama-3-8b", "llama-3-8b-instruct", "vllm", "acme")
    assert (c["input_tokens"], c["output_tokens"], c["cached_tokens"], c["tokens_estimated"]) == (12, 7, 4, False)
    assert c["finish_reason"] == "stop" and c["status"] == "ok" and c["source"] == "decorator"
    assert rs["bare"]["input_tokens"] is None  # unknown stays unknown
    assert c["duration_s"] > 0 and c["cost_usd"] is None


def test_records_are_built_in_field_order_and_priced_as_made():
    """_record builds the tuple positionally (no NamedTuple frame): the same record as by name,
    with the cost provenance the pricing's at_source() gives (nothing without pricing)."""
    from infermeter.agent.usage import extract_usage
    from infermeter.cost.catalog import cached_catalog
    from infermeter.cost.pricing import PricingProcessor
    from infermeter.records import InferenceRecord

    pricing = PricingProcessor(cached_catalog())
    for provider, pr, cost in (("vLLM ", pricing, ("USD", "gpu_time")), (None, pricing, ("USD", "gpu_time")),
                               ("openai", pricing, (None, "unpriced")), ("vllm", None, (None, None))):
        spec = deco._Spec("llama-3-8b", provider, None, "acme", "mod.chat", None)
        call = deco.Call(spec)
        call.trace_id, call.span_id, call.parent_span_id, call.ttft_ns = 1, 2, 3, 40_000_000
        rec = deco._record(call, 1_500_000_000, extract_usage(OPENAI_RESULT), pr)
        assert rec == InferenceRecord(
            start_time_ns=call.start_ns, duration_s=1.5, operation="chat", source="decorator", status="ok", trace_id=1,
            span_id=2, ttft_s=0.04, request_model="llama-3-8b", response_model="llama-3-8b-instruct", provider=provider,
            endpoint="mod.chat", tenant="acme", finish_reason="stop", input_tokens=12, output_tokens=7, cached_tokens=4,
            cost_currency=cost[0], cost_source=cost[1], request_id=rec.request_id, parent_span_id=3)
        assert type(rec) is InferenceRecord and 0 <= rec.request_id < 2**63


def test_exception_propagates_unchanged_and_is_recorded(agent):
    err = ValueError("boom")

    @infermeter.track(model="m")
    def fails():
        raise err

    with pytest.raises(ValueError) as info:
        fails()
    assert info.value is err
    frames = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert frames[-1] == "fails"
    (r,) = rows(agent)
    assert (r["status"], r["error_type"]) == ("error", "ValueError")


def test_async_function(agent):
    @infermeter.track(model="m", operation="text_completion")
    async def complete(n):
        await asyncio.sleep(0.01)
        return {"usage": {"input_tokens": n, "output_tokens": 2}}

    async def main():
        return await asyncio.gather(*(complete(i) for i in range(5)))

    asyncio.run(main())
    rs = rows(agent)
    assert sorted(r["input_tokens"] for r in rs) == [0, 1, 2, 3, 4]
    assert all(r["operation"] == "text_completion" and r["duration_s"] >= 0.009 for r in rs)


def _chunks():
    yield {"choices": [{"delta": {"content": "a"}}]}
    yield {"choices": [{"delta": {"content": "b"}}]}
    yield {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}


def test_generator_ttft_and_usage_from_last_chunk(agent):
    @infermeter.track(model="m")
    def stream():
        yield from _chunks()

    assert len(list(stream())) == 3
    (r,) = rows(agent)
    assert r["streaming"] and r["ttft_s"] is not None and r["ttft_s"] <= r["duration_s"]
    assert (r["input_tokens"], r["output_tokens"], r["tokens_estimated"]) == (3, 2, False)


def test_generator_without_usage_is_estimated_and_early_close_is_cancelled(agent):
    @infermeter.track(model="m")
    def words():
        for w in ["a", "b", "c", "d"]:
            yield w

    assert list(words()) == ["a", "b", "c", "d"]
    g = words()
    next(g)
    next(g)
    g.close()
    rs = sorted(rows(agent), key=lambda r: r["status"])
    assert [(r["status"], r["output_tokens"], r["tokens_estimated"]) for r in rs] == [("cancelled", 2, True), ("ok", 4, True)]


def test_generator_raising_mid_stream(agent):
    @infermeter.track(model="m")
    def broken():
        yield "a"
        raise RuntimeError("upstream died")

    with pytest.raises(RuntimeError, match="upstream died"):
        list(broken())
    (r,) = rows(agent)
    assert (r["status"], r["error_type"], r["output_tokens"]) == ("error", "RuntimeError", 1)


def test_generator_send_and_return_value_pass_through(agent):
    @infermeter.track
    def echo():
        got = yield 1
        got2 = yield got * 10
        return got2

    g = echo()
    assert next(g) == 1
    assert g.send(4) == 40
    with pytest.raises(StopIteration) as stop:
        g.send("done")
    assert stop.value.value == "done"


def test_async_generator(agent):
    @infermeter.track(model="m")
    async def astream():
        for c in _chunks():
            await asyncio.sleep(0)
            yield c

    async def consume():
        return [c async for c in astream()]

    assert len(asyncio.run(consume())) == 3

    async def early():
        g = astream()
        await g.__anext__()
        await g.aclose()

    asyncio.run(early())
    rs = sorted(rows(agent), key=lambda r: r["status"])
    assert [(r["status"], r["output_tokens"]) for r in rs] == [("cancelled", 1), ("ok", 2)]


def test_handle_and_measure_context_manager(agent):
    @infermeter.track(model="m")
    def custom():
        call = infermeter.current_call()
        call.set_usage(input_tokens=100, output_tokens=20)
        call.set_tenant("t9")
        return object()

    custom()
    m = infermeter.measure(model="blk", endpoint="batch-job")
    with m as call:
        call.set_usage(5, 6)
        with m as inner:
            assert infermeter.current_call() is inner
        assert infermeter.current_call() is call
    assert infermeter.current_call() is None
    with pytest.raises(KeyError):
        with m:
            raise KeyError("x")
    rs = {(r["request_model"], r["status"], r["input_tokens"], r["tenant"]) for r in rows(agent)}
    assert rs == {("m", "ok", 100, "t9"), ("blk", "ok", 5, None), ("blk", "ok", None, None), ("blk", "error", None, None)}


def test_usage_callable_and_vllm_request_output(agent):
    class CompletionOutput:
        token_ids = [1, 2, 3]
        finish_reason = "length"

    class RequestOutput:
        prompt_token_ids = [9] * 11
        outputs = [CompletionOutput()]
        num_cached_tokens = 0

    @infermeter.track(model="vllm-model")
    def gen():
        return [RequestOutput(), RequestOutput()]

    @infermeter.track(model="x", usage=lambda r: (len(r), 1))
    def custom():
        return "hello"

    gen()
    custom()
    rs = {r["request_model"]: r for r in rows(agent)}
    assert (rs["vllm-model"]["input_tokens"], rs["vllm-model"]["output_tokens"], rs["vllm-model"]["finish_reason"]) == (22, 6, "length")
    assert (rs["x"]["input_tokens"], rs["x"]["output_tokens"]) == (5, 1)


def test_a_failing_usage_callable_never_breaks_the_call(agent):
    @infermeter.track(model="x", usage=lambda r: 1 / 0)
    def f():
        return 42

    assert f() == 42
    (r,) = rows(agent)
    assert r["status"] == "ok" and r["input_tokens"] is None


def test_no_span_without_sdk_provider(agent):
    @infermeter.track(model="m")
    def f():
        return trace.get_current_span()

    span = f()
    assert not span.is_recording()
    (r,) = rows(agent)
    assert r["trace_id"] is None


def test_span_is_current_across_await_and_yield(agent, sdk_spans):
    tracer = trace.get_tracer("user")

    @infermeter.track(model="llama", provider="vllm")
    def sync_call():
        with tracer.start_as_current_span("user-inner"):
            pass
        return OPENAI_RESULT

    @infermeter.track(model="llama")
    async def async_call():
        await asyncio.sleep(0)
        with tracer.start_as_current_span("user-inner-async"):
            await asyncio.sleep(0)
        return {}

    @infermeter.track(model="llama")
    def stream():
        for i in range(2):
            with tracer.start_as_current_span(f"user-chunk-{i}"):
                pass
            yield i

    sync_call()
    asyncio.run(async_call())
    for _ in stream():
        assert not trace.get_current_span().is_recording()  # the caller's context is not polluted
    finished = sdk_spans.get_finished_spans()
    spans = {s.name: s for s in finished}
    outer = [s for s in finished if s.name == "chat llama"]
    assert len(outer) == 3
    by_id = {s.context.span_id: s for s in outer}
    for inner in ("user-inner", "user-inner-async", "user-chunk-0", "user-chunk-1"):
        assert spans[inner].parent.span_id in by_id, inner
    s = by_id[spans["user-inner"].parent.span_id]
    assert s.kind == trace.SpanKind.CLIENT
    assert s.attributes["gen_ai.request.model"] == "llama"
    assert s.attributes["gen_ai.provider.name"] == "vllm"
    assert s.attributes["gen_ai.usage.input_tokens"] == 12
    assert s.attributes["gen_ai.usage.output_tokens"] == 7
    assert s.attributes["gen_ai.response.model"] == "llama-3-8b-instruct"
    recs = {r["span_id"] for r in rows(agent)}
    assert recs == set(by_id)  # records carry the span ids


def test_error_span_status(agent, sdk_spans):
    @infermeter.track(model="m")
    def f():
        raise TimeoutError()

    with pytest.raises(TimeoutError):
        f()
    (s,) = sdk_spans.get_finished_spans()
    assert s.status.status_code == trace.StatusCode.ERROR
    assert s.attributes["error.type"] == "TimeoutError"


def test_disabled_is_a_pass_through(db_path):
    infermeter.configure(db=db_path, enabled=False)

    @infermeter.track
    def f():
        return infermeter.current_call()

    assert f() is None
    assert runtime.pipeline() is None


def test_telemetry_failure_never_breaks_the_call(agent, monkeypatch):
    def explode(*a, **k):
        raise RuntimeError("pipeline exploded")

    monkeypatch.setattr(agent.pipeline, "submit", explode)

    @infermeter.track
    def f():
        return 7

    assert f() == 7


def test_queue_full_drops_and_counts_without_blocking(db_path):
    agent = infermeter.configure(db=db_path, api="off", queue_size=3, flush_interval_s=60)

    @infermeter.track
    def f():
        return 1

    for _ in range(10):
        f()
    assert agent.pipeline.dropped == 7
    infermeter.force_flush()
    assert agent.store.query("requests.count")[0]["n"] == 3


def test_implicit_default_with_unusable_db_warns_once_and_runs_on(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("INFERMETER_DB", str(tmp_path / "missing-dir" / "x.duckdb"))
    monkeypatch.setenv("INFERMETER_API", "off")

    @infermeter.track
    def f(x):
        return x * 2

    with caplog.at_level("WARNING", logger="infermeter"):
        assert [f(i) for i in range(3)] == [0, 2, 4]
    warnings = [r for r in caplog.records if "telemetry off" in r.getMessage()]
    assert len(warnings) == 1 and "does not exist" in warnings[0].getMessage()


def test_explicit_configure_with_unusable_db_raises(tmp_path):
    with pytest.raises(infermeter.StoreError, match="does not exist"):
        infermeter.configure(db=str(tmp_path / "missing-dir" / "x.duckdb"), api="off")


def test_implicit_default_with_bad_setting_warns_and_runs_on(monkeypatch, caplog):
    monkeypatch.setenv("INFERMETER_QUEUE_SIZE", "many")

    @infermeter.track
    def f():
        return "ok"

    with caplog.at_level("WARNING", logger="infermeter"):
        assert f() == "ok" and f() == "ok"
    assert sum("INFERMETER_QUEUE_SIZE" in r.getMessage() for r in caplog.records) == 1


def _watch_pricing(agent, monkeypatch):
    """(what the decorator submitted, what the sinks received, what quote() priced)."""
    sent, seen, quoted = [], [], []
    submit = agent.pipeline.submit_record
    monkeypatch.setattr(agent.pipeline, "submit_record", lambda rec: sent.append(rec) or submit(rec))
    monkeypatch.setattr(agent.pipeline, "sinks", [*agent.pipeline.sinks, type("S", (), {"consume": lambda self, b: seen.extend(b)})()])
    quote = agent.cost.pricing.quote
    monkeypatch.setattr(agent.cost.pricing, "quote", lambda rec: quoted.append(q := quote(rec)) or q)
    return sent, seen, quoted


def test_recorded_spans_carry_the_catalog_cost(agent, sdk_spans, monkeypatch):
    sent, seen, quoted = _watch_pricing(agent, monkeypatch)

    @infermeter.track(model="gpt-4o-mini", provider="openai")
    def hosted():
        return {"model": "gpt-4o-mini-2024-07-18", "usage": {"prompt_tokens": 1000, "completion_tokens": 500}}

    @infermeter.track(model="my-finetune", provider="openai")
    def unknown():
        return {"usage": {"prompt_tokens": 10, "completion_tokens": 5}}

    @infermeter.track(model="text-embedding-3-small", provider="openai", operation="embeddings")
    def embed():
        return {"usage": {"prompt_tokens": 1000}}  # no output tokens: not the nano-dollar path

    hosted()
    unknown()
    embed()
    spans = {s.attributes["gen_ai.request.model"]: s for s in sdk_spans.get_finished_spans()}
    (r,) = [r for r in rows(agent) if r["request_model"] == "gpt-4o-mini"]
    s = spans["gpt-4o-mini"]
    assert r["cost_source"] == "catalog" and r["cost_usd"] == agent.cost.catalog.model("gpt-4o-mini", "openai").cost_usd(1000, 500)
    assert s.attributes["gen_ai.usage.cost.amount"] == pytest.approx(float(r["cost_usd"]))
    assert (s.attributes["gen_ai.usage.cost.currency"], s.attributes["gen_ai.usage.cost.source"]) == ("USD", "catalog")
    assert spans["my-finetune"].attributes["gen_ai.usage.cost.source"] == "unpriced"
    assert "gen_ai.usage.cost.amount" not in spans["my-finetune"].attributes
    # priced once, as the records were made (the catalog's price; unpriced for the model it does not
    # know), not through quote(); the pipeline keeps both and counts them
    assert [x.cost_source for x in sent] == ["catalog", "unpriced", "catalog"]
    # the embedding through quote(), on the calling thread, because its span carries the cost
    assert quoted == sent[2:] and spans["text-embedding-3-small"].attributes["gen_ai.usage.cost.amount"] == pytest.approx(
        float(agent.cost.catalog.model("text-embedding-3-small", "openai").cost_usd(1000, 0)))
    assert [x is y for x, y in zip(seen, sent)] == [True, True, True]
    assert agent.cost.pricing.stats()["by_source"] == {"catalog": 2, "unpriced": 1}
    assert agent.cost.pricing.stats()["unpriced_models"] == {"my-finetune": 1}


def test_a_call_is_priced_where_it_is_made_without_a_span(agent, monkeypatch):
    sent, seen, quoted = _watch_pricing(agent, monkeypatch)
    reply = {"model": "gpt-4o-mini", "usage": {"prompt_tokens": 1000, "completion_tokens": 500,
                                                "prompt_tokens_details": {"cached_tokens": 400}}}

    @infermeter.track(model="gpt-4o-mini", provider="openai")
    def hosted():
        return reply

    @infermeter.track(model="text-embedding-3-small", provider="openai", operation="embeddings")
    def embed():
        return {"usage": {"prompt_tokens": 1000}}  # no output tokens: priced by the pipeline

    @infermeter.track(model="my-finetune")  # no provider, no address: a local model, GPU time
    def local():
        return {"usage": {"prompt_tokens": 10, "completion_tokens": 5}}

    hosted()
    reply["model"] = "gpt-4o"  # the response model changed: the catalog's price for it, not a stale one
    hosted()
    embed()
    local()
    assert infermeter.force_flush(10)
    cat = agent.cost.catalog
    want = [cat.model("gpt-4o-mini", "openai").cost_usd(1000, 500, 400), cat.model("gpt-4o", "openai").cost_usd(1000, 500, 400)]
    assert [(x.cost_usd, x.cost_source) for x in sent[:2]] == [(w, "catalog") for w in want] and want[0] != want[1]
    assert (sent[3].cost_usd, sent[3].cost_currency, sent[3].cost_source) == (None, "USD", "gpu_time")
    assert sent[2].cost_source is None and [q.operation for q in quoted] == ["embeddings"]  # by the pipeline only
    assert [x is y for x, y in zip(seen, sent)] == [True, True, False, True]  # kept, not copied, but the embedding
    assert (seen[2].cost_source, seen[2].cost_usd) == ("catalog", cat.model("text-embedding-3-small", "openai").cost_usd(1000, 0))
    assert agent.cost.pricing.stats()["by_source"] == {"catalog": 3, "gpu_time": 1}


def test_user_code_can_use_the_current_span_on_the_fast_path(agent, sdk_spans):
    """With only SDK Batch/Simple processors, @track builds its span itself (see agent/live_span.py);
    to user code inside the call it must still be a recording, current span that keeps what is set."""
    from infermeter.agent.live_span import LiveSpan

    tracer = trace.get_tracer("user")
    seen = {}

    @infermeter.track(model="llama-3-8b", provider="vllm")
    def f():
        span = trace.get_current_span()
        seen["type"] = type(span)
        assert span.is_recording()
        span.set_attribute("user.key", "v")
        span.set_attributes({"user.n": 3, "user.bad": object()})  # validated as the SDK validates
        span.add_event("retrieved", {"docs": 4})
        span.record_exception(KeyError("k"))
        span.update_name("chat llama-3-8b (renamed)")
        with tracer.start_as_current_span("user-child"):
            pass
        return OPENAI_RESULT

    with tracer.start_as_current_span("request") as outer:
        f()
    assert seen["type"] is LiveSpan
    spans = {s.name: s for s in sdk_spans.get_finished_spans()}
    s = spans["chat llama-3-8b (renamed)"]
    assert s.parent.span_id == outer.get_span_context().span_id and s.context.trace_id == outer.get_span_context().trace_id
    assert spans["user-child"].parent.span_id == s.context.span_id
    assert s.kind == trace.SpanKind.CLIENT and s.status.status_code == trace.StatusCode.UNSET
    a = s.attributes
    assert (a["user.key"], a["user.n"], a["user.bad"]) == ("v", 3, None)  # what the SDK does with an invalid value
    assert (a["gen_ai.operation.name"], a["gen_ai.request.model"], a["gen_ai.provider.name"]) == ("chat", "llama-3-8b", "vllm")
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (12, 7)
    assert [e.name for e in s.events] == ["retrieved", "exception"]
    assert s.events[1].attributes["exception.type"] == "KeyError"
    assert s.end_time > s.start_time and s.resource is not None
    (row,) = [r for r in rows(agent) if r["request_model"] == "llama-3-8b"]
    assert (row["trace_id"], row["span_id"]) == (s.context.trace_id, s.context.span_id)
    assert row["parent_span_id"] == outer.get_span_context().span_id


def test_custom_processors_and_samplers_keep_the_sdk_semantics(agent, monkeypatch):
    """A processor that works at on_start makes @track use the SDK's own Span; a sampler that
    drops makes no span; a processor added later is honoured from the next call on."""
    from opentelemetry.sdk.trace import SpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    class Stamp(SpanProcessor):
        def on_start(self, span, parent_context=None):
            span.set_attribute("stamped", True)

    @infermeter.track(model="m")
    def f():
        return type(trace.get_current_span()).__name__

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    assert f() == "LiveSpan"
    provider.add_span_processor(Stamp())  # added while in use: the next call takes the SDK path
    assert f() == "_Span"
    first, second = exporter.get_finished_spans()
    assert "stamped" not in first.attributes and second.attributes["stamped"] is True

    dropping = TracerProvider(sampler=ALWAYS_OFF)
    dropping.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", dropping)
    exporter.clear()
    assert f() == "NonRecordingSpan"
    assert exporter.get_finished_spans() == ()
    provider.shutdown()
    dropping.shutdown()


def test_fast_path_span_context_matches_the_sdks():
    """Ids, flags and trace state as the SDK's own Tracer would make them (root and child)."""
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    from infermeter.agent.live_span import fast_tracer

    for sampler in (None, ParentBased(TraceIdRatioBased(0.5))):
        provider = TracerProvider(sampler=sampler) if sampler else TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
        tracer = provider.get_tracer("t")
        fast = fast_tracer(tracer)
        assert fast is not None
        for _ in range(20):
            sdk_root, live_root = tracer.start_span("a"), fast.start("a", {})
            assert sdk_root.get_span_context().trace_flags.sampled == live_root.get_span_context().trace_flags.sampled \
                or sampler is not None  # a ratio sampler decides per trace id
            assert int(sdk_root.get_span_context().trace_flags) & ~1 == int(live_root.get_span_context().trace_flags) & ~1
            with trace.use_span(sdk_root):
                child = fast.start("b", {})
            assert child.get_span_context().trace_id == sdk_root.get_span_context().trace_id
            assert child.get_span_context().trace_flags == sdk_root.get_span_context().trace_flags  # parent-based
            sdk_root.end()
        provider.shutdown()


def test_a_forked_worker_draws_other_request_ids_than_its_parent():
    """Pre-forked workers (gunicorn) share the parent's RNG state unless it is reseeded at fork;
    the decorator's ids come from the same generator as new_request_id()."""
    from tests.conftest import run_python

    out = run_python(
        "import os\nfrom infermeter.records import new_request_id, random_bits\n"
        "r, w = os.pipe()\npid = os.fork()\n"
        "ids = (random_bits(63), new_request_id())\n"
        "if pid == 0:\n    os.write(w, repr(ids).encode()); os._exit(0)\n"
        "os.waitpid(pid, 0)\nprint(repr(ids)); print(os.read(r, 200).decode())"
    )
    assert out.returncode == 0, out.stderr
    parent, child = (eval(line) for line in out.stdout.splitlines())  # noqa: S307 - our own two tuples of ints
    assert len(set(parent) | set(child)) == 4

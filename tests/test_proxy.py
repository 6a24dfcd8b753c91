"""The sidecar proxy with OpenAI-compatible traffic: the official client as the caller, a real upstream."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import httpx
import openai

from infermeter.agent.proxy.exchange import Tap
from infermeter.records import Operation, Source, Status
from tests.otlp_helpers import attrs_of
from tests.proxy_helpers import make_proxy, proxy, upstream  # noqa: F401 - fixtures

CHAT = {"model": "test-model", "messages": [{"role": "user", "content": "three little words"}]}


def client(url: str, **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="sk-secret-123", max_retries=0, **kw)


def both(proxy, path: str, body: dict, **kw) -> tuple[httpx.Response, httpx.Response]:
    """The same request direct and through the proxy."""
    direct = httpx.post(proxy.upstream.url + path, json=body, timeout=30, **kw)
    proxied = httpx.post(proxy.url + path, json=body, timeout=30, **kw)
    return direct, proxied


def test_chat_json_matches_direct_and_is_recorded(proxy):
    r = client(proxy.url).chat.completions.create(**CHAT)
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (3, 5)
    assert r.choices[0].message.content == "w0 w1 w2 w3 w4 "
    direct, proxied = both(proxy, "/v1/chat/completions", CHAT)
    assert proxied.status_code == 200 and proxied.content == direct.content
    assert proxied.headers["content-type"] == direct.headers["content-type"]
    recs = proxy.records(2)
    rec = recs[0]
    assert (rec.source, rec.operation, rec.status, rec.http_status) == (Source.PROXY, Operation.CHAT, Status.OK, 200)
    assert (rec.request_model, rec.response_model, rec.endpoint) == ("test-model", "test-model", "/v1/chat/completions")
    assert (rec.input_tokens, rec.output_tokens, rec.tokens_estimated, rec.finish_reason) == (3, 5, False, "length")
    assert rec.streaming is False and rec.ttft_s is None
    assert rec.server_address == proxy.upstream.url.split("//")[1]
    assert rec.response_bytes == len(direct.content)
    assert recs[1].request_bytes == len(proxy.upstream.calls[-1].body)
    assert 0 < rec.duration_s < 10


def test_stream_without_usage_is_asked_upstream_and_hidden_from_the_client(proxy):
    body = {**CHAT, "stream": True}
    chunks = list(client(proxy.url).chat.completions.create(**body))
    assert all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "w0 w1 w2 w3 w4 "
    assert proxy.upstream.calls[-1].json["stream_options"] == {"include_usage": True}
    direct, proxied = both(proxy, "/v1/chat/completions", body)
    assert b'"usage"' not in proxied.content
    assert proxied.content == direct.content  # byte for byte what the client would have got
    assert "stream_options" not in proxy.upstream.calls[-2].json  # the direct request went as sent
    rec = proxy.records(2)[0]
    assert (rec.input_tokens, rec.output_tokens, rec.tokens_estimated) == (3, 5, False)
    assert rec.streaming is True and rec.finish_reason == "length"
    assert 0 < rec.ttft_s <= rec.duration_s


def test_stream_that_asks_for_usage_gets_it(proxy):
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    chunks = list(client(proxy.url).chat.completions.create(**body))
    assert chunks[-1].usage.completion_tokens == 5 and chunks[-1].choices == []
    direct, proxied = both(proxy, "/v1/chat/completions", body)
    assert proxied.content == direct.content
    assert proxy.records(2)[0].output_tokens == 5


def test_injection_off_means_estimated_tokens(make_proxy):
    p = make_proxy(inject_stream_usage=False)
    list(client(p.url).chat.completions.create(**CHAT, stream=True))
    assert "stream_options" not in p.upstream.calls[-1].json
    rec = p.record()
    assert rec.output_tokens == 5 and rec.tokens_estimated is True  # five content events
    assert rec.input_tokens is not None  # estimated from the prompt, flagged by the same field


def test_completions_json_and_stream(proxy):
    c = client(proxy.url)
    r = c.completions.create(model="test-model", prompt="one two", max_tokens=3)
    assert r.choices[0].text == "w0 w1 w2 " and r.usage.completion_tokens == 3
    parts = list(c.completions.create(model="test-model", prompt="one two", max_tokens=3, stream=True))
    assert "".join(p.choices[0].text for p in parts if p.choices) == "w0 w1 w2 "
    assert all(p.usage is None for p in parts)
    recs = proxy.records(2)
    assert [(r.operation, r.streaming, r.input_tokens, r.output_tokens, r.tokens_estimated) for r in recs] == [
        (Operation.TEXT_COMPLETION, False, 2, 3, False), (Operation.TEXT_COMPLETION, True, 2, 3, False)]


def test_embeddings(proxy):
    r = client(proxy.url).embeddings.create(model="embed-1", input=["a b", "c"])
    assert len(r.data) == 2 and r.usage.prompt_tokens == 3
    direct, proxied = both(proxy, "/v1/embeddings", {"model": "embed-1", "input": ["a b", "c"]})
    assert proxied.content == direct.content
    rec = proxy.records(2)[0]
    assert (rec.operation, rec.request_model, rec.input_tokens, rec.output_tokens) == (Operation.EMBEDDINGS, "embed-1", 3, 0)


def test_embeddings_reply_too_big_to_keep_whole_still_gives_usage(proxy):
    body = {"model": "embed-1", "input": ["x y"] * 40, "dimensions": 512}  # ~120 KiB of JSON
    direct, proxied = both(proxy, "/v1/embeddings", body)
    assert len(proxied.content) > Tap.KEEP_ALL and proxied.content == direct.content
    rec = proxy.record()
    assert (rec.input_tokens, rec.response_model, rec.response_bytes) == (80, "embed-1", len(direct.content))


def test_responses_api_json_and_stream(proxy):
    body = {"model": "resp-model", "input": "say it twice"}
    direct, proxied = both(proxy, "/v1/responses", body)
    assert proxied.content == direct.content
    direct_s, proxied_s = both(proxy, "/v1/responses", {**body, "stream": True})
    assert proxied_s.content == direct_s.content
    assert "stream_options" not in proxy.upstream.calls[-1].json  # only chat/completions get it
    recs = proxy.records(2)
    for rec, streaming in zip(recs, (False, True)):
        assert (rec.operation, rec.streaming, rec.input_tokens, rec.output_tokens, rec.cached_tokens) == (
            Operation.RESPONSES, streaming, 3, 3, 1)
    assert recs[1].ttft_s is not None


def test_method_path_query_headers_are_forwarded_and_hop_by_hop_dropped(proxy):
    r = httpx.put(proxy.url + "/echo?x=1&y=a%20b", content=b"raw-body",
                  headers={"X-Custom": "kept", "Authorization": "Bearer sk-abc", "Keep-Alive": "timeout=5",
                           "Connection": "keep-alive, X-Hop", "X-Hop": "dropped", "TE": "trailers"}, timeout=10)
    assert r.status_code == 200
    assert r.json() == {"method": "PUT", "raw_path": "/echo?x=1&y=a%20b", "body_len": 8}
    got = {k.lower(): v for k, v in proxy.upstream.calls[-1].headers.items()}
    assert got["x-custom"] == "kept" and got["authorization"] == "Bearer sk-abc"
    assert not {"keep-alive", "x-hop", "te"} & set(got)
    assert r.headers["x-upstream"] == "yes" and "x-private" not in r.headers  # named in the upstream's Connection
    rec = proxy.record()
    assert (rec.operation, rec.endpoint, rec.http_status, rec.request_bytes) == (Operation.OTHER, "/echo", 200, 8)
    assert rec.input_tokens is None and rec.tokens_estimated is False


def test_upstream_error_status_passes_through_and_counts_as_error(proxy):
    direct = httpx.get(proxy.upstream.url + "/status/404")
    proxied = httpx.get(proxy.url + "/status/404")
    assert proxied.status_code == 404 and proxied.content == direct.content
    rec = proxy.record()
    assert (rec.status, rec.error_type, rec.http_status) == (Status.ERROR, "404", 404)


def test_tenant_from_header_then_user_then_key_hash_never_the_key(proxy):
    c = client(proxy.url)
    c.chat.completions.create(**CHAT, extra_headers={"X-Infermeter-Tenant": "acme"})
    c.chat.completions.create(**CHAT, user="user-7")
    c.chat.completions.create(**CHAT)
    client(proxy.url).with_options(api_key="sk-other").chat.completions.create(**CHAT)
    recs = proxy.records(4)
    assert [r.tenant for r in recs[:2]] == ["acme", "user-7"]
    assert recs[2].tenant.startswith("key-") and recs[3].tenant.startswith("key-") and recs[2].tenant != recs[3].tenant
    rows = proxy.agent.store.query("requests.recent", since_ns=0, limit=100)
    assert len(rows) == 4
    assert "sk-secret-123" not in json.dumps(rows, default=str) and "secret" not in recs[2].tenant


def test_prompt_hash_is_stable_and_optional(make_proxy):
    p = make_proxy()
    c = client(p.url)
    c.chat.completions.create(**CHAT)
    c.chat.completions.create(**CHAT, max_tokens=2)  # same prompt, other parameters
    c.chat.completions.create(model="test-model", messages=[{"role": "user", "content": "something else"}])
    h = [r.prompt_hash for r in p.records(3)]
    assert h[0] == h[1] != h[2] and all(isinstance(x, int) and -2**63 <= x < 2**63 for x in h)
    q = make_proxy(hash_prompts=False)
    client(q.url).chat.completions.create(**CHAT)
    assert q.records(4)[3].prompt_hash is None


def test_cost_reported_by_the_provider_is_kept(proxy):
    client(proxy.url).chat.completions.create(model="priced", messages=CHAT["messages"])
    rec = proxy.record()
    assert (rec.cost_usd, rec.cost_currency, rec.cost_source) == (Decimal("0.00042"), "USD", "provider")


def test_gzipped_reply_passes_as_is_and_its_usage_is_read(proxy):
    r = client(proxy.url).chat.completions.create(model="gzipped", messages=CHAT["messages"])
    assert r.usage.completion_tokens == 5  # the client got the compressed bytes and decoded them
    direct, proxied = both(proxy, "/v1/chat/completions", {**CHAT, "model": "gzipped"})
    assert proxied.headers["content-encoding"] == "gzip" and proxied.content == direct.content
    assert [(rec.input_tokens, rec.output_tokens, rec.tokens_estimated) for rec in proxy.records(2)] == [(3, 5, False)] * 2


def test_route_override_picks_the_protocol(make_proxy):
    p = make_proxy(proxy_routes=(("/custom/*", "tgi"),))
    r = httpx.post(p.url + "/custom/textgen", json={"inputs": "a b c d", "parameters": {"max_new_tokens": 2}})
    assert r.json()["generated_text"] == "t0 t1 "
    rec = p.record()
    assert (rec.operation, rec.input_tokens, rec.output_tokens, rec.provider) == (Operation.TEXT_COMPLETION, 4, 2, "tgi")


def test_records_reach_the_store(proxy):
    list(client(proxy.url).chat.completions.create(**CHAT, stream=True))
    proxy.records(1)
    rows = proxy.agent.store.query("requests.recent", since_ns=0, limit=10)
    assert len(rows) == 1
    row = rows[0]
    assert (row["source"], row["endpoint"], row["output_tokens"], row["streaming"]) == ("proxy", "/v1/chat/completions", 5, True)


def test_one_span_per_request_in_the_callers_trace(upstream, db_path):
    """Through the agent's OTLP export (a real receiver): each proxied request is one span with the
    record's ids, in the trace named by the incoming traceparent."""
    from infermeter.agent.agent import Agent
    from infermeter.agent.proxy import ProxyComponent
    from infermeter.config import Settings
    from tests.otlp_helpers import Tap as OtlpTap

    parent_trace = 0x0AF7651916CD43DD8448EB211C80319C
    tp = f"00-{parent_trace:032x}-{0xB7AD6B7169203331:016x}-01"

    async def main():
        async with OtlpTap() as tap:
            settings = Settings.load(environ={}, db=db_path, api="off", sampling=False, endpoint=tap.url,
                                     upstream=upstream.url, listen="127.0.0.1:0")
            agent = await asyncio.to_thread(lambda: Agent(settings).start())
            try:
                proxy = ProxyComponent(settings, agent.pipeline)
                await asyncio.to_thread(agent.add_component, proxy)
                async with httpx.AsyncClient() as c:
                    r = await c.post(proxy.url + "/v1/chat/completions", json=CHAT, headers={"traceparent": tp})
                    assert r.status_code == 200
                await asyncio.to_thread(agent.force_flush)
                spans = await tap.wait("spans", lambda sp: sp.name == "chat test-model")
                rows = await asyncio.to_thread(agent.store.query, "requests.recent", since_ns=0, limit=10)
            finally:
                await asyncio.to_thread(agent.shutdown)
            return spans, rows

    spans, rows = asyncio.run(main())
    (span,) = spans
    (row,) = rows
    assert int.from_bytes(span.trace_id, "big") == parent_trace == row["trace_id"]
    assert int.from_bytes(span.span_id, "big") == row["span_id"]
    assert int.from_bytes(span.parent_span_id, "big") == 0xB7AD6B7169203331 == row["parent_span_id"]  # the caller's span
    attrs = attrs_of(span)
    assert attrs["gen_ai.usage.output_tokens"] == 5 and attrs["gen_ai.request.model"] == "test-model"
    # the upstream is told the proxy's span is its parent, in the caller's trace
    assert upstream.calls[-1].headers["traceparent"] == f"00-{parent_trace:032x}-{row['span_id']:016x}-01"


def _sent(upstream) -> dict[str, str]:
    return {k.lower(): v for k, v in upstream.calls[-1].headers.items()}


def test_upstream_gets_a_traceparent_naming_the_proxys_span(proxy, upstream):
    """W3C trace context upstream: the model server's spans become children of the proxy's span."""
    tid, parent = 0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7
    cases = [  # what the client sends -> does the trace continue (with its tracestate)?
        ({"traceparent": f"00-{tid:032x}-{parent:016x}-01", "tracestate": "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"}, True),
        ({"traceparent": f"00-{tid:032x}-{parent:016x}-00"}, True),  # not sampled: the flag passes on
        ({}, False),
        ({"traceparent": "garbage", "tracestate": "congo=t61rcWkgMzE"}, False),
        ({"traceparent": f"00-{tid:032X}-{parent:016x}-01"}, False),  # upper-case hex is invalid
        ({"traceparent": f"00-{0:032x}-{parent:016x}-01"}, False),  # all-zero trace id
        ({"traceparent": f"00-{tid:032x}-{0:016x}-01"}, False),  # all-zero parent id
        ({"traceparent": f"ff-{tid:032x}-{parent:016x}-01"}, False),  # version ff is invalid
        ({"traceparent": f"00-{tid:032x}-{parent:016x}-01-extra"}, False),  # version 00 has exactly 4 fields
        ({"traceparent": f"01-{tid:032x}-{parent:016x}-01-future"}, True),  # a later version: its first 4 fields
        ({"tracestate": "congo=t61rcWkgMzE"}, False),  # tracestate alone names no parent
    ]
    sent = []
    for headers, _ in cases:
        assert httpx.post(proxy.url + "/v1/chat/completions", json=CHAT, headers=headers).status_code == 200
        sent.append(_sent(upstream))
    records = proxy.records(len(cases))
    assert len({r.trace_id for r in records}) == len(cases) - 2  # the two continued traces share the client's
    for (headers, continued), got, rec in zip(cases, sent, records):
        version, trace, span, flags = got["traceparent"].split("-")
        assert (version, len(trace), len(span), len(flags)) == ("00", 32, 16, 2), got["traceparent"]
        assert int(span, 16) == rec.span_id and int(trace, 16) == rec.trace_id, headers  # the record's own span
        assert rec.parent_span_id == (parent if continued else None), headers
        if continued:
            assert rec.trace_id == tid and rec.span_id != parent
            assert flags == headers["traceparent"][53:55]
            assert got.get("tracestate") == headers.get("tracestate")  # passed on untouched
        else:
            assert rec.trace_id != tid and flags == "01"
            assert "tracestate" not in got  # a new trace: the caller's vendor state no longer applies


def test_every_record_has_its_own_span_id_and_the_callers_trace_id(proxy):
    tid = 0x1234567890ABCDEF1234567890ABCDEF
    httpx.post(proxy.url + "/v1/chat/completions", json=CHAT, headers={"traceparent": f"00-{tid:032x}-{1:016x}-01"})
    httpx.post(proxy.url + "/v1/chat/completions", json=CHAT, headers={"traceparent": "garbage"})
    httpx.post(proxy.url + "/v1/chat/completions", json=CHAT)
    a, b, c = proxy.records(3)
    assert a.trace_id == tid and b.trace_id not in (None, tid) and c.trace_id not in (None, tid, b.trace_id)
    assert len({a.span_id, b.span_id, c.span_id}) == 3 and all(0 < r.span_id < 2**64 for r in (a, b, c))

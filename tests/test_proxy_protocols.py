"""Wire protocols through the proxy (Anthropic, Ollama, TGI, KServe v2) and their pieces on their own."""

from __future__ import annotations

import json

import httpx
import pytest

from infermeter.agent.proxy.exchange import Tap, key_hash, response_kind
from infermeter.agent.proxy.protocols import PROTOCOLS, Body, hash_prompt
from infermeter.agent.proxy.protocols.base import find_value
from infermeter.agent.proxy.routes import Router
from infermeter.agent.proxy.sse import UsageStripper
from infermeter.config import PROXY_PROTOCOLS
from infermeter.records import Operation
from tests.proxy_helpers import make_proxy, proxy, upstream  # noqa: F401 - fixtures


def both(proxy, path: str, body: dict) -> bytes:
    direct = httpx.post(proxy.upstream.url + path, json=body, timeout=30)
    proxied = httpx.post(proxy.url + path, json=body, timeout=30)
    assert proxied.status_code == direct.status_code == 200
    assert proxied.content == direct.content
    assert proxied.headers["content-type"] == direct.headers["content-type"]
    return proxied.content


# -- through the proxy, against a real upstream -------------------------------------------------------

def test_anthropic_json_and_sse(proxy):
    body = {"model": "claude-x", "max_tokens": 3, "system": "be brief", "messages": [{"role": "user", "content": "hi there"}],
            "metadata": {"user_id": "u-9"}}
    both(proxy, "/v1/messages", body)
    stream = both(proxy, "/v1/messages", {**body, "stream": True})
    assert stream.count(b"event: content_block_delta") == 3
    for rec, streaming in zip(proxy.records(2), (False, True)):
        assert (rec.operation, rec.provider, rec.request_model, rec.response_model) == (Operation.CHAT, "anthropic", "claude-x", "claude-x")
        assert (rec.input_tokens, rec.cached_tokens, rec.output_tokens, rec.finish_reason) == (4 + 2, 2, 3, "max_tokens")
        assert (rec.streaming, rec.tokens_estimated, rec.tenant) == (streaming, False, "u-9")
    assert proxy.records(2)[1].ttft_s is not None


def test_ollama_generate_streams_ndjson_by_default_chat_json_and_embed(proxy):
    lines = both(proxy, "/api/generate", {"model": "llama3", "prompt": "why is the sky", "options": {"num_predict": 3}})
    assert len(lines.splitlines()) == 4
    both(proxy, "/api/chat", {"model": "llama3", "stream": False, "messages": [{"role": "user", "content": "a b"}]})
    both(proxy, "/api/embed", {"model": "nomic", "input": "one two three"})
    gen, chat, emb = proxy.records(3)
    assert (gen.operation, gen.streaming, gen.input_tokens, gen.output_tokens, gen.finish_reason) == (
        Operation.TEXT_COMPLETION, True, 4, 3, "length")
    assert gen.ttft_s is not None and gen.provider == "ollama"
    assert (chat.operation, chat.streaming, chat.input_tokens, chat.output_tokens) == (Operation.CHAT, False, 2, 3)
    assert (emb.operation, emb.input_tokens, emb.request_model) == (Operation.EMBEDDINGS, 3, "nomic")
    assert not any(r.tokens_estimated for r in (gen, chat, emb))


def test_tgi_generate_and_generate_stream(proxy):
    body = {"inputs": "one two three", "parameters": {"max_new_tokens": 2}}
    both(proxy, "/generate", body)
    both(proxy, "/generate_stream", body)
    plain, streamed = proxy.records(2)
    assert (plain.input_tokens, plain.output_tokens, plain.tokens_estimated, plain.finish_reason) == (3, 2, False, "length")
    # the stream reports generated tokens only: the input is estimated from the prompt, and says so
    assert (streamed.output_tokens, streamed.tokens_estimated, streamed.streaming) == (2, True, True)
    assert streamed.input_tokens >= 1 and streamed.ttft_s is not None


def test_kserve_v2_model_from_path(proxy):
    body = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}
    both(proxy, "/v2/models/resnet/infer", body)
    rec = proxy.record()
    assert (rec.operation, rec.request_model, rec.response_model, rec.provider) == (Operation.INFERENCE, "resnet", "resnet:1", "kserve")
    assert (rec.input_tokens, rec.output_tokens, rec.tokens_estimated) == (None, None, False)
    assert rec.endpoint == "/v2/models/resnet/infer"


# -- the pieces ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("path,name", [
    ("/v1/chat/completions", "openai"), ("/openai/v1/chat/completions", "openai"), ("/api/v1/chat/completions", "openai"),
    ("/v1/completions", "openai"), ("/v1/embeddings", "openai"), ("/v1/responses", "openai"), ("/completions", "openai"),
    ("/v1/messages", "anthropic"), ("/api/generate", "ollama"), ("/api/chat", "ollama"), ("/api/embed", "ollama"),
    ("/generate", "tgi"), ("/generate_stream", "tgi"), ("/v2/models/bert/infer", "kserve"),
    ("/v2/models/bert/versions/3/infer", "kserve"), ("/health", "generic"), ("/v1/models", "generic"), ("/", "generic"),
])
def test_router_defaults(path, name):
    assert Router()(path).name == name


def test_router_overrides_win_and_prefixes_match():
    r = Router([("/v1/chat/completions", "generic"), ("/llm/*", "ollama")])
    assert r("/v1/chat/completions").name == "generic"
    assert r("/llm/api/x").name == "ollama" and r("/llmx").name == "generic"


def test_config_knows_every_protocol():
    assert set(PROXY_PROTOCOLS) == set(PROTOCOLS)


def test_key_hash_is_short_stable_and_not_the_key():
    a, b = key_hash("Bearer sk-live-abcdef"), key_hash("sk-live-abcdef")
    assert a == b and a.startswith("key-") and len(a) == 16 and "abcdef" not in a
    assert key_hash("Bearer sk-other") != a


def test_prompt_hash_is_signed_64_bit_and_order_independent_for_keys():
    h = hash_prompt([{"role": "user", "content": "x"}])
    assert h == hash_prompt([{"content": "x", "role": "user"}]) and -2**63 <= h < 2**63
    assert hash_prompt("x") != hash_prompt("y") and hash_prompt(None) is None


@pytest.mark.parametrize("ct,kind", [("text/event-stream; charset=utf-8", "sse"), ("application/x-ndjson", "ndjson"),
                                     ("application/json", "json"), ("text/plain", "other"), (None, "other")])
def test_response_kind(ct, kind):
    assert response_kind(ct) == kind


def _chunk(i: int) -> bytes:
    return b'data: {"choices":[{"index":0,"delta":{"content":"tok%d "},"finish_reason":null}],"usage":null}\n\n' % i


def test_usage_stripper_drops_the_usage_event_and_null_usage_across_odd_chunking():
    usage_ev = b'data: {"id":"1","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\n'
    stream = _chunk(0) + _chunk(1) + usage_ev + b"data: [DONE]\n\n"
    expected = (_chunk(0) + _chunk(1)).replace(b',"usage":null', b"") + b"data: [DONE]\n\n"
    for size in (1, 7, 64, len(stream)):
        s = UsageStripper()
        out = b"".join(s.feed(stream[i:i + size]) for i in range(0, len(stream), size)) + s.flush()
        assert out == expected, size
    crlf = stream.replace(b"\n", b"\r\n")
    s = UsageStripper()
    assert s.feed(crlf) + s.flush() == expected.replace(b"\n", b"\r\n")
    spaced = b'data: {"a": 1, "usage": null}\n\ndata: {"usage": null, "b": 2}\n\n'
    assert UsageStripper().feed(spaced) == b'data: {"a": 1}\n\ndata: {"b": 2}\n\n'


def test_a_long_stream_is_read_from_its_head_and_tail():
    tap = Tap()
    head = b'event: message_start\ndata: {"type":"message_start","message":{"model":"m","usage":{"input_tokens":7}}}\n\n'
    tap.add(head)
    for i in range(3000):
        tap.add(b'data: {"type":"content_block_delta","delta":{"type":"text_delta","text":"t%d"}}\n\n' % i)
    tap.add(b'data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":3000}}\n\n')
    body = tap.body("sse", 3000, None)
    assert not body.complete and len(body.head) + len(body.tail) <= Tap.HEAD + Tap.TAIL
    x = PROTOCOLS["anthropic"].extract("/v1/messages", {"model": "m"}, body)
    assert (x.input_tokens, x.output_tokens, x.finish_reason, x.malformed) == (7, 3000, "end_turn", False)


def test_ollama_stream_cut_in_the_middle_is_read_from_its_tail():
    tap = Tap()
    for i in range(5000):
        tap.add(b'{"model":"m","response":"x%d","done":false}\n' % i)
    tap.add(b'{"model":"m","response":"","done":true,"done_reason":"stop","prompt_eval_count":9,"eval_count":5000}\n')
    x = PROTOCOLS["ollama"].extract("/api/generate", None, tap.body("ndjson", 5000, None))
    assert (x.input_tokens, x.output_tokens, x.finish_reason, x.response_model) == (9, 5000, "stop", "m")


def test_find_value_reads_the_last_key_of_a_fragment():
    frag = b'..."model":"a"}], "model" : "b", "usage": {"prompt_tokens": 5, "total_tokens": 5}}'
    assert find_value(frag, "usage") == {"prompt_tokens": 5, "total_tokens": 5}
    assert find_value(frag, "model") == "b" and find_value(frag, "nothing") is None
    assert find_value(b'"usage":{"cut', "usage") is None


def test_openai_prepare_adds_usage_only_where_needed():
    p = PROTOCOLS["openai"]
    body = b'{"model":"m","stream":true,"messages":[]}  '
    new = p.prepare("/v1/chat/completions", body)
    assert json.loads(new)["stream_options"] == {"include_usage": True} and new.startswith(b'{"model":"m","stream":true,"messages":[]')
    assert p.prepare("/v1/chat/completions", b'{"model":"m","stream":false}') is None
    assert p.prepare("/v1/embeddings", b'{"stream":true}') is None
    assert p.prepare("/v1/chat/completions", b'{"stream":true,"stream_options":{"include_usage":true}}') is None
    merged = json.loads(p.prepare("/v1/completions", b'{"stream":true,"stream_options":{"continuous_usage_stats":true}}'))
    assert merged["stream_options"] == {"continuous_usage_stats": True, "include_usage": True}
    assert json.loads(p.prepare("/v1/completions", b'{"stream":true,"stream_options":null}'))["stream_options"] == {"include_usage": True}
    assert p.prepare("/v1/chat/completions", b'{"stream":true, "x": [1, 2') is None  # not JSON: untouched


def test_malformed_json_body_is_flagged_not_guessed():
    x = PROTOCOLS["openai"].extract("/v1/chat/completions", None, Body(b'{"usage": {"prompt', kind="json"))
    assert x.malformed and x.input_tokens is None

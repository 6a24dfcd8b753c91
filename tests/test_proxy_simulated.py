"""The simulated OpenAI-compatible server (the demo's model server), alone and behind the proxy."""

from __future__ import annotations

import openai
import pytest

from infermeter.agent.proxy import ProxyComponent
from infermeter.agent.simulated_server import SimulatedServer, count_tokens
from tests.proxy_helpers import ListSink


@pytest.fixture
def sim():
    s = SimulatedServer(seed=1).start()
    yield s
    s.shutdown()


def test_it_serves_the_openai_wire_format_and_says_it_is_simulated(sim):
    c = openai.OpenAI(base_url=sim.url + "/v1", api_key="x", max_retries=0)
    assert {m.owned_by for m in c.models.list()} == {"infermeter-simulated"}
    r = c.chat.completions.create(model="sim-llama-3.1-8b", messages=[{"role": "user", "content": "x" * 40}], max_tokens=3)
    assert r.system_fingerprint == "infermeter-simulated" and r.usage.prompt_tokens == 10 and r.usage.completion_tokens <= 3
    plain = list(c.chat.completions.create(model="sim-qwen2.5-32b", messages=[{"role": "user", "content": "hi"}], stream=True))
    assert all(ch.usage is None for ch in plain) and plain[-1].choices[0].finish_reason in ("stop", "length")
    asked = list(c.chat.completions.create(model="sim-qwen2.5-32b", messages=[{"role": "user", "content": "hi"}], stream=True,
                                           stream_options={"include_usage": True}))
    assert asked[-1].choices == [] and asked[-1].usage.completion_tokens == len(asked) - 2
    e = c.embeddings.create(model="sim-bge-embed", input=["abcd" * 5, "efgh"])
    assert len(e.data) == 2 and e.usage.prompt_tokens == 6
    with pytest.raises(openai.NotFoundError, match="simulated"):
        c.chat.completions.create(model="gpt-nope", messages=[{"role": "user", "content": "hi"}])


def test_count_tokens():
    assert count_tokens([{"role": "user", "content": "abcdefgh"}]) == 2 and count_tokens("") == 1


def test_behind_the_proxy_every_request_is_recorded_exactly(sim, agent):
    sink = ListSink()
    agent.pipeline.sinks.append(sink)
    proxy = ProxyComponent(agent.settings.replace(upstream=sim.url, listen="127.0.0.1:0"), agent.pipeline).start()
    try:
        c = openai.OpenAI(base_url=proxy.url + "/v1", api_key="x", max_retries=0)
        chunks = list(c.chat.completions.create(model="sim-qwen2.5-32b", messages=[{"role": "user", "content": "y" * 80}],
                                                stream=True, max_tokens=6))
        assert all(ch.usage is None for ch in chunks)  # the usage the proxy asked for stays hidden
        agent.force_flush()
    finally:
        proxy.shutdown()
    (rec,) = sink.records
    assert (rec.request_model, rec.input_tokens, rec.tokens_estimated) == ("sim-qwen2.5-32b", 20, False)
    assert rec.output_tokens == sum(1 for ch in chunks if ch.choices and ch.choices[0].delta.content)

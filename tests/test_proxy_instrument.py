"""``infermeter.instrument_app``: the proxy's extraction inside a FastAPI model server, served by uvicorn."""

from __future__ import annotations

import asyncio
import socket
import threading

import httpx
import openai
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import infermeter
from infermeter.records import Operation, Status
from tests.proxy_helpers import ListSink


def model_server() -> FastAPI:
    """A tiny OpenAI-compatible FastAPI server (the shape of llama-cpp-python's or vLLM's)."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(req: dict):
        n = req.get("max_tokens") or 3
        endless = req.get("model") == "endless"
        if not req.get("stream"):
            return {"id": "c1", "object": "chat.completion", "model": req["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "x " * n}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 7, "completion_tokens": n, "total_tokens": 7 + n}}

        async def events():
            for i in range(10**6 if endless else n):
                yield b'data: {"choices":[{"index":0,"delta":{"content":"t%d "},"finish_reason":null}]}\n\n' % i
                if endless:
                    await asyncio.sleep(0.01)
            if (req.get("stream_options") or {}).get("include_usage"):
                yield b'data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":%d}}\n\n' % n
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.get("/boom")
    async def boom():
        raise RuntimeError("model crashed")

    return app


@pytest.fixture
def serve():
    servers = []

    def start(app) -> str:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)  # bound before the thread starts: clients queue until uvicorn accepts
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        t = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        t.start()
        servers.append((server, t, sock))
        return "http://127.0.0.1:%d" % sock.getsockname()[1]

    yield start
    for server, t, sock in servers:
        server.should_exit = True
        t.join(10)
        sock.close()


def test_records_through_the_agent_with_the_server_span_ids(agent, serve, monkeypatch):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    sink = ListSink()
    agent.pipeline.sinks.append(sink)
    url = serve(infermeter.instrument_app(model_server()))
    c = openai.OpenAI(base_url=url + "/v1", api_key="sk-k", max_retries=0)
    r = c.chat.completions.create(model="m1", messages=[{"role": "user", "content": "hi"}], user="u-1")
    assert r.usage.completion_tokens == 3
    chunks = list(c.chat.completions.create(model="m1", messages=[{"role": "user", "content": "hi"}], stream=True, max_tokens=4))
    assert len(chunks) == 4
    agent.force_flush()
    plain, streamed = sink.records
    assert (plain.operation, plain.request_model, plain.response_model, plain.input_tokens, plain.output_tokens) == (
        Operation.CHAT, "m1", "m1", 7, 3)
    assert (plain.tenant, plain.http_status, plain.tokens_estimated, plain.endpoint) == ("u-1", 200, False, "/v1/chat/completions")
    # nothing is injected in-process: no usage in this stream, so the counts are estimates, and say so
    assert (streamed.streaming, streamed.output_tokens, streamed.tokens_estimated) == (True, 4, True)
    assert streamed.ttft_s is not None and streamed.tenant.startswith("key-")
    server_spans = {s.context.span_id: s for s in exporter.get_finished_spans() if s.kind == trace.SpanKind.SERVER}
    assert plain.span_id in server_spans and server_spans[plain.span_id].context.trace_id == plain.trace_id


def test_errors_and_disconnects(serve):
    from infermeter.agent.pipeline import Pipeline

    sink = ListSink()
    pipeline = Pipeline([sink]).start()
    url = serve(infermeter.instrument_app(model_server(), pipeline=pipeline))
    assert httpx.get(url + "/boom").status_code == 500
    body = {"model": "endless", "messages": [], "stream": True}  # streams until the client leaves
    with httpx.Client(timeout=10) as c, c.stream("POST", url + "/v1/chat/completions", json=body) as r:
        for i, _ in enumerate(r.iter_lines()):
            if i == 6:
                break
    boom, cut = sink.wait_for(2, pipeline.force_flush)  # the cut stream's record follows uvicorn noticing the disconnect
    assert (boom.status, boom.http_status, boom.error_type) == (Status.ERROR, 500, "RuntimeError")
    assert cut.status == Status.CANCELLED and cut.output_tokens >= 3 and cut.tokens_estimated
    pipeline.shutdown()


def test_import_infermeter_does_not_import_fastapi():
    from tests.conftest import run_python

    r = run_python("import sys, infermeter\nprint(callable(infermeter.instrument_app), 'fastapi' in sys.modules)")
    assert r.stdout.split() == ["True", "False"], r.stderr


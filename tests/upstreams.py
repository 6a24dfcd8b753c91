"""A real model-server stand-in on 127.0.0.1 that speaks every wire protocol the proxy knows.

JSON and streaming replies for OpenAI-compatible (chat, completions, embeddings, responses),
Anthropic, Ollama (NDJSON), TGI and KServe v2, plus the faults the proxy must survive. Replies
are deterministic (fixed ids and timestamps), so the direct and the proxied path can be compared
byte for byte. It records what it received (``calls``) and whether a streaming client left
(``disconnected``).

Models with a meaning: ``slow`` waits ``delay`` seconds before answering, ``endless`` streams a
token every 20 ms until the client leaves, ``linger`` ends its stream 3 s after ``[DONE]``, ``malformed`` answers cut JSON, ``broken-sse`` answers
an SSE stream of garbage, ``priced`` reports ``usage.cost``, ``gzipped`` answers gzip-compressed JSON, ``no-usage`` never reports usage,
``stall`` streams 2 events then goes silent for ``delay`` seconds, ``flood`` streams 512 events of 64 KiB as fast as it can.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from infermeter.agent.proxy.loop import LoopThread

__all__ = ["Upstream", "Call"]

CREATED = 1_700_000_000


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def words(text: Any) -> int:
    if isinstance(text, str):
        return len(text.split())
    if isinstance(text, list):
        return sum(words(t) for t in text)
    if isinstance(text, dict):
        return sum(words(v) for k, v in text.items() if k not in ("role", "type"))
    return 0


@dataclass
class Call:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    json: Any = None


@dataclass
class Upstream:
    host: str = "127.0.0.1"
    calls: list[Call] = field(default_factory=list)
    disconnected: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._loop = LoopThread("test-upstream")
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "Upstream":
        self._loop.start()
        self._loop.run(self._start())
        return self

    def stop(self) -> None:
        if self._runner is not None:
            self._loop.run(self._runner.cleanup())
            self._runner = None
        self._loop.stop()

    async def _start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        r = app.router
        r.add_post("/v1/chat/completions", self.openai)
        r.add_post("/v1/completions", self.openai)
        r.add_post("/v1/embeddings", self.embeddings)
        r.add_post("/v1/responses", self.responses)
        r.add_post("/v1/messages", self.anthropic)
        r.add_post("/api/generate", self.ollama)
        r.add_post("/api/chat", self.ollama)
        r.add_post("/api/embed", self.ollama_embed)
        r.add_post("/generate", self.tgi)
        r.add_post("/generate_stream", self.tgi)
        r.add_post("/custom/textgen", self.tgi)
        r.add_post(r"/v2/models/{name}/infer", self.kserve)
        r.add_route("*", "/echo", self.echo)
        r.add_get("/status/{code}", self.status)
        r.add_get("/v1/models", self.models)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    async def _record(self, request: web.Request) -> Call:
        body = await request.read()
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        call = Call(request.method, request.path, request.query_string, dict(request.headers), body, parsed)
        self.calls.append(call)
        return call

    # -- helpers ---------------------------------------------------------------------------------
    async def _faults(self, req: dict) -> web.StreamResponse | None:
        model = req.get("model")
        if model == "slow":
            await asyncio.sleep(float(req.get("delay", 5)))
        if model == "malformed":
            return web.Response(body=b'{"id":"x","choices":[{"message":{"content":"hi"', content_type="application/json")
        return None

    async def _sse(self, request: web.Request, events: list[bytes], interval: float = 0.0, linger: float = 0.0) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        for ev in events:
            await resp.write(ev)
            if interval:
                await asyncio.sleep(interval)
        if linger:  # like sse-starlette: the reply ends a while after its last event
            await asyncio.sleep(linger)
        await resp.write_eof()
        return resp

    async def _endless(self, request: web.Request, event: bytes) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        try:
            for _ in range(3000):
                await resp.write(event)
                await asyncio.sleep(0.02)
        except (ConnectionError, asyncio.CancelledError):
            self.disconnected.set()
            raise
        return resp

    # -- OpenAI-compatible -------------------------------------------------------------------------
    async def openai(self, request: web.Request) -> web.StreamResponse:
        call = await self._record(request)
        req = call.json or {}
        fault = await self._faults(req)
        if fault is not None:
            return fault
        chat = request.path.endswith("/chat/completions")
        model = req.get("model", "test-model")
        n = int(req.get("max_tokens") or 5)
        prompt = words(req.get("messages") if chat else req.get("prompt"))
        tokens = [f"w{i} " for i in range(n)]
        usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": n, "total_tokens": prompt + n}
        if model == "priced":
            usage["cost"] = 0.00042
        obj = "chat.completion" if chat else "text_completion"
        if model == "broken-sse":
            return await self._sse(request, [b"data: {\"choices\": [{\"delta\": \n\n", b"data: }}}not json\n\n", b"data: [DONE]\n\n"])
        if not req.get("stream"):
            choice = ({"index": 0, "message": {"role": "assistant", "content": "".join(tokens)}, "finish_reason": "length"}
                      if chat else {"index": 0, "text": "".join(tokens), "finish_reason": "length"})
            out = {"id": "cmpl-1", "object": obj, "created": CREATED, "model": model, "choices": [choice]}
            if model != "no-usage":
                out["usage"] = usage
            if model == "gzipped":  # as OpenAI's API answers a client that accepts gzip
                return web.Response(body=gzip.compress(dumps(out)), content_type="application/json",
                                    headers={"Content-Encoding": "gzip"})
            return web.Response(body=dumps(out), content_type="application/json")
        include = bool((req.get("stream_options") or {}).get("include_usage")) and model != "no-usage"

        def chunk(delta: dict | None, text: str | None, finish: str | None) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": finish} if chat else {"index": 0, "text": text, "finish_reason": finish}
            c: dict[str, Any] = {"id": "cmpl-1", "object": obj + ".chunk" if chat else obj, "created": CREATED, "model": model,
                                 "choices": [choice]}
            if include:
                c["usage"] = None  # as OpenAI does on every chunk when usage was asked for
            return b"data: " + dumps(c) + b"\n\n"

        if model == "endless":
            return await self._endless(request, chunk({"content": "tok "}, "tok ", None))
        if model == "stall":
            resp = await self._sse(request, [chunk({"content": "a"}, "a", None)] * 2, linger=float(req.get("delay", 5)))
            return resp
        if model == "flood":
            return await self._sse(request, [chunk({"content": "x" * 65536}, "x" * 65536, None)] * 512 + [b"data: [DONE]\n\n"])
        events = [chunk({"role": "assistant", "content": ""}, "", None)] if chat else []
        events += [chunk({"content": t}, t, None) for t in tokens]
        events.append(chunk({}, "", "length"))
        if include:
            events.append(b"data: " + dumps({"id": "cmpl-1", "object": obj + ".chunk" if chat else obj, "created": CREATED,
                                             "model": model, "choices": [], "usage": usage}) + b"\n\n")
        events.append(b"data: [DONE]\n\n")
        return await self._sse(request, events, float(req.get("interval", 0)), 3.0 if model == "linger" else 0.0)

    async def embeddings(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        req = call.json or {}
        inputs = req.get("input")
        inputs = inputs if isinstance(inputs, list) else [inputs]
        dim = int(req.get("dimensions") or 4)
        data = [{"object": "embedding", "index": i, "embedding": [0.125] * dim} for i in range(len(inputs))]
        n = words(inputs)
        out = {"object": "list", "data": data, "model": req.get("model"), "usage": {"prompt_tokens": n, "total_tokens": n}}
        return web.Response(body=dumps(out), content_type="application/json")

    async def responses(self, request: web.Request) -> web.StreamResponse:
        call = await self._record(request)
        req = call.json or {}
        model = req.get("model")
        n = int(req.get("max_output_tokens") or 3)
        text = "".join(f"r{i} " for i in range(n))
        resp = {"id": "resp_1", "object": "response", "created_at": CREATED, "model": model, "status": "completed",
                "output": [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}],
                "usage": {"input_tokens": words(req.get("input")), "output_tokens": n,
                          "input_tokens_details": {"cached_tokens": 1}, "total_tokens": words(req.get("input")) + n}}
        if not req.get("stream"):
            return web.Response(body=dumps(resp), content_type="application/json")
        events = [b"event: response.created\ndata: " + dumps({"type": "response.created", "response": {**resp, "status": "in_progress", "usage": None}}) + b"\n\n"]
        events += [b"event: response.output_text.delta\ndata: " + dumps({"type": "response.output_text.delta", "delta": f"r{i} "}) + b"\n\n" for i in range(n)]
        events.append(b"event: response.completed\ndata: " + dumps({"type": "response.completed", "response": resp}) + b"\n\n")
        return await self._sse(request, events)

    # -- Anthropic ---------------------------------------------------------------------------------
    async def anthropic(self, request: web.Request) -> web.StreamResponse:
        call = await self._record(request)
        req = call.json or {}
        model = req.get("model")
        n = int(req.get("max_tokens") or 4)
        inp = words(req.get("messages")) + words(req.get("system"))
        usage = {"input_tokens": inp, "cache_read_input_tokens": 2, "cache_creation_input_tokens": 0, "output_tokens": n}
        text = "".join(f"a{i} " for i in range(n))
        msg = {"id": "msg_1", "type": "message", "role": "assistant", "model": model,
               "content": [{"type": "text", "text": text}], "stop_reason": "max_tokens", "usage": usage}
        if not req.get("stream"):
            return web.Response(body=dumps(msg), content_type="application/json")

        def ev(kind: str, data: dict) -> bytes:
            return f"event: {kind}\ndata: ".encode() + dumps({"type": kind, **data}) + b"\n\n"

        events = [ev("message_start", {"message": {**msg, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}}),
                  ev("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})]
        events += [ev("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": f"a{i} "}}) for i in range(n)]
        events += [ev("content_block_stop", {"index": 0}),
                   ev("message_delta", {"delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": n}}),
                   ev("message_stop", {})]
        return await self._sse(request, events)

    # -- Ollama ------------------------------------------------------------------------------------
    async def ollama(self, request: web.Request) -> web.StreamResponse:
        call = await self._record(request)
        req = call.json or {}
        model = req.get("model")
        chat = request.path == "/api/chat"
        n = int((req.get("options") or {}).get("num_predict") or 3)
        prompt = words(req.get("messages") if chat else req.get("prompt"))

        def line(text: str, done: bool) -> dict:
            d: dict[str, Any] = {"model": model, "created_at": "2023-11-14T22:13:20Z", "done": done}
            if chat:
                d["message"] = {"role": "assistant", "content": text}
            else:
                d["response"] = text
            if done:
                d.update(done_reason="length", total_duration=1000, prompt_eval_count=prompt, eval_count=n)
            return d

        if req.get("stream") is False:
            return web.Response(body=dumps(line("".join(f"o{i} " for i in range(n)), True)), content_type="application/json")
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await resp.prepare(request)
        for i in range(n):
            await resp.write(dumps(line(f"o{i} ", False)) + b"\n")
        await resp.write(dumps(line("", True)) + b"\n")
        await resp.write_eof()
        return resp

    async def ollama_embed(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        req = call.json or {}
        out = {"model": req.get("model"), "embeddings": [[0.5, 0.25]], "prompt_eval_count": words(req.get("input"))}
        return web.Response(body=dumps(out), content_type="application/json")

    # -- TGI ---------------------------------------------------------------------------------------
    async def tgi(self, request: web.Request) -> web.StreamResponse:
        call = await self._record(request)
        req = call.json or {}
        n = int((req.get("parameters") or {}).get("max_new_tokens") or 3)
        prompt = words(req.get("inputs"))
        text = "".join(f"t{i} " for i in range(n))
        details = {"finish_reason": "length", "generated_tokens": n, "seed": None}
        if request.path != "/generate_stream":
            headers = {"x-prompt-tokens": str(prompt), "x-generated-tokens": str(n)}
            return web.Response(body=dumps({"generated_text": text, "details": details}), content_type="application/json",
                                headers=headers)
        events = []
        for i in range(n):
            last = i == n - 1
            events.append(b"data:" + dumps({"index": i + 1, "token": {"id": i, "text": f"t{i} ", "logprob": -0.5, "special": False},
                                            "generated_text": text if last else None, "details": details if last else None}) + b"\n\n")
        return await self._sse(request, events)

    # -- KServe v2 ---------------------------------------------------------------------------------
    async def kserve(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        req = call.json or {}
        outputs = [{"name": "out", "shape": [1, 2], "datatype": "FP32", "data": [0.1, 0.9]}]
        out = {"model_name": request.match_info["name"], "model_version": "1", "id": req.get("id", "1"), "outputs": outputs}
        return web.Response(body=dumps(out), content_type="application/json")

    # -- plain HTTP --------------------------------------------------------------------------------
    async def echo(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        out = {"method": call.method, "raw_path": request.raw_path, "body_len": len(call.body)}
        return web.Response(body=dumps(out), content_type="application/json",
                            headers={"X-Upstream": "yes", "X-Private": "drop-me", "Connection": "keep-alive, X-Private"})

    async def status(self, request: web.Request) -> web.Response:
        await self._record(request)
        code = int(request.match_info["code"])
        return web.Response(status=code, body=dumps({"error": {"message": f"status {code}"}}), content_type="application/json")

    async def models(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.Response(body=dumps({"object": "list", "data": [{"id": "test-model", "object": "model"}]}),
                            content_type="application/json")

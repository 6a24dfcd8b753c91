"""An OpenAI-compatible HTTP server for the SIMULATED models: the demo's model server, and the tests'.

Serves ``GET /v1/models``, ``POST /v1/chat/completions`` and ``/v1/completions`` (JSON, or SSE
that ends with a usage chunk only when the request asks for it, as vLLM and OpenAI do) and
``POST /v1/embeddings``, with the latencies of :mod:`infermeter.agent.simulated`'s serving model.
No model runs: every reply says it is simulated (``system_fingerprint``, ``owned_by`` and an
``X-Infermeter-Simulated`` header). Prompt tokens are counted as one per four characters.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any

from aiohttp import web

from .proxy.loop import LoopThread
from .simulated import SIMULATED_MODELS, SimulatedModel

__all__ = ["SimulatedServer"]

FINGERPRINT = "infermeter-simulated"
_HEADERS = {"X-Infermeter-Simulated": "true"}


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _text_tokens(obj: Any) -> int:
    if isinstance(obj, str):
        return len(obj)
    if isinstance(obj, list):
        return sum(_text_tokens(x) for x in obj)
    if isinstance(obj, dict):
        return sum(_text_tokens(v) for k, v in obj.items() if k not in ("role", "name", "type"))
    return 0


def count_tokens(obj: Any) -> int:
    """The simulated tokenizer: one token per four characters of text, at least one."""
    return max(1, _text_tokens(obj) // 4)


def _error(status: int, message: str, code: str) -> web.Response:
    return web.json_response({"error": {"message": message + " (simulated server)", "type": "invalid_request_error",
                                        "code": code}}, status=status, headers=_HEADERS)


class SimulatedServer:
    """``SimulatedServer().start()`` serves on 127.0.0.1 (an ephemeral port by default) until ``shutdown()``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, seed: int | None = None,
                 models: dict[str, SimulatedModel] | None = None) -> None:
        self.host = host
        self.port = port
        self.models = models or SIMULATED_MODELS
        self._rng = random.Random(seed)
        self._loop = LoopThread("infermeter-simulated-server")
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "SimulatedServer":
        self._loop.start()
        try:
            self._loop.run(self._start())
        except BaseException:
            self._loop.stop()
            raise
        return self

    def shutdown(self, timeout_s: float = 5.0) -> None:
        if self._runner is not None:
            self._loop.run(self._runner.cleanup(), timeout_s)
            self._runner = None
        self._loop.stop(timeout_s)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/models", self._list_models)
        app.router.add_get("/health", self._health)
        app.router.add_post("/v1/chat/completions", self._complete)
        app.router.add_post("/v1/completions", self._complete)
        app.router.add_post("/v1/embeddings", self._embed)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    # -- handlers ------------------------------------------------------------------------------------
    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "simulated": True}, headers=_HEADERS)

    async def _list_models(self, request: web.Request) -> web.Response:
        data = [{"id": m.name, "object": "model", "created": 0, "owned_by": FINGERPRINT} for m in self.models.values()]
        return web.json_response({"object": "list", "data": data}, headers=_HEADERS)

    async def _request(self, request: web.Request) -> tuple[dict[str, Any], SimulatedModel] | web.Response:
        try:
            req = await request.json()
        except ValueError:
            return _error(400, "the body is not JSON", "invalid_json")
        if not isinstance(req, dict):
            return _error(400, "the body is not a JSON object", "invalid_json")
        model = self.models.get(req.get("model"))  # type: ignore[arg-type]
        if model is None:
            return _error(404, f"the model {req.get('model')!r} does not exist", "model_not_found")
        return req, model

    async def _complete(self, request: web.Request) -> web.StreamResponse:
        got = await self._request(request)
        if isinstance(got, web.Response):
            return got
        req, model = got
        if model.embedding:
            return _error(400, f"{model.name} is an embedding model", "wrong_model_type")
        chat = request.path.endswith("/chat/completions")
        prompt = count_tokens(req.get("messages") if chat else req.get("prompt"))
        max_tokens = req.get("max_tokens") or req.get("max_completion_tokens")
        out, prefill_s, step_s = model._plan(self._rng, prompt, max_tokens if isinstance(max_tokens, int) else None)
        finish = "length" if max_tokens and out >= max_tokens else "stop"
        ident = f"sim-{time.time_ns():x}"
        usage = {"prompt_tokens": prompt, "completion_tokens": out, "total_tokens": prompt + out}
        base = {"id": ident, "created": int(time.time()), "model": model.name, "system_fingerprint": FINGERPRINT}
        if not req.get("stream"):
            await asyncio.sleep(prefill_s + out * step_s)
            text = "".join(f"tok{i} " for i in range(out))
            choice = ({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish} if chat
                      else {"index": 0, "text": text, "finish_reason": finish})
            body = {**base, "object": "chat.completion" if chat else "text_completion", "choices": [choice], "usage": usage}
            return web.Response(body=_dumps(body), content_type="application/json", headers=_HEADERS)
        obj = "chat.completion.chunk" if chat else "text_completion"

        def event(text: str | None, finish_reason: str | None) -> bytes:
            if chat:
                delta = {"content": text} if text is not None else {}
                choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
            else:
                choice = {"index": 0, "text": text or "", "finish_reason": finish_reason}
            return b"data: " + _dumps({**base, "object": obj, "choices": [choice]}) + b"\n\n"

        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", **_HEADERS})
        await resp.prepare(request)
        await asyncio.sleep(prefill_s)
        for i in range(out):
            await resp.write(event(f"tok{i} ", None))
            await asyncio.sleep(step_s)
        await resp.write(event(None, finish))
        if (req.get("stream_options") or {}).get("include_usage"):
            await resp.write(b"data: " + _dumps({**base, "object": obj, "choices": [], "usage": usage}) + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def _embed(self, request: web.Request) -> web.Response:
        got = await self._request(request)
        if isinstance(got, web.Response):
            return got
        req, model = got
        if not model.embedding:
            return _error(400, f"{model.name} is not an embedding model", "wrong_model_type")
        inputs = req.get("input")
        inputs = inputs if isinstance(inputs, list) else [inputs]
        tokens = sum(count_tokens(x) for x in inputs)
        await asyncio.sleep(0.001 + tokens * model.prefill_s_per_token)
        data = [{"object": "embedding", "index": i, "embedding": [0.0] * 8} for i in range(len(inputs))]
        body = {"object": "list", "model": model.name, "data": data, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
        return web.Response(body=_dumps(body), content_type="application/json", headers=_HEADERS)

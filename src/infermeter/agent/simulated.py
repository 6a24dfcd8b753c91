"""A simulated model server, for the demo and tests: labelled as simulated wherever it appears.

Latency follows a simple serving model: a prefill time proportional to prompt tokens, then one
decode step per output token; output lengths and prompts vary with a seeded RNG. Responses are
OpenAI-shaped dicts (and stream chunks), so infermeter reads their usage as it would a real one.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["SimulatedModel", "SIMULATED_MODELS"]


@dataclass(frozen=True)
class SimulatedModel:
    name: str
    prefill_s_per_token: float = 0.00002
    decode_s_per_token: float = 0.0015
    mean_output_tokens: int = 40
    embedding: bool = False

    def _plan(self, rng: random.Random, prompt_tokens: int, max_tokens: int | None) -> tuple[int, float, float]:
        out = max(1, int(rng.expovariate(1 / self.mean_output_tokens)))
        if max_tokens:
            out = min(out, max_tokens)
        return out, 0.002 + prompt_tokens * self.prefill_s_per_token, self.decode_s_per_token

    def complete(self, prompt_tokens: int, max_tokens: int | None = None, rng: random.Random | None = None) -> dict[str, Any]:
        rng = rng or random.Random()
        if self.embedding:
            time.sleep(0.001 + prompt_tokens * self.prefill_s_per_token)
            return {"object": "list", "model": self.name, "data": [{"embedding": [0.0] * 8, "index": 0}],
                    "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}
        out, prefill, step = self._plan(rng, prompt_tokens, max_tokens)
        time.sleep(prefill + out * step)
        return _completion(self.name, prompt_tokens, out)

    def stream(self, prompt_tokens: int, max_tokens: int | None = None, rng: random.Random | None = None) -> Iterator[dict[str, Any]]:
        rng = rng or random.Random()
        out, prefill, step = self._plan(rng, prompt_tokens, max_tokens)
        time.sleep(prefill)
        for i in range(out):
            time.sleep(step)
            yield _chunk(self.name, f"tok{i} ", None)
        yield _chunk(self.name, "", "stop")
        yield {"object": "chat.completion.chunk", "model": self.name, "choices": [],
               "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": out, "total_tokens": prompt_tokens + out}}

    async def acomplete(self, prompt_tokens: int, max_tokens: int | None = None, rng: random.Random | None = None) -> dict[str, Any]:
        rng = rng or random.Random()
        out, prefill, step = self._plan(rng, prompt_tokens, max_tokens)
        await asyncio.sleep(prefill + out * step)
        return _completion(self.name, prompt_tokens, out)

    async def astream(self, prompt_tokens: int, max_tokens: int | None = None, rng: random.Random | None = None) -> AsyncIterator[dict[str, Any]]:
        rng = rng or random.Random()
        out, prefill, step = self._plan(rng, prompt_tokens, max_tokens)
        await asyncio.sleep(prefill)
        for i in range(out):
            await asyncio.sleep(step)
            yield _chunk(self.name, f"tok{i} ", None)
        yield {"object": "chat.completion.chunk", "model": self.name, "choices": [],
               "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": out, "total_tokens": prompt_tokens + out}}


def _completion(model: str, prompt_tokens: int, out: int) -> dict[str, Any]:
    return {
        "id": "sim-" + str(time.time_ns()),
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "tok " * out}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": out, "total_tokens": prompt_tokens + out},
    }


def _chunk(model: str, text: str, finish: str | None) -> dict[str, Any]:
    return {"object": "chat.completion.chunk", "model": model,
            "choices": [{"index": 0, "delta": {"content": text} if text else {}, "finish_reason": finish}]}


SIMULATED_MODELS = {
    "sim-llama-3.1-8b": SimulatedModel("sim-llama-3.1-8b", decode_s_per_token=0.0012, mean_output_tokens=48),
    "sim-qwen2.5-32b": SimulatedModel("sim-qwen2.5-32b", prefill_s_per_token=0.00005, decode_s_per_token=0.003, mean_output_tokens=64),
    "sim-bge-embed": SimulatedModel("sim-bge-embed", embedding=True),
}

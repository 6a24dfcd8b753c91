"""Ollama's native API: ``/api/generate``, ``/api/chat``, ``/api/embed``.

Streams by default, as NDJSON; the last line (``"done": true``) carries ``prompt_eval_count``,
``eval_count`` and ``done_reason``.
"""

from __future__ import annotations

import re
from typing import Any

from ....records import Operation
from .base import Body, Extracted, as_int, as_str, read_request

__all__ = ["PROTOCOL", "OllamaProtocol"]

_OPERATIONS = {"/api/chat": Operation.CHAT, "/api/generate": Operation.TEXT_COMPLETION,
               "/api/embed": Operation.EMBEDDINGS, "/api/embeddings": Operation.EMBEDDINGS}


class OllamaProtocol:
    name = "ollama"
    reads_bodies = True
    provider: str | None = "ollama"
    content_re = re.compile(rb'"(?:response|content|thinking)"\s*:\s*"(?!")')

    def operation(self, path: str) -> str:
        return _OPERATIONS.get(path, Operation.OTHER)

    def prepare(self, path: str, body: bytes) -> bytes | None:
        return None  # the final line always carries the counts

    def extract(self, path: str, request: Any, body: Body) -> Extracted:
        x = Extracted(operation=self.operation(path))
        read_request(x, request)
        if body.streaming:
            for ev in body.events(reverse=True):
                if isinstance(ev, dict):
                    if ev.get("done") is True:  # the last line carries the counts
                        _read(x, ev)
                        x.finished = True
                    x.response_model = x.response_model or as_str(ev.get("model"))
                    break
            x.malformed = body.malformed
            return x
        doc = body.json()
        if isinstance(doc, dict):
            _read(x, doc)
            msg = doc.get("message")
            text = msg.get("content") if isinstance(msg, dict) else doc.get("response")
            x.output_chars = len(text) if isinstance(text, str) else None
        elif body.complete:
            x.malformed = True
        return x


def _read(x: Extracted, obj: dict[str, Any]) -> None:
    x.response_model = as_str(obj.get("model")) or x.response_model
    if "prompt_eval_count" in obj:
        x.input_tokens = as_int(obj["prompt_eval_count"])
    if "eval_count" in obj:
        x.output_tokens = as_int(obj["eval_count"])
    elif x.operation == Operation.EMBEDDINGS and x.input_tokens is not None:
        x.output_tokens = 0
    x.finish_reason = as_str(obj.get("done_reason")) or x.finish_reason


PROTOCOL = OllamaProtocol()

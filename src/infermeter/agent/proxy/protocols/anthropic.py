"""Anthropic Messages API: ``/v1/messages``, JSON or SSE.

Input tokens (including cached ones, as the GenAI conventions count them) arrive first, in
``message_start``; output tokens and the stop reason last, in ``message_delta``.
"""

from __future__ import annotations

import re
from typing import Any

from ....records import Operation
from .base import Body, Extracted, as_int, as_str, provider_cost

__all__ = ["PROTOCOL", "AnthropicProtocol"]


class AnthropicProtocol:
    name = "anthropic"
    reads_bodies = True
    provider: str | None = "anthropic"
    content_re = re.compile(rb'"(?:text|partial_json|thinking)"\s*:\s*"(?!")')

    def operation(self, path: str) -> str:
        return Operation.CHAT

    def prepare(self, path: str, body: bytes) -> bytes | None:
        return None  # Anthropic streams always carry usage

    def extract(self, path: str, request: Any, body: Body) -> Extracted:
        x = Extracted(operation=Operation.CHAT)
        if isinstance(request, dict):
            x.request_model = as_str(request.get("model"))
            meta = request.get("metadata")
            x.user = as_str(meta.get("user_id")) if isinstance(meta, dict) else None
            x.prompt = {"system": request.get("system"), "messages": request.get("messages")}
        if body.streaming:
            for ev in body.events():  # input tokens and the model come first, in message_start
                if isinstance(ev, dict) and ev.get("type") == "message_start":
                    if isinstance(ev.get("message"), dict):
                        _read_message(x, ev["message"])
                    break
            for ev in body.events(reverse=True):  # output tokens and the stop reason come last
                kind = ev.get("type") if isinstance(ev, dict) else None
                if kind == "message_stop":
                    x.finished = True
                elif kind == "message_delta":
                    delta = ev.get("delta")
                    if isinstance(delta, dict) and as_str(delta.get("stop_reason")):
                        x.finish_reason = delta["stop_reason"]
                    _read_usage(x, ev.get("usage"))
                    break
                elif kind in ("content_block_delta", "message_start"):
                    break  # no message_delta after the content: the stream was cut
            x.malformed = body.malformed
            return x
        doc = body.json()
        if isinstance(doc, dict):
            _read_message(x, doc)
            content = doc.get("content")
            if isinstance(content, list):
                x.output_chars = sum(len(c["text"]) for c in content if isinstance(c, dict) and isinstance(c.get("text"), str))
        elif body.complete:
            x.malformed = True
        return x


def _read_message(x: Extracted, msg: dict[str, Any]) -> None:
    x.response_model = as_str(msg.get("model")) or x.response_model
    x.finish_reason = as_str(msg.get("stop_reason")) or x.finish_reason
    _read_usage(x, msg.get("usage"))


def _read_usage(x: Extracted, usage: Any) -> None:
    if not isinstance(usage, dict):
        return
    inp = as_int(usage.get("input_tokens"))
    if inp is not None:
        cached = as_int(usage.get("cache_read_input_tokens")) or 0
        written = as_int(usage.get("cache_creation_input_tokens")) or 0
        x.input_tokens = inp + cached + written
        x.cached_tokens = cached if "cache_read_input_tokens" in usage else x.cached_tokens
    out = as_int(usage.get("output_tokens"))
    if out is not None:
        x.output_tokens = out  # message_delta's count is cumulative
    x.cost_usd = provider_cost(usage) or x.cost_usd


PROTOCOL = AnthropicProtocol()

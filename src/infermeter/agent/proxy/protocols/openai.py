"""OpenAI-compatible APIs: chat completions, completions, embeddings, responses.

Spoken by vLLM, llama.cpp, SGLang, LM Studio, OpenAI itself and many more. Usage comes from the
response's ``usage`` block, or for streams from the last chunk (``response.completed`` for the
Responses API). A client that streams without asking for usage gets it asked for on its behalf
(:func:`prepare`); the server hides the extra chunk from it.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ....records import Operation
from ...usage import extract_usage
from .base import Body, Extracted, as_str, loads, provider_cost, read_request

__all__ = ["PROTOCOL", "OpenAIProtocol"]

_OPERATIONS = (
    ("/chat/completions", Operation.CHAT),
    ("/completions", Operation.TEXT_COMPLETION),
    ("/embeddings", Operation.EMBEDDINGS),
    ("/responses", Operation.RESPONSES),
)
_INJECT = b',"stream_options":{"include_usage":true}'
_RESPONSES_DONE = ("response.completed", "response.incomplete", "response.failed")


class OpenAIProtocol:
    name = "openai"
    reads_bodies = True
    provider: str | None = None  # vLLM, llama.cpp, OpenAI...: the upstream's host tells, not the wire format
    content_re = re.compile(rb'"(?:content|text|reasoning_content|reasoning|refusal|arguments|delta)"\s*:\s*"(?!")')

    def operation(self, path: str) -> str:
        for suffix, op in _OPERATIONS:
            if path.endswith(suffix):
                return op
        return Operation.OTHER

    def prepare(self, path: str, body: bytes) -> bytes | None:
        """For a streamed (chat) completion without ``stream_options.include_usage``: the body with it."""
        if b'"stream"' not in body or not path.endswith("completions"):
            return None
        try:
            req = loads(body)
        except ValueError:
            return None
        if not isinstance(req, dict) or req.get("stream") is not True:
            return None
        if "stream_options" not in req:
            stripped = body.rstrip()
            if not stripped.endswith(b"}"):
                return None
            end = len(stripped) - 1
            return body[:end] + _INJECT + body[end:]  # the client's bytes, plus one member
        opts = req["stream_options"]
        if opts is not None and not isinstance(opts, dict):
            return None
        if opts and opts.get("include_usage") is True:
            return None
        req["stream_options"] = {**(opts or {}), "include_usage": True}
        return json.dumps(req).encode()

    def extract(self, path: str, request: Any, body: Body) -> Extracted:
        x = Extracted(operation=self.operation(path))
        if read_request(x, request) is not None:
            x.user = as_str(request.get("user"))
        if body.streaming:
            for ev in body.events(reverse=True):  # usage and finish reason come last
                if isinstance(ev, dict):
                    _read(x, ev.get("response") if isinstance(ev.get("response"), dict) else ev)
                    x.finished = x.finished or ev.get("type") in _RESPONSES_DONE
                    if x.finished or x.finish_reason is not None:
                        break  # anything before it is content
            x.malformed = body.malformed
            x.finished = x.finished or x.finish_reason is not None
            return x
        doc = body.json()
        if isinstance(doc, dict):
            _read(x, doc)
            if x.output_tokens is None:  # only an estimate needs it
                x.output_chars = _output_chars(doc)
        elif body.complete:
            x.malformed = True
        else:  # too big to keep whole (a batch of embeddings): usage sits at the end
            usage = body.find("usage")
            if isinstance(usage, dict):
                _read(x, {"usage": usage, "model": body.find("model")})
        return x


def _read(x: Extracted, obj: dict[str, Any]) -> None:
    """Fold one response object or stream chunk into ``x``; what is already known (later chunks) stays."""
    if not x.response_model:
        x.response_model = as_str(obj.get("model"))
    choices = obj.get("choices")
    if not x.finish_reason and isinstance(choices, list) and choices and isinstance(choices[0], dict):
        x.finish_reason = as_str(choices[0].get("finish_reason"))
    usage = obj.get("usage")
    if isinstance(usage, dict) and x.input_tokens is None and x.output_tokens is None:
        u = extract_usage(obj)
        if u is not None:
            x.input_tokens, x.output_tokens, x.cached_tokens = u.input_tokens, u.output_tokens, u.cached_tokens
        x.cost_usd = provider_cost(usage)


def _output_chars(doc: dict[str, Any]) -> int | None:
    choices = doc.get("choices")
    if not isinstance(choices, list):
        return None
    n = 0
    for c in choices:
        if isinstance(c, dict):
            msg = c.get("message")
            text = msg.get("content") if isinstance(msg, dict) else c.get("text")
            if isinstance(text, str):
                n += len(text)
    return n


PROTOCOL = OpenAIProtocol()

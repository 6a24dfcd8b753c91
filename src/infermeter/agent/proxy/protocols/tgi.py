"""Hugging Face Text Generation Inference's native API: ``/generate``, ``/generate_stream``.

TGI serves one model and names it nowhere in these replies. Output tokens come from
``details.generated_tokens`` (final stream event, or the reply when ``details`` was asked for)
and, for ``/generate``, the ``x-prompt-tokens``/``x-generated-tokens`` response headers.
"""

from __future__ import annotations

import re
from typing import Any

from ....records import Operation
from .base import Body, Extracted, as_int, as_str

__all__ = ["PROTOCOL", "TGIProtocol"]


def _header_int(headers: dict[str, str], name: str) -> int | None:
    v = headers.get(name)
    return int(v) if v is not None and v.strip().isdigit() else None


class TGIProtocol:
    name = "tgi"
    reads_bodies = True
    provider: str | None = "tgi"
    content_re = re.compile(rb'"text"\s*:\s*"(?!")')
    capture_headers = ("x-prompt-tokens", "x-generated-tokens")

    def operation(self, path: str) -> str:
        return Operation.TEXT_COMPLETION

    def prepare(self, path: str, body: bytes) -> bytes | None:
        return None

    def extract(self, path: str, request: Any, body: Body) -> Extracted:
        x = Extracted(operation=Operation.TEXT_COMPLETION)
        if isinstance(request, dict):
            x.prompt = request.get("inputs")
            params = request.get("parameters")
            x.request_model = as_str(params.get("model")) if isinstance(params, dict) else None
        x.input_tokens = _header_int(body.headers, "x-prompt-tokens")
        x.output_tokens = _header_int(body.headers, "x-generated-tokens")
        if body.streaming:
            for ev in body.events(reverse=True):
                if isinstance(ev, dict):  # the last event carries the details and the whole text
                    _read_details(x, ev.get("details"))
                    x.finished = ev.get("generated_text") is not None
                    break
            x.malformed = body.malformed
            return x
        doc = body.json()
        if isinstance(doc, list) and doc:  # some versions answer a one-element list
            doc = doc[0]
        if isinstance(doc, dict):
            _read_details(x, doc.get("details"))
            text = doc.get("generated_text")
            x.output_chars = len(text) if isinstance(text, str) else None
        elif body.complete:
            x.malformed = True
        return x


def _read_details(x: Extracted, details: Any) -> None:
    if not isinstance(details, dict):
        return
    x.output_tokens = as_int(details.get("generated_tokens")) or x.output_tokens
    x.finish_reason = as_str(details.get("finish_reason")) or x.finish_reason
    prefill = details.get("prefill")
    if isinstance(prefill, list) and prefill and x.input_tokens is None:
        x.input_tokens = len(prefill)  # present when the request asked for decoder_input_details


PROTOCOL = TGIProtocol()

"""What every wire protocol shares: the interface, the extracted fields, and the body readers.

A protocol is consulted twice per request. On the hot path (the proxy's event loop) only its
``content_re`` runs, once per streamed chunk, and, for OpenAI-compatible streams, ``prepare``
(usage injection). Everything else happens in ``extract`` on the pipeline thread, from the request
body and what the proxy kept of the response (:class:`Body`: all of it, or its head and tail).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from collections.abc import Iterator
from typing import Any, Protocol

__all__ = [
    "WireProtocol", "Extracted", "Body", "json_or_none", "find_value", "hash_prompt", "as_int", "as_str",
    "provider_cost", "prompt_size", "loads", "read_request",
]

try:  # 5x faster than json for the parsing and hashing every proxied request pays for
    import orjson

    loads = orjson.loads

    def _canonical(obj: Any) -> bytes:
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
except ImportError:  # the same bytes for the same prompts, only slower
    loads = json.loads

    def _canonical(obj: Any) -> bytes:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

_decoder = json.JSONDecoder()
_WS = b" \t\r\n"


class WireProtocol(Protocol):
    """One model-server API. Implementations are stateless module-level objects."""

    name: str
    reads_bodies: bool  # False: the proxy keeps neither body (the generic fallback)
    provider: str | None  # gen_ai.provider.name when the protocol implies one
    content_re: re.Pattern[bytes] | None  # matches each streamed event that carries content; None: every chunk does

    def operation(self, path: str) -> str:
        """``gen_ai.operation.name`` for a request to ``path``."""
        ...

    def prepare(self, path: str, body: bytes) -> bytes | None:
        """Hot path: a replacement request body when the proxy must ask for usage, else None."""
        ...

    def extract(self, path: str, request: Any, body: "Body") -> "Extracted":
        """Pipeline thread: model, usage, finish reason... from the parsed request and the response."""
        ...


@dataclass(slots=True)
class Extracted:
    """What a protocol read from one exchange. ``None`` is unknown."""

    operation: str | None = None
    request_model: str | None = None
    response_model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None
    finish_reason: str | None = None
    cost_usd: Decimal | None = None  # reported by the provider in the response
    user: str | None = None  # the request's end-user id (OpenAI ``user``), a tenant candidate
    prompt: Any = None  # what the prompt hash is made of: messages, prompt, inputs
    output_chars: int | None = None  # generated text length, for an estimate when no usage came
    malformed: bool = False  # the response could not be read: tokens stay unknown
    finished: bool = False  # the stream's final event was seen: a client leaving after it cancelled nothing


class Body:
    """The response as the proxy kept it: the whole body when small, else its head and tail."""

    __slots__ = ("head", "tail", "complete", "kind", "content_events", "headers", "malformed")

    def __init__(self, head: bytes, tail: bytes = b"", complete: bool = True, kind: str = "json",
                 content_events: int = 0, headers: dict[str, str] | None = None) -> None:
        self.head = head
        self.tail = tail
        self.complete = complete
        self.kind = kind  # "json", "sse", "ndjson" or "other" (from the Content-Type)
        self.content_events = content_events  # streamed events that carried content, counted as they passed
        self.headers = headers or {}  # the few response headers a protocol asked for (lower-case names)
        self.malformed = False  # set by events() on an event that is not JSON

    @property
    def streaming(self) -> bool:
        return self.kind in ("sse", "ndjson")

    def json(self) -> Any:
        """The body parsed as JSON; None when it is not whole or not JSON."""
        return json_or_none(self.head) if self.complete else None

    def find(self, key: str) -> Any:
        """The value of the last ``"key":`` in the tail (or head): for bodies too big to keep whole."""
        for part in (self.tail, self.head):
            v = find_value(part, key)
            if v is not None:
                return v
        return None

    def events(self, reverse: bool = False) -> Iterator[Any]:
        """The streamed events (SSE ``data:`` or NDJSON lines), parsed one by one as they are taken.

        Protocols read from the end (``reverse=True``) and stop once they have what they need: the
        usage lives in the last events. An event that is not JSON sets ``malformed``. When the middle
        of a long stream was not kept, the cut events at the seams are skipped.
        """
        if self.kind == "sse":
            split = _sse_payloads
        elif self.kind == "ndjson":
            split = _ndjson_payloads
        else:
            return
        if self.complete:
            pieces = split(self.head, False, False)
        else:
            pieces = split(self.head, False, True) + split(self.tail, True, False)
        for p in reversed(pieces) if reverse else pieces:
            try:
                yield loads(p)
            except ValueError:
                self.malformed = True


def _sse_payloads(data: bytes, cut_start: bool, cut_end: bool) -> list[bytes]:
    blocks = (data.replace(b"\r\n", b"\n") if b"\r" in data else data).split(b"\n\n")
    if cut_start:
        blocks = blocks[1:]
    if cut_end:
        blocks = blocks[:-1]
    out = []
    for block in blocks:
        if block.startswith(b"data:") and b"\n" not in block:  # the common one-line event
            payload = block[5:].lstrip(b" ")
        else:
            lines = [ln[5:].lstrip(b" ") for ln in block.split(b"\n") if ln.startswith(b"data:")]
            payload = b"\n".join(lines)
        if payload and payload != b"[DONE]":
            out.append(payload)
    return out


def _ndjson_payloads(data: bytes, cut_start: bool, cut_end: bool) -> list[bytes]:
    lines = data.split(b"\n")
    if cut_start:
        lines = lines[1:]
    if cut_end:
        lines = lines[:-1]
    return [ln for ln in (x.strip() for x in lines) if ln]


def read_request(x: Extracted, request: Any) -> dict[str, Any] | None:
    """The model and the prompt (messages, prompt or input) of an OpenAI- or Ollama-style request."""
    if not isinstance(request, dict):
        return None
    x.request_model = as_str(request.get("model"))
    for key in ("messages", "prompt", "input"):
        if request.get(key) is not None:
            x.prompt = request[key]
            break
    return request


def json_or_none(data: bytes | None) -> Any:
    if not data:
        return None
    try:
        return loads(data)
    except ValueError:  # orjson's and json's decode errors (UnicodeDecodeError included) are ValueErrors
        return None


def find_value(data: bytes, key: str) -> Any:
    """The JSON value after the last ``"key":`` in ``data`` (a fragment of a bigger document)."""
    needle = b'"' + key.encode() + b'"'
    end = len(data)
    while True:
        i = data.rfind(needle, 0, end)
        if i < 0:
            return None
        j = i + len(needle)
        while j < len(data) and data[j] in _WS:
            j += 1
        if j < len(data) and data[j:j + 1] == b":":
            j += 1
            while j < len(data) and data[j] in _WS:
                j += 1
            try:
                value, _ = _decoder.raw_decode(data[j:j + 65536].decode("utf-8", "replace"))
                return value
            except ValueError:
                pass
        end = i


def as_int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def as_str(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


def provider_cost(usage: Any) -> Decimal | None:
    """A cost the provider reports in its usage block (OpenRouter's ``usage.cost``, in USD)."""
    if not isinstance(usage, dict):
        return None
    v = usage.get("cost")
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        return None
    try:
        d = Decimal(str(v))
    except InvalidOperation:
        return None
    return d if d.is_finite() and d >= 0 else None


def hash_prompt(obj: Any) -> int | None:
    """A signed 64-bit hash of a prompt (messages, text, inputs): equal prompts, equal hashes."""
    if obj is None:
        return None
    data = obj.encode() if isinstance(obj, str) else _canonical(obj)
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big", signed=True)


def prompt_size(obj: Any) -> int:
    """Characters of text in a prompt structure: the basis of an input-token estimate."""
    if isinstance(obj, str):
        return len(obj)
    if isinstance(obj, dict):
        return sum(prompt_size(v) for k, v in obj.items() if k not in ("role", "type", "name"))
    if isinstance(obj, (list, tuple)):
        return sum(prompt_size(v) for v in obj)
    return 0

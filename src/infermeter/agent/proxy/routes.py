"""Which wire protocol a request speaks, chosen by its path; overridable per route in config.

``INFERMETER_PROXY_ROUTES='/my/chat=openai,/legacy/*=tgi'`` wins over the built-in table (a
trailing ``*`` matches a prefix). Lookups are cached per path, so the hot path pays one dict get.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .protocols import PROTOCOLS, WireProtocol

__all__ = ["Router"]

_EXACT = {
    "/v1/messages": "anthropic",
    "/api/generate": "ollama", "/api/chat": "ollama", "/api/embed": "ollama", "/api/embeddings": "ollama",
    "/generate": "tgi", "/generate_stream": "tgi",
}
# OpenAI-compatible servers mount under prefixes (/openai/v1, /api/v1) or none (llama.cpp).
_OPENAI_SUFFIXES = ("/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses")
_OPENAI_BARE = {"/completions", "/embeddings"}
_KSERVE = re.compile(r"^/v2/models/[^/]+(?:/versions/[^/]+)?/infer$")
_CACHE_MAX = 4096


class Router:
    def __init__(self, overrides: Iterable[tuple[str, str]] = ()) -> None:
        self._overrides: list[tuple[str, bool, WireProtocol]] = []
        for pattern, name in overrides:
            proto = PROTOCOLS[name]
            if pattern.endswith("*"):
                self._overrides.append((pattern[:-1], True, proto))
            else:
                self._overrides.append((pattern, False, proto))
        self._cache: dict[str, WireProtocol] = {}

    def __call__(self, path: str) -> WireProtocol:
        proto = self._cache.get(path)
        if proto is None:
            proto = self._match(path)
            if len(self._cache) >= _CACHE_MAX:  # unbounded paths (the generic fallback) must not grow it
                self._cache.clear()
            self._cache[path] = proto
        return proto

    def _match(self, path: str) -> WireProtocol:
        for pattern, prefix, proto in self._overrides:
            if path == pattern or (prefix and path.startswith(pattern)):
                return proto
        name = _EXACT.get(path)
        if name is None:
            if path.endswith(_OPENAI_SUFFIXES) or path in _OPENAI_BARE:
                name = "openai"
            elif _KSERVE.match(path):
                name = "kserve"
            else:
                name = "generic"
        return PROTOCOLS[name]

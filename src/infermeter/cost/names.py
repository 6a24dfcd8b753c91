"""Model names as callers spell them -> the names the catalog knows.

The same model arrives as ``gpt-4o-2024-08-06``, ``openai/gpt-4o``, ``models/gemini-1.5-pro-002``,
``anthropic.claude-3-5-sonnet-20240620-v1:0`` or ``accounts/fireworks/models/llama-v3p1-8b-instruct``.
:func:`normalize` drops the path and vendor prefix and lower-cases; :func:`candidates` then yields
the name with version suffixes stripped one at a time, most specific first, so a dated entry in a
user's price file wins over the undated one. Nothing is matched by prefix: an unknown model must
stay unpriced, not borrow a similar model's price.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

__all__ = ["normalize", "candidates"]

# Bedrock-style vendor prefixes: "anthropic.claude-3-haiku-...", "meta.llama3-1-8b-instruct-v1:0".
_VENDOR_DOT = re.compile(r"^(anthropic|meta|mistral|cohere|amazon|ai21|us|eu|apac)\.")

# Version suffixes, tried in order, each stripped at most once per pass.
_SUFFIXES = [
    re.compile(r"-v\d+:\d+$"),  # bedrock -v1:0
    re.compile(r"[-@]\d{4}-\d{2}-\d{2}$"),  # -2024-08-06
    re.compile(r"[-@]\d{8}$"),  # -20241022, @20241022 (Vertex)
    re.compile(r"-(latest|preview|exp)$"),
    re.compile(r"-preview-\d{2}-\d{2}$"),  # gemini-2.5-pro-preview-05-06
    re.compile(r"-\d{4}$"),  # gpt-4-0613, mistral-large-2411
    re.compile(r"-\d{3}$"),  # gemini-1.5-pro-002
]


def normalize(name: str) -> str:
    """Lower-case, without path (``org/``, ``models/``) or Bedrock vendor prefix."""
    s = name.strip().lower()
    s = s.rsplit("/", 1)[-1]
    s = _VENDOR_DOT.sub("", s)
    s = _VENDOR_DOT.sub("", s)  # "us.anthropic.claude-..." (cross-region inference profiles)
    return s


def candidates(name: str) -> Iterator[str]:
    """``name`` normalised, then with one more version suffix removed each time."""
    s = normalize(name)
    seen = set()
    while s and s not in seen:
        seen.add(s)
        yield s
        for pat in _SUFFIXES:
            stripped = pat.sub("", s)
            if stripped != s:
                s = stripped
                break

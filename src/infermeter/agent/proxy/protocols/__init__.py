"""Wire protocols, one module each, behind :class:`~.base.WireProtocol`.

``PROTOCOLS`` maps a name (as used in ``INFERMETER_PROXY_ROUTES``) to its protocol object;
:mod:`..routes` picks one per request path.
"""

from __future__ import annotations

from . import anthropic, generic, kserve, ollama, openai, tgi
from .base import Body, Extracted, WireProtocol, hash_prompt

__all__ = ["PROTOCOLS", "WireProtocol", "Extracted", "Body", "hash_prompt"]

PROTOCOLS: dict[str, WireProtocol] = {
    m.PROTOCOL.name: m.PROTOCOL for m in (openai, ollama, tgi, kserve, anthropic, generic)
}

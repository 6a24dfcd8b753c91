"""The sidecar: a streaming-safe reverse proxy that records every inference request it forwards.

    infermeter proxy --upstream http://127.0.0.1:8000 --listen 0.0.0.0:8100

Programmatic use: :func:`serve` (blocking, agent included) or :class:`ProxyComponent` (a
background part for an existing :class:`~infermeter.agent.agent.Agent`). Both need the ``[proxy]``
extra (aiohttp; uvloop when installed), imported on first use: the wire protocols and the record
building (``protocols``, ``exchange``) need neither, so ``instrument_app`` shares them without it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["serve", "ProxyComponent", "ProxyServer"]


def __getattr__(name: str) -> Any:
    if name in ("serve", "ProxyComponent"):
        from . import component

        return getattr(component, name)
    if name == "ProxyServer":
        from .server import ProxyServer

        return ProxyServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""The sidecar: a streaming-safe reverse proxy that records every inference request it forwards.

    infermeter proxy --upstream http://127.0.0.1:8000 --listen 0.0.0.0:8100

Programmatic use: :func:`serve` (blocking, agent included) or :class:`ProxyComponent` (a
background part for an existing :class:`~infermeter.agent.agent.Agent`). Needs the ``[proxy]``
extra (aiohttp; uvloop when installed).
"""

from __future__ import annotations

from .component import ProxyComponent, serve
from .server import ProxyServer

__all__ = ["serve", "ProxyComponent", "ProxyServer"]

"""Views: named read-only queries the agent API serves and the CLI runs offline alike.

A view is ``fn(ctx, params) -> dict`` where ``ctx.con`` is a DuckDB cursor and ``ctx.agent`` the
running agent (None when a command reads a file directly). The agent serves each view at
``GET /api/v1/<name>?params``; :class:`infermeter.agent.source.DataSource` calls it either way.
Register with ``@view("name")`` in a module listed in ``VIEW_MODULES``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["view", "views", "ViewContext", "VIEW_MODULES"]

VIEW_MODULES = [
    "infermeter.agent.report",
    "infermeter.agent.live_views",
    "infermeter.collectors.views",
    "infermeter.cost.views",
    "infermeter.rules.views",
    "infermeter.exporters.focus",
]

_VIEWS: dict[str, Callable[["ViewContext", dict[str, str]], dict[str, Any]]] = {}


@dataclass
class ViewContext:
    con: Any
    agent: Any = None


def view(name: str) -> Callable:
    def register(fn: Callable) -> Callable:
        _VIEWS[name] = fn
        return fn

    return register


def views() -> dict[str, Callable[[ViewContext, dict[str, str]], dict[str, Any]]]:
    for mod in VIEW_MODULES:
        importlib.import_module(mod)
    return _VIEWS

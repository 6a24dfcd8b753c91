"""The ``recommendations`` view: served at ``GET /api/v1/recommendations`` by the agent and run
offline on a store file by ``infermeter recommend``.

Parameters: ``window`` (a duration, default the ``recommend_window_s`` setting, 24 h) and
``history`` (how many stored runs to list with it, default 0).
"""

from __future__ import annotations

from typing import Any

from ..agent.views import ViewContext, view
from ..config import Settings, parse_duration
from . import history
from .engine import evaluate

__all__ = ["recommendations_view"]


@view("recommendations")
def recommendations_view(ctx: ViewContext, params: dict[str, str]) -> dict[str, Any]:
    settings = ctx.agent.settings if ctx.agent is not None else Settings.load()
    window = params.get("window")
    try:
        window_s = parse_duration(window) if window else settings.recommend_window_s
        n_history = int(params.get("history") or 0)
    except ValueError as e:
        raise ValueError(f"bad window={window!r} or history={params.get('history')!r}: {e}") from e
    if window_s <= 0 or n_history < 0:
        raise ValueError("window must be positive and history not negative")
    from .catalog_lookup import load_catalog

    ev = evaluate(ctx.con, window_s=window_s, thresholds=settings.rules, catalog=load_catalog(settings.price_file))
    out = ev.to_dict()
    if n_history:
        out["history"] = history.runs(ctx.con, n_history)
    return out

"""Live views for ``infermeter top``: per-model and per-tenant rates, and the tail of recent requests.

Common parameters: ``since`` (a window: '5m', '1h', '24h', '7d'; 'all'), ``until_ns`` (the end of
the window, epoch ns; default now: a fixed value makes a view reproducible), ``model`` and
``tenant`` (case-insensitive substring filters). Rates are over the part of the window that has
data (a store that began 2 minutes ago has a 2-minute 1h rate), reported as ``span_s``.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from ..store import queries
from .views import ViewContext, view

__all__ = ["models_view", "tenants_view", "requests_view", "DEFAULT_WINDOW", "MAX_TAIL"]

DEFAULT_WINDOW = "1h"
MAX_TAIL = 500


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).isoformat(timespec="seconds")


def _window(params: dict[str, str]) -> dict[str, Any]:
    """Parse the shared parameters; ValueError (the API's 400) names the bad one."""
    from ..config import parse_duration

    since = params.get("since") or DEFAULT_WINDOW
    until_raw = params.get("until_ns")
    try:
        until_ns = int(until_raw) if until_raw else time.time_ns() + 1
    except ValueError as e:
        raise ValueError(f"bad until_ns={until_raw!r}: expected epoch nanoseconds") from e
    if since == "all":
        since_ns = 0
    else:
        try:
            since_ns = until_ns - int(parse_duration(since) * 1e9)
        except ValueError as e:
            raise ValueError(f"bad since={since!r}: {e}") from e
    return {
        "since": since,
        "since_ns": since_ns,
        "until_ns": until_ns,
        "model": params.get("model") or None,
        "tenant": params.get("tenant") or None,
    }


def _span_s(con: Any, w: dict[str, Any]) -> float:
    """Seconds of the window that have data: from the window start or the first record, whichever is later."""
    first = queries.run_one(con, "live.first_ns", until_ns=w["until_ns"])
    start = max(w["since_ns"], (first or {}).get("first_ns") or w["until_ns"])
    return max((w["until_ns"] - start) / 1e9, 1.0)


def _enrich(rows: list[dict[str, Any]], span_s: float) -> Decimal | None:
    """Add rates and unit costs to each row; returns the total cost (None when nothing is priced)."""
    priced = [r["cost_usd"] for r in rows if r["cost_usd"] is not None]
    total = sum(priced, Decimal(0)) if priced else None
    for r in rows:
        for name in ("latency", "ttft"):
            q = r.pop(f"{name}_q") or (None, None)
            r[f"{name}_p50_s"], r[f"{name}_p95_s"] = q
        tokens = (r["input_tokens"] or 0) + (r["output_tokens"] or 0)
        r["requests_per_s"] = r["requests"] / span_s
        r["tokens_per_s"] = tokens / span_s
        cost = r["cost_usd"]
        priced_requests = r["requests"] - r["unpriced_requests"] - r["pending_requests"]
        r["usd_per_1k_requests"] = cost / priced_requests * 1000 if cost is not None and priced_requests else None
        r["usd_per_1m_tokens"] = cost / r["priced_tokens"] * 1_000_000 if cost is not None and r["priced_tokens"] else None
        r["share_of_spend"] = float(cost / total) if cost is not None and total else None
        r.pop("first_ns", None)
        r["last_request"] = _iso(r.pop("last_ns")) if r.get("last_ns") else None
    return total


def _grouped(ctx: ViewContext, params: dict[str, str], query: str, key: str) -> dict[str, Any]:
    w = _window(params)
    rows = queries.run(ctx.con, query, since_ns=w["since_ns"], until_ns=w["until_ns"], model=w["model"], tenant=w["tenant"])
    span_s = _span_s(ctx.con, w)
    total = _enrich(rows, span_s)
    return {
        "since": w["since"],
        "window_start": _iso(w["since_ns"]) if w["since_ns"] else None,
        "until": _iso(w["until_ns"]),
        "span_s": span_s,
        "filters": {"model": w["model"], "tenant": w["tenant"]},
        "requests": sum(r["requests"] for r in rows),
        "cost_usd": total,
        "unpriced_requests": sum(r["unpriced_requests"] for r in rows),
        "pending_requests": sum(r["pending_requests"] for r in rows),
        key: rows,
    }


@view("models")
def models_view(ctx: ViewContext, params: dict[str, str]) -> dict[str, Any]:
    """Per model over the window: requests/s, tokens/s, latency and TTFT percentiles, $ per 1k requests and per 1M tokens, share of spend."""
    return _grouped(ctx, params, "live.by_model", "models")


@view("tenants")
def tenants_view(ctx: ViewContext, params: dict[str, str]) -> dict[str, Any]:
    """The same figures per tenant (requests with no tenant are '(none)')."""
    return _grouped(ctx, params, "live.by_tenant", "tenants")


@view("requests")
def requests_view(ctx: ViewContext, params: dict[str, str]) -> dict[str, Any]:
    """The most recent requests before ``until_ns`` (``limit``, default 50, at most 500); no prompt text exists to show."""
    w = _window(params)
    raw = params.get("limit") or "50"
    try:
        limit = int(raw)
        if not 0 < limit <= MAX_TAIL:
            raise ValueError
    except ValueError as e:
        raise ValueError(f"bad limit={raw!r}: expected 1..{MAX_TAIL}") from e
    rows = queries.run(ctx.con, "live.tail", until_ns=w["until_ns"], model=w["model"], tenant=w["tenant"], limit=limit)
    for r in rows:
        r["start"] = _iso(r["start_time_ns"])
    return {"until": _iso(w["until_ns"]), "filters": {"model": w["model"], "tenant": w["tenant"]}, "requests": rows}

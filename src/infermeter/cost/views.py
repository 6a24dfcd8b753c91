"""The ``costs`` view: where the money goes, over any window, served by the agent and run offline.

``GET /api/v1/costs?since=24h&group_by=tenant``: per group the cost and its provenance, $ per 1k
requests and per 1M tokens, usage cost, GPU-seconds, energy and CO2e (and per model the
API-equivalent cost of the self-hosted tokens); the box's instance, idle and unallocated cost;
and the rates: burn rate now, spend today, a 30-day projection.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from ..agent.views import ViewContext, view
from ..store import queries
from .catalog import Catalog, cached_catalog
from .rollups import COSTS_SCHEMA, first_activity_ns, hosted_spend, regroup, request_stats, schema_version, share_stats

__all__ = ["cost_groups", "instance_totals", "rates", "per", "view_catalog", "window_bounds"]

logger = logging.getLogger(__name__)

_NANO = Decimal("0.000000001")
HOUR_NS = 3_600 * 10**9
GROUPS = ("model", "tenant", "endpoint", "operation")
BURN_LOOKBACK_NS = 15 * 60 * 10**9  # hosted spend rate is measured over the last 15 minutes
LIVE_HOST_NS = 5 * 60 * 10**9  # a box counts as running if its agent was seen this recently


def per(amount: Decimal | None, count: int | None, scale: int) -> Decimal | None:
    """``amount / count * scale`` to the nano-dollar; None when either is unknown or count is 0."""
    if amount is None or not count:
        return None
    return (Decimal(amount) * scale / count).quantize(_NANO)


def window_bounds(params: dict[str, str], now_ns: int | None = None) -> tuple[int, int]:
    """``since`` (a duration, or 'all') before now -> [since_ns, until_ns)."""
    from ..config import parse_duration

    until = (now_ns or time.time_ns()) + 1
    since = params.get("since") or "all"
    if since == "all":
        return 0, until
    try:
        return until - int(parse_duration(since) * 1e9), until
    except ValueError as e:
        raise ValueError(f"bad since={since!r}: {e}") from e


def view_catalog(ctx: ViewContext) -> Catalog:
    cost = getattr(ctx.agent, "cost", None)
    if cost is not None:
        return cost.catalog
    from ..config import Settings
    from ..errors import InfermeterError

    try:
        return cached_catalog(Settings.load().price_file)
    except InfermeterError as e:  # an offline report still works with the shipped prices
        logger.warning("using the shipped price catalog: %s", e)
        return cached_catalog(None)


def cost_groups(con: Any, group_by: str, since_ns: int, until_ns: int, catalog: Catalog | None = None,
                rows: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Cost per model / tenant / endpoint / operation, with unit costs, usage, GPU time and energy.

    ``rows`` are :func:`~infermeter.cost.rollups.request_stats` of the window, when the caller has them.
    """
    if group_by not in GROUPS:
        raise ValueError(f"bad group_by={group_by!r}: expected one of {', '.join(GROUPS)}")
    label = "(unknown)" if group_by == "model" else "(none)"
    if rows is None:
        rows = request_stats(con, since_ns, until_ns)
    totals = regroup(rows, group_by, label)
    by_source: dict[str, dict[str, Decimal]] = {}
    for r in rows:
        if r["cost_usd"] is not None and r["cost_source"] in ("provider", "catalog", "gpu_time"):
            src = by_source.setdefault(r[group_by] if r[group_by] is not None else label, {})
            src[r["cost_source"]] = src.get(r["cost_source"], Decimal(0)) + r["cost_usd"]
    self_hosted = regroup([r for r in rows if r["cost_source"] == "gpu_time"], group_by, label)
    shares = regroup(share_stats(con, since_ns, until_ns), group_by, label)
    out = []
    for key, r in totals.items():
        s = shares.get(key, {})
        sh = self_hosted.get(key, {})
        self_n = sh.get("requests", 0)
        g = {
            group_by: key,
            "requests": r["requests"],
            "input_tokens": r["input_tokens"],
            "output_tokens": r["output_tokens"],
            "cost_usd": r["cost_usd"],
            "cost_by_source_usd": by_source.get(key, {}),
            "unpriced_requests": r["unpriced_requests"],
            "pending_requests": r["pending_requests"],
            "cost_per_1k_requests_usd": per(r["cost_usd"], r["requests"] - r["unpriced_requests"] - r["pending_requests"], 1000),
            "cost_per_1m_tokens_usd": per(r["cost_usd"], r["priced_tokens"], 1_000_000),
            "usage_cost_usd": s.get("usage_cost_usd"),
            "gpu_s": s.get("gpu_s"),
            "energy_j": s["energy_mj"] / 1000 if s.get("energy_mj") is not None else None,
            "co2e_g": s.get("co2e_g"),
            "gpu_s_per_request": s["gpu_s"] / self_n if s.get("gpu_s") is not None and self_n else None,
            "energy_j_per_request": s["energy_mj"] / 1000 / self_n if s.get("energy_mj") is not None and self_n else None,
        }
        if group_by == "model" and catalog is not None and self_n:
            offer = catalog.api_equivalent(key)
            if offer is not None:
                g["api_equivalent_usd"] = offer.cost_usd(sh["input_tokens"] or 0, sh["output_tokens"] or 0)
                g["api_equivalent_offer"] = f"{offer.provider}/{offer.model} (as of {offer.as_of})"
        out.append(g)
    out.sort(key=lambda g: (g["cost_usd"] is None, -(g["cost_usd"] or 0), -g["requests"], g[group_by]))
    return out


def _hosted_spend(rows: list[dict[str, Any]]) -> Decimal | None:
    return _add(*(r["cost_usd"] for r in rows if r["cost_source"] in ("provider", "catalog")))


def instance_totals(con: Any, since_ns: int, until_ns: int) -> dict[str, Any]:
    """The box over the window: its cost, what was used, idle, unallocated, energy."""
    w = queries.run_one(con, "costs.windows_total", since_ns=since_ns, until_ns=until_ns) if _has_costs(con) else {}
    w = w or {}
    inst = w.get("instance_cost_usd")
    idle = w.get("idle_cost_usd")
    return {
        "windows": w.get("windows", 0),
        "instance_cost_usd": inst,
        "usage_cost_usd": w.get("usage_cost_usd"),
        "idle_cost_usd": idle,
        "idle_share": float(idle / inst) if inst and idle is not None else None,
        "allocated_cost_usd": w.get("allocated_cost_usd"),
        "unallocated_cost_usd": w.get("unallocated_cost_usd"),
        "busy_share": w["busy_s"] / w["window_s"] if w.get("window_s") else None,
        "energy_j": w["energy_mj"] / 1000 if w.get("energy_mj") is not None else None,
        "idle_energy_j": w["idle_energy_mj"] / 1000 if w.get("idle_energy_mj") is not None else None,
        "co2e_g": w.get("co2e_g"),
    }


def rates(con: Any, now_ns: int | None = None, day_rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Burn rate now, spend today (UTC), and the trailing day extrapolated to 30 days.

    ``day_rows``: :func:`~infermeter.cost.rollups.request_stats` of the trailing 24 h, if the caller has them.
    """
    now = now_ns or time.time_ns()
    if not _has_costs(con):  # a store from before cost attribution, read as it is
        return {"pending_attribution_requests": 0, "burn_rate_usd_per_hour": None, "spend_today_usd": None,
                "projected_30d_usd": None, "projection_basis_h": 0.0, "running_boxes": []}
    hosts = [p for p in queries.run(con, "costs.current_prices")
             if p["hourly_usd"] is not None and now - p["last_seen_ns"] <= LIVE_HOST_NS]
    recent = hosted_spend(con, now - BURN_LOOKBACK_NS, now + 1)
    burn = (recent or Decimal(0)) * (HOUR_NS // BURN_LOOKBACK_NS) + sum((p["hourly_usd"] for p in hosts), Decimal(0))
    midnight = int(datetime.fromtimestamp(now / 1e9, tz=timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()) * 10**9
    day_lo = now + 1 - 24 * HOUR_NS  # [day_lo, now + 1): the same 24 h as a report ending at now + 1
    day_hosted = _hosted_spend(day_rows) if day_rows is not None else hosted_spend(con, day_lo, now + 1)
    day_box = queries.run_one(con, "costs.windows_total", since_ns=day_lo, until_ns=now + 1)["instance_cost_usd"]
    today_box = queries.run_one(con, "costs.windows_total", since_ns=midnight, until_ns=now + 1)["instance_cost_usd"]
    today = _add(hosted_spend(con, midnight, now + 1), today_box)
    first = first_activity_ns(con, day_lo, now + 1)
    covered_ns = now - first if first is not None else 0
    day_spend = _add(day_hosted, day_box)
    projected = (day_spend * 30 * 24 * HOUR_NS / covered_ns).quantize(_NANO) if day_spend is not None and covered_ns > 0 else None
    pending = queries.run_one(con, "costs.pending_requests", until_ns=now + 1)["n"]
    return {
        "pending_attribution_requests": pending,
        "burn_rate_usd_per_hour": burn.quantize(_NANO) if (hosts or recent is not None) else None,
        "spend_today_usd": today,
        "projected_30d_usd": projected,
        "projection_basis_h": round(covered_ns / HOUR_NS, 3),
        "running_boxes": [{k: p[k] for k in ("host", "hourly_usd", "source")} for p in hosts],
    }


def _has_costs(con: Any) -> bool:
    return schema_version(con) >= COSTS_SCHEMA


def _add(*xs: Decimal | None) -> Decimal | None:
    known = [x for x in xs if x is not None]
    return sum(known, Decimal(0)) if known else None


@view("costs")
def costs_view(ctx: ViewContext, params: dict[str, str]) -> dict[str, Any]:
    """``since``: a duration or 'all' (default); ``group_by``: model (default), tenant, endpoint, operation."""
    since_ns, until_ns = window_bounds(params)
    group_by = params.get("group_by") or "model"
    groups = cost_groups(ctx.con, group_by, since_ns, until_ns, view_catalog(ctx))
    costs = [g["cost_usd"] for g in groups if g["cost_usd"] is not None]
    out = {
        "since": _iso(since_ns) if since_ns else None,
        "until": _iso(until_ns),
        "group_by": group_by,
        "requests": sum(g["requests"] for g in groups),
        "cost_usd": sum(costs, Decimal(0)) if costs else None,
        "unpriced_requests": sum(g["unpriced_requests"] for g in groups),
        "pending_requests": sum(g["pending_requests"] for g in groups),
        "groups": groups,
        "instance": instance_totals(ctx.con, since_ns, until_ns),
        **rates(ctx.con, until_ns - 1),
    }
    cost = getattr(ctx.agent, "cost", None)
    if cost is not None:
        out["pricing"] = cost.stats()
    return out


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).isoformat(timespec="seconds")


"""The cost and usage report: one dict, served by the agent API and printed by the CLI."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any


__all__ = ["build_report", "format_report"]


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).isoformat(timespec="seconds")


def build_report(con: Any, since_s: float | None = None, until_ns: int | None = None) -> dict[str, Any]:
    """Per-model summary over ``[now - since_s, until)``; ``since_s=None`` means all time.

    Read through the 10-minute rollups plus the raw rows they do not cover (see
    :mod:`infermeter.cost.rollups`), so a day over millions of requests stays fast; latency
    quantiles come from 5 % histogram buckets. Cost parts (:mod:`infermeter.cost.views`): per
    model the unit costs and GPU energy; for the box its instance, idle and unallocated cost;
    burn rate, spend today, 30 days.
    """
    from ..cost.rollups import latency_histograms, quantile, regroup, request_stats
    from ..cost.views import cost_groups, instance_totals, rates

    until = until_ns or time.time_ns() + 1
    since = 0 if since_s is None else until - int(since_s * 1e9)
    rows = request_stats(con, since, until)
    hist = latency_histograms(con, since, until)
    costs = {g["model"]: g for g in cost_groups(con, "model", since, until, rows=rows)}
    models = []
    for name, r in regroup(rows, "model", "(unknown)").items():
        key = None if name == "(unknown)" else name
        c = costs.get(name, {})
        models.append({
            "model": name,
            "requests": r["requests"],
            "errors": r["errors"],
            "cancelled": r["cancelled"],
            "input_tokens": r["input_tokens"],
            "output_tokens": r["output_tokens"],
            "estimated_token_requests": r["estimated_token_requests"],
            "latency_p50_s": quantile(hist.get((key, "duration")), 0.5),
            "latency_p95_s": quantile(hist.get((key, "duration")), 0.95),
            "ttft_p50_s": quantile(hist.get((key, "ttft")), 0.5),
            "cost_usd": r["cost_usd"],
            "unpriced_requests": r["unpriced_requests"],
            "pending_requests": r["pending_requests"],
            **{k: c.get(k) for k in ("cost_per_1k_requests_usd", "cost_per_1m_tokens_usd", "energy_j", "gpu_s", "usage_cost_usd")},
        })
    models.sort(key=lambda m: (m["cost_usd"] is None, -(m["cost_usd"] or 0), -m["requests"], m["model"]))
    total_cost = None
    for m in models:
        if m["cost_usd"] is not None:
            total_cost = (total_cost or 0) + m["cost_usd"]
    box = instance_totals(con, since, until)
    return {
        "since": _iso(since) if since else None,
        "until": _iso(until),
        "requests": sum(m["requests"] for m in models),
        "errors": sum(m["errors"] for m in models),
        "cost_usd": total_cost,
        "unpriced_requests": sum(m["unpriced_requests"] for m in models),
        "pending_requests": sum(m["pending_requests"] for m in models),
        "models": models,
        "instance_cost_usd": box["instance_cost_usd"],
        "idle_cost_usd": box["idle_cost_usd"],
        "idle_share": box["idle_share"],
        "unallocated_cost_usd": box["unallocated_cost_usd"],
        "energy_j": box["energy_j"],
        **rates(con, until - 1, day_rows=rows if until - since == 24 * 3600 * 10**9 else None),
    }


def _fmt(v: Any, kind: str = "") -> str:
    if v is None:
        return "unpriced" if kind == "$" else "-"  # a rate ("$/") is unknown when its cost or its tokens are
    if kind in ("$", "$/"):
        return f"${float(v):,.4f}"
    if kind == "J":
        return f"{float(v) / 1000:,.2f}kJ" if v >= 1000 else f"{float(v):,.1f}J"
    if kind == "s":
        return f"{float(v) * 1000:,.0f}ms" if v < 10 else f"{float(v):,.1f}s"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def format_report(rep: dict[str, Any]) -> str:
    """A plain-text table of the report, for terminals and logs."""
    cols = [("model", "model", ""), ("requests", "requests", ""), ("errors", "errors", ""),
            ("in tok", "input_tokens", ""), ("out tok", "output_tokens", ""), ("p50", "latency_p50_s", "s"),
            ("p95", "latency_p95_s", "s"), ("ttft p50", "ttft_p50_s", "s"), ("cost", "cost_usd", "$"),
            ("$/1k req", "cost_per_1k_requests_usd", "$/"), ("$/1M tok", "cost_per_1m_tokens_usd", "$/"),
            ("energy", "energy_j", "J"), ("unpriced", "unpriced_requests", "")]
    if any(m.get("pending_requests") for m in rep["models"]):
        cols.append(("pending", "pending_requests", ""))
    rows = [[_fmt(m.get(key), kind) for _, key, kind in cols] for m in rep["models"]]
    header = [c[0] for c in cols]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = []
    window = f"since {rep['since']}" if rep.get("since") else "all time"
    lines.append(f"infermeter report ({window}, until {rep['until']})")
    if not rows:
        lines.append("no requests recorded in this window")
        return "\n".join(lines)
    lines.append("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths))))
    for r in rows:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    total = _fmt(rep.get("cost_usd"), "$")
    lines.append(f"total: {rep['requests']:,} requests, {rep['errors']:,} errors, cost {total}"
                 + (f" ({rep['unpriced_requests']:,} requests unpriced)" if rep.get("unpriced_requests") else "")
                 + (f" ({rep['pending_requests']:,} pending: their cost windows are not final yet)"
                    if rep.get("pending_requests") else ""))
    lines.extend(_format_cost_lines(rep))
    return "\n".join(lines)


def _format_cost_lines(rep: dict[str, Any]) -> list[str]:
    """The box and the rates, under the table; 'unknown' where no price is configured."""
    out = []
    if rep.get("instance_cost_usd") is not None:
        share = f" ({rep['idle_share']:.0%} of it)" if rep.get("idle_share") is not None else ""
        out.append(f"box: {_fmt(rep['instance_cost_usd'], '$')} for this window, idle {_fmt(rep.get('idle_cost_usd'), '$')}{share}"
                   f", not attributable to any request {_fmt(rep.get('unallocated_cost_usd'), '$')}")
    elif rep.get("models"):
        out.append("box: no instance price (set INFERMETER_INSTANCE or INFERMETER_HOURLY_USD to price self-hosted requests)")
    if rep.get("energy_j") is not None:
        out.append(f"GPU energy: {_fmt(rep['energy_j'], 'J')}")
    burn = rep.get("burn_rate_usd_per_hour")
    if burn is not None or rep.get("spend_today_usd") is not None:
        proj = rep.get("projected_30d_usd")
        basis = f" (from {rep.get('projection_basis_h', 0):.1f} h of data)" if proj is not None else ""
        out.append(f"burn rate now: {_fmt(burn, '$') + '/h' if burn is not None else '-'}; spend today: {_fmt(rep.get('spend_today_usd'), '$')}; "
                   f"projected 30 days: {_fmt(proj, '$') if proj is not None else '-'}{basis}")
    return out


from .views import ViewContext, view  # noqa: E402 - registration at the end keeps the module readable


@view("summary")
def summary_view(ctx: ViewContext, params: dict[str, str]) -> dict[str, Any]:
    """``since``: a duration ('1h', '7d') or 'all' (default)."""
    from ..config import parse_duration

    since = params.get("since")
    try:
        since_s = parse_duration(since) if since and since != "all" else None
    except ValueError as e:
        raise ValueError(f"bad since={since!r}: {e}") from e
    rep = build_report(ctx.con, since_s)
    if ctx.agent is not None:
        rep["pipeline"] = ctx.agent.pipeline.stats()
    return rep

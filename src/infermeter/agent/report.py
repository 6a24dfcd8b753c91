"""The cost and usage report: one dict, served by the agent API and printed by the CLI."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from ..store import queries

__all__ = ["build_report", "format_report"]


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).isoformat(timespec="seconds")


def build_report(con: Any, since_s: float | None = None, until_ns: int | None = None) -> dict[str, Any]:
    """Per-model summary over ``[now - since_s, until)``; ``since_s=None`` means all time."""
    until = until_ns or time.time_ns() + 1
    since = 0 if since_s is None else until - int(since_s * 1e9)
    models = queries.run(con, "requests.by_model", since_ns=since, until_ns=until)
    for m in models:
        m.pop("first_ns", None)
        m.pop("last_ns", None)
    total_cost = None
    for m in models:
        if m["cost_usd"] is not None:
            total_cost = (total_cost or 0) + m["cost_usd"]
    return {
        "since": _iso(since) if since else None,
        "until": _iso(until),
        "requests": sum(m["requests"] for m in models),
        "errors": sum(m["errors"] for m in models),
        "cost_usd": total_cost,
        "unpriced_requests": sum(m["unpriced_requests"] for m in models),
        "models": models,
    }


def _fmt(v: Any, kind: str = "") -> str:
    if v is None:
        return "unpriced" if kind == "$" else "-"
    if kind == "$":
        return f"${float(v):,.4f}"
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
            ("unpriced", "unpriced_requests", "")]
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
                 + (f" ({rep['unpriced_requests']:,} requests unpriced)" if rep.get("unpriced_requests") else ""))
    return "\n".join(lines)


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

"""Recommendations as text for a terminal: what to do, what it saves, the evidence, how."""

from __future__ import annotations

import textwrap
from datetime import datetime, timezone
from typing import Any

__all__ = ["format_recommendations"]

_SKIP = {"queries", "assumptions", "current_plan"}


def _usd(v: Any) -> str:
    return "unknown" if v is None else f"${float(v):,.2f}"


def _when(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, list):
        return ",".join(str(x) for x in v) or "-"
    return str(v)


def _wrap(text: str, indent: str = "     ") -> list[str]:
    return textwrap.wrap(text, width=100, initial_indent=indent, subsequent_indent=indent + "  ") or [indent]


def format_recommendations(rep: dict[str, Any]) -> str:
    """Text of a ``recommendations`` view result (the agent's JSON or a local evaluation)."""
    w = rep.get("window") or {}
    lines = []
    if w.get("since_ns"):
        lines.append(f"infermeter recommend: {w['seconds'] / 3600:g} h window {_when(w['since_ns'])} -> "
                     f"{_when(w['until_ns'])} UTC ({w.get('observed_seconds', 0) / 3600:.1f} h with data)")
    if rep.get("status") != "ok":
        lines.append(rep.get("message", "no recommendation"))
        return "\n".join(lines)
    lines.append(f"today: {rep.get('current_plan')}, {_usd(rep.get('current_monthly_usd'))}/month")
    recs = rep.get("recommendations") or []
    taken = [r for r in recs if r.get("status") == "recommended"]
    dropped = [r for r in recs if r.get("status") != "recommended"]
    for i, r in enumerate(taken, 1):
        lines.append("")
        lines.append(f"{i}. {r['action']}: saves {_usd(r['savings_usd_month'])}/month on its own, "
                     f"{_usd(r.get('combined_savings_usd_month'))} in the plan; confidence {r['confidence']:.0%}")
        lines += _wrap(r["title"], "   ")
        ev = r.get("evidence") or {}
        facts = " ".join(f"{k}={_value(v)}" for k, v in ev.items() if k not in _SKIP and v is not None)
        lines += _wrap(f"evidence: {facts}")
        if ev.get("queries"):
            lines += _wrap(f"from queries: {', '.join(ev['queries'])}")
        for a in ev.get("assumptions") or []:
            lines += _wrap(f"assumes: {a}")
        lines += _wrap(f"how: {r['how_to']}")
        if r.get("note"):
            lines += _wrap(f"note: {r['note']}")
    if dropped:
        lines.append("")
        lines.append("not recommended (conflicts):")
        for r in dropped:
            lines += _wrap(f"- {r['action']} (saves {_usd(r['savings_usd_month'])}/month on its own): {r.get('note')}", "  ")
    lines.append("")
    share = rep.get("combined_savings_share")
    if taken:
        lines.append(f"together: {_usd(rep.get('combined_savings_usd_month'))}/month"
                     + (f" ({share:.0%} of {_usd(rep.get('current_monthly_usd'))})" if share is not None else "")
                     + f", ending at {rep.get('final_plan')} ({_usd(rep.get('projected_monthly_usd'))}/month)")
    else:
        lines.append(rep.get("message", "no recommendation"))
    for note in rep.get("notes") or []:
        lines += _wrap(f"note: {note}", "")
    return "\n".join(lines)

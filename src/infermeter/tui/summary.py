"""From a snapshot to what each panel shows: rows, or a note saying why there are none.

Pure functions (no widgets), so the wording of every empty state is decided in one place.
"""

from __future__ import annotations

from typing import Any

from textual.content import Content

from . import format as fmt
from .fetch import Snapshot, ViewResult

__all__ = ["cost_line", "panel_notes"]


def _absent(view: str, result: ViewResult, what: str) -> str | None:
    if result.missing:
        return f"{what} are not available from this agent (it serves no '{view}' view)."
    if result.error:
        return f"Could not load {what.lower()}: {result.error}"
    if result.pending:
        return f"{what} are being worked out by the agent…"
    if result.data is None:
        return "No data yet."
    return None


def _filters(snap: Snapshot) -> str:
    q = snap.query
    parts = [f"{k} ~ {v!r}" for k, v in (("model", q.model), ("tenant", q.tenant)) if v]
    return f" matching {' and '.join(parts)}" if parts else ""


def panel_notes(snap: Snapshot) -> dict[str, tuple[str | None, Any]]:
    """``{panel: (note, rows_or_data)}``: the note is None when there is something to show."""
    window = snap.query.window
    out: dict[str, tuple[str | None, Any]] = {}

    for name, key, what in (("models", "models", "Per-model figures"), ("tenants", "tenants", "Per-tenant figures")):
        r = snap.get(name)
        note = _absent(name, r, what)
        rows = (r.data or {}).get(key) or []
        if note is None and not rows:
            note = (f"No requests in the last {window}{_filters(snap)}.\n"
                    "Send traffic through @infermeter.track, `infermeter proxy` or OTLP, "
                    "press w for a longer window" + (", or x to clear the filter." if _filters(snap) else "."))
        out[name] = (note, rows)

    r = snap.get("requests")
    note = _absent("requests", r, "Recent requests")
    rows = (r.data or {}).get("requests") or []
    if note is None and not rows:
        note = f"No requests recorded yet{_filters(snap)}. Prompt and response text are never stored; this tail shows their metadata."
    out["requests"] = (note, rows)

    r = snap.get("recommendations")
    note = _absent("recommendations", r, "Recommendations")
    data = r.data or {}
    rows = list(data.get("recommendations") or [])
    for i, rec in enumerate(rows):
        rec.setdefault("id", f"{rec.get('action', 'rec')}-{i}")
    if note is None and not rows:
        why = str(data.get("message") or "nothing found to change").rstrip(".")
        note = "\n".join([f"No recommendations: {why}.", *map(str, data.get("notes") or [])])
    out["recommendations"] = (note, rows)

    r = snap.get("gpus")
    note = _absent("gpus", r, "GPU figures")
    if note is None and not (r.data or {}).get("gpus"):
        note = "No GPU seen on the agent's host (no NVIDIA driver, or none sampled yet)."
        host = (snap.get("host").data or {})
        latest = host.get("latest") if isinstance(host.get("latest"), dict) else host
        if latest.get("cpu_pct") is not None:
            note += f"\nHost: CPU {fmt.pct(latest['cpu_pct'])}"
            if latest.get("mem_total_bytes"):
                note += f", memory {fmt.gib(latest.get('mem_used_bytes'))}/{fmt.gib(latest['mem_total_bytes'])} GiB"
    out["gpus"] = (note, r.data)
    return out


def cost_line(snap: Snapshot) -> Content:
    """The header: burn rate, spend today, 30-day projection and idle share, from the cost view.

    Without a cost view it says so, and shows what the requests alone tell (priced spend in the
    window); it never shows an unknown as $0.
    """
    muted = "$text-muted"
    costs = snap.get("costs")
    if costs.data:
        c = costs.data
        instance = c.get("instance") if isinstance(c.get("instance"), dict) else {}
        burn = c.get("burn_rate_usd_per_hour")
        today = c.get("spend_today_usd")
        month = c.get("projected_30d_usd", c.get("projection_30d_usd"))
        idle = instance.get("idle_share", c.get("idle_share"))
        parts: list[Any] = []
        for name, value in (
            ("burn ", "-" if burn is None else fmt.money(burn) + "/h"),
            ("today ", fmt.money(today)),
            ("30d ≈ ", fmt.money(month)),
            ("idle ", fmt.share(idle)),
        ):
            parts += [(name, muted), (value, "bold"), "   "]
        if burn is None and today is None and month is None:
            box = (c.get("pricing") or {}).get("box") if isinstance(c.get("pricing"), dict) else None
            parts.append((f"({box or 'nothing priced yet'})", "$warning"))
        return Content.assemble(*parts)
    models = snap.get("models").data or {}
    parts: list[Any] = [(f"spend {snap.query.window} ", muted)]
    unpriced = models.get("unpriced_requests")
    pending = models.get("pending_requests")
    if models.get("cost_usd") is None:
        parts.append(("nothing priced" if unpriced else "-", "bold"))
    else:
        parts.append((fmt.money(models["cost_usd"]), "bold"))
    if unpriced:
        parts.append((f" ({unpriced:,} unpriced)", "$warning"))
    if pending:
        parts.append((f" ({pending:,} pending)", muted))
    why = "no cost view on this agent" if costs.missing else (costs.error or "no cost data yet")
    parts.append((f"   burn, 30d, idle: {why}", muted))
    return Content.assemble(*parts)

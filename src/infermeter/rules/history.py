"""Recommendation history: each evaluation is a run (``recommendation_runs``) with its rows
(``recommendations``), written through the store's single writer and read by named queries."""

from __future__ import annotations

import json
from typing import Any

from ..agent.api import to_jsonable
from ..records import new_request_id
from ..store import queries
from .base import money
from .engine import Evaluation

__all__ = ["save", "runs", "run_recommendations", "has_history"]


def save(store: Any, ev: Evaluation) -> int:
    """Queue the run and its recommendations on the store's writer; returns the run id."""
    run_id = new_request_id()
    recs = [
        (run_id, rank, r.action, r.title, r.status, money(r.savings_usd_month),
         money(r.combined_savings_usd_month) if r.combined_savings_usd_month is not None else None,
         float(r.confidence), r.how_to, r.note, json.dumps(to_jsonable(dict(r.evidence)), default=str))
        for rank, r in enumerate(ev.recommendations, 1)
    ]
    store.submit("recommendation_runs", [(
        run_id, ev.evaluated_ns, ev.since_ns, ev.until_ns, ev.status, ev.message, ev.current_monthly_usd,
        ev.combined_savings_usd_month if ev.status == "ok" else None, len(ev.recommended),
    )])
    store.submit("recommendations", recs)
    return run_id


def has_history(con: Any) -> bool:
    row = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'recommendation_runs'").fetchone()
    return bool(row and row[0])


def runs(con: Any, limit: int = 10) -> list[dict[str, Any]]:
    """The latest runs, newest first (empty when the store predates schema v4)."""
    return queries.run(con, "rules.runs", limit=limit) if has_history(con) else []


def run_recommendations(con: Any, run_id: int) -> list[dict[str, Any]]:
    rows = queries.run(con, "rules.run_recommendations", run_id=run_id)
    for r in rows:
        r["evidence"] = json.loads(r["evidence"])
    return rows

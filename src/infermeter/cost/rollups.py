"""Rollups: 10-minute aggregates that keep a day-long summary over millions of requests fast.

The component (an agent component plus a pipeline sink) rolls each 10-minute block once it is
``horizon`` old -- past the attribution delay, so the block's costs are final -- and re-rolls a
block when something changes it later: a record that arrives after its block was rolled (the sink
sees it), or attribution re-running windows or pricing requests of a rolled block (its
``on_costs_changed`` hook). A block is rebuilt in one transaction, so readers see it whole.

Readers (:func:`request_stats`, :func:`share_stats`, :func:`latency_histograms`) take the rolled
blocks inside their window and aggregate the raw rows for the rest (a partial block at the
start, the last minutes not rolled yet) with the same SQL shape, and add the two: the answer
covers every row whether or not it is rolled, and is exact except latency quantiles, which come
from 5 %-wide histogram buckets (within 2.5 %).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Any

from ..records import InferenceRecord
from ..store import queries

__all__ = ["Rollups", "BLOCK_NS", "split_ranges", "request_stats", "share_stats", "latency_histograms",
           "quantile", "merge_rows", "regroup", "first_activity_ns", "hosted_spend", "schema_version",
           "COSTS_SCHEMA", "ROLLUPS_SCHEMA"]

logger = logging.getLogger(__name__)

BLOCK_NS = 600 * 10**9
_MAX_BLOCKS_PER_PASS = 36  # a backfill of an old store goes 6 hours at a time
_BASE_TABLES = ("requests", "latency", "shares")


def _floor(ts: int) -> int:
    return ts - ts % BLOCK_NS


class Rollups:
    def __init__(self, store: Any, *, horizon_s: float, interval_s: float = 60.0,
                 clock: Callable[[], int] = time.time_ns) -> None:
        self.store = store
        self.horizon_ns = int(horizon_s * 1e9)
        self.interval_s = interval_s
        self.clock = clock
        self.stats = {"blocks_rolled": 0, "blocks_rerolled": 0, "errors": 0}
        self._watermark: int | None = None  # end of the rolled blocks
        self._dirty: dict[int, int] = {}  # block -> not before (ns)
        self._dirty_lock = threading.Lock()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._logged: set[str] = set()

    # -- inputs ---------------------------------------------------------------------------------
    @property
    def sink(self) -> "_Sink":
        return _Sink(self)

    def consume(self, records: Sequence[InferenceRecord]) -> None:
        """Pipeline thread: note records whose block is already rolled."""
        w = self._watermark
        if w is None:
            return
        late = [r.start_time_ns for r in records if r.start_time_ns < w]
        if late:
            self.mark_dirty(min(late), max(late) + 1)

    def on_costs_changed(self, requests_from_ns: int, windows_from_ns: int, windows_to_ns: int) -> None:
        """Attribution hook: requests starting at or after ``requests_from`` got new costs, and the
        windows ``[windows_from, windows_to)`` new shares."""
        w = self._watermark
        if w is None:
            return
        if requests_from_ns < w:
            self.mark_dirty(requests_from_ns, w)
        if windows_from_ns < w:
            self.mark_dirty(windows_from_ns, min(windows_to_ns, w))

    def mark_dirty(self, lo_ns: int, hi_ns: int, not_before_ns: int | None = None) -> None:
        """Re-roll the blocks of ``[lo, hi)``, once ``not_before`` has passed (default: a horizon from now)."""
        due = not_before_ns if not_before_ns is not None else self.clock() + self.horizon_ns
        with self._dirty_lock:
            for b in range(_floor(lo_ns), hi_ns, BLOCK_NS):
                self._dirty[b] = max(self._dirty.get(b, 0), due)

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> "Rollups":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="infermeter-rollups", daemon=True)
            self._thread.start()
        return self

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        """Roll every block that is due now (new blocks past the horizon, dirty blocks whose time came)."""
        self.run_due()
        return True

    def shutdown(self, timeout_s: float = 10.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.run_due()
            except Exception as e:  # noqa: BLE001 - a thread edge: count, log once; readers use raw rows meanwhile
                self.stats["errors"] += 1
                if type(e).__name__ not in self._logged:
                    self._logged.add(type(e).__name__)
                    logger.warning("rollup pass failed: %r (further such errors are counted, not logged)", e)

    # -- rolling -------------------------------------------------------------------------------------
    def run_due(self) -> None:
        with self._lock:
            now = self.clock()
            if self._watermark is None:
                self._watermark = self._initial_watermark(now)
            limit = _floor(now - self.horizon_ns)
            if self._watermark < limit:
                hi = min(limit, self._watermark + _MAX_BLOCKS_PER_PASS * BLOCK_NS)
                self.roll(self._watermark, hi)
                self.stats["blocks_rolled"] += (hi - self._watermark) // BLOCK_NS
                self._watermark = hi
            with self._dirty_lock:
                due = sorted(b for b, t in self._dirty.items() if t <= now and b < self._watermark)
                for b in due:
                    del self._dirty[b]
            for lo, hi in _runs(due):
                self.roll(lo, hi)
                self.stats["blocks_rerolled"] += (hi - lo) // BLOCK_NS

    def _initial_watermark(self, now: int) -> int:
        self.store.force_flush()
        cur = self.store.cursor()
        try:
            last = queries.run_one(cur, "rollups.watermark")["block_ns"]
            if last is not None:
                return last + BLOCK_NS
            first = queries.run_one(cur, "rollups.first_data")["ts_ns"]
        finally:
            cur.close()
        return _floor(first) if first is not None else _floor(now)

    def roll(self, lo_ns: int, hi_ns: int) -> None:
        """(Re)build the blocks of ``[lo, hi)`` (block-aligned) in one transaction."""
        self.store.force_flush()
        cur = self.store.cursor()
        p = {"lo_ns": lo_ns, "hi_ns": hi_ns}
        try:
            cur.execute("BEGIN TRANSACTION")
            try:
                for t in _BASE_TABLES:
                    queries.run(cur, f"rollups.delete_blocks_{t}", **p)
                    queries.run(cur, f"rollups.build_{t}", **p)
                queries.run(cur, "rollups.mark_blocks", now_ns=self.clock(), **p)
                cur.execute("COMMIT")
            except Exception:
                cur.execute("ROLLBACK")
                raise
        finally:
            cur.close()


class _Sink:
    __slots__ = ("consume",)

    def __init__(self, rollups: Rollups) -> None:
        self.consume = rollups.consume


def _runs(blocks: Iterable[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for b in blocks:
        if out and out[-1][1] == b:
            out[-1] = (out[-1][0], b + BLOCK_NS)
        else:
            out.append((b, b + BLOCK_NS))
    return out


# -- reading ---------------------------------------------------------------------------------------

ROLLUPS_SCHEMA = 6  # migration m0006
COSTS_SCHEMA = 3  # migration m0003


def schema_version(con: Any) -> int:
    """The store's schema version: a file opened read-only keeps the version it was written with."""
    return queries.run_one(con, "rollups.schema_version")["v"]


def split_ranges(con: Any, lo_ns: int, hi_ns: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """``[lo, hi)`` as (rolled block runs, raw ranges): together they cover it exactly once."""
    if schema_version(con) < ROLLUPS_SCHEMA:
        return [], [(lo_ns, hi_ns)]
    first = -(-lo_ns // BLOCK_NS) * BLOCK_NS
    rows = queries.run(con, "rollups.blocks", lo_ns=first, hi_ns=hi_ns - BLOCK_NS + 1) if hi_ns - first >= BLOCK_NS else []
    rolled = _runs(r["block_ns"] for r in rows)
    raw, at = [], lo_ns
    for a, b in rolled:
        if a > at:
            raw.append((at, a))
        at = b
    if at < hi_ns:
        raw.append((at, hi_ns))
    return rolled, raw


def _collect(con: Any, lo_ns: int, hi_ns: int, name: str) -> list[dict[str, Any]]:
    rolled, raw = split_ranges(con, lo_ns, hi_ns)
    rows = []
    for a, b in rolled:
        rows += queries.run(con, f"rollups.{name}_rolled", lo_ns=a, hi_ns=b)
    for a, b in raw:
        rows += queries.run(con, f"rollups.{name}_raw", lo_ns=a, hi_ns=b)
    return rows


_REQUEST_KEY = ("model", "tenant", "endpoint", "operation", "cost_source")
_SHARE_KEY = ("model", "tenant", "endpoint", "operation")


def request_stats(con: Any, lo_ns: int, hi_ns: int) -> list[dict[str, Any]]:
    """Request counts, tokens and cost per (model, tenant, endpoint, operation, cost_source).

    ``unpriced_requests`` has no price and will get none; ``pending_requests`` are self-hosted
    requests whose cost windows are not final yet (the raw rows of the last minutes).
    """
    name = "requests" if schema_version(con) >= COSTS_SCHEMA else "requests_precost"
    return merge_rows(_collect(con, lo_ns, hi_ns, name), _REQUEST_KEY)


def share_stats(con: Any, lo_ns: int, hi_ns: int) -> list[dict[str, Any]]:
    """Usage cost, allocation, energy, GPU-s, CO2e per (model, tenant, endpoint, operation), by window time."""
    if schema_version(con) < COSTS_SCHEMA:
        return []
    return merge_rows(_collect(con, lo_ns, hi_ns, "shares"), _SHARE_KEY)


def latency_histograms(con: Any, lo_ns: int, hi_ns: int) -> dict[tuple[Any, str], dict[int, int]]:
    """``{(model, metric): {bucket: n}}`` for metric 'duration' and 'ttft'."""
    out: dict[tuple[Any, str], dict[int, int]] = {}
    for r in _collect(con, lo_ns, hi_ns, "latency"):
        h = out.setdefault((r["model"], r["metric"]), {})
        h[r["bucket"]] = h.get(r["bucket"], 0) + r["n"]
    return out


def quantile(hist: dict[int, int] | None, q: float) -> float | None:
    """The ``q`` quantile of a bucket histogram: the geometric middle of its bucket (0 for zeros)."""
    if not hist:
        return None
    total = sum(hist.values())
    need = q * total
    cum = 0
    for b in sorted(hist):
        cum += hist[b]
        if cum >= need:
            return 0.0 if b == -32768 else math.exp((b + 0.5) * math.log(1.05))
    return None


def merge_rows(rows: Iterable[dict[str, Any]], key: Sequence[str]) -> list[dict[str, Any]]:
    """Add rows with the same key; a sum of only NULLs stays None (unknown, not 0)."""
    out: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        k = tuple(r[c] for c in key)
        acc = out.get(k)
        if acc is None:
            out[k] = dict(r)
            continue
        for c, v in r.items():
            if c in key or v is None:
                continue
            acc[c] = v if acc[c] is None else acc[c] + v
    return list(out.values())


def regroup(rows: Iterable[dict[str, Any]], by: str, label_none: str) -> dict[str, dict[str, Any]]:
    """Merge rows by one key column (``None`` -> ``label_none``), dropping the other key columns."""
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        k = r[by] if r[by] is not None else label_none
        acc = out.get(k)
        vals = {c: v for c, v in r.items() if c not in _REQUEST_KEY}
        if acc is None:
            out[k] = vals
            continue
        for c, v in vals.items():
            if v is not None:
                acc[c] = v if acc[c] is None else acc[c] + v
    return out


def hosted_spend(con: Any, lo_ns: int, hi_ns: int) -> Decimal | None:
    """What hosted-API calls (``provider`` and ``catalog`` costs) that started in ``[lo, hi)`` cost."""
    rolled, raw = split_ranges(con, lo_ns, hi_ns)
    parts = [queries.run_one(con, "rollups.hosted_spend_rolled", lo_ns=a, hi_ns=b)["cost_usd"] for a, b in rolled]
    parts += [queries.run_one(con, "rollups.hosted_spend_raw", lo_ns=a, hi_ns=b)["cost_usd"] for a, b in raw]
    known = [p for p in parts if p is not None]
    return sum(known, Decimal(0)) if known else None


def first_activity_ns(con: Any, lo_ns: int, hi_ns: int) -> int | None:
    """When the first request or cost window in ``[lo, hi)`` started (to the block, where rolled)."""
    rolled, raw = split_ranges(con, lo_ns, hi_ns)
    for a, b in sorted(rolled + raw):
        name = "rollups.first_rolled" if (a, b) in rolled else "rollups.first_raw"
        ts = queries.run_one(con, name, lo_ns=a, hi_ns=b)["ts_ns"]
        if ts is not None:
            return ts
    return None

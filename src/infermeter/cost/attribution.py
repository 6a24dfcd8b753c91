"""Attribution: split the box's price and GPU energy over the requests that ran, window by window.

An agent component and a pipeline sink. Every sample interval, on its own thread, it finalises
the windows that closed ``attribution_delay_s`` ago (aligned with the sampler, so GPU samples sit
on window boundaries). The windows' prices and energies are worked out here, one ``cost_windows``
row each; the requests' shares are computed by DuckDB from the stored requests, one
``request_costs`` row per (request, window) (``costs.insert_request_shares``: the same
largest-remainder splits as :func:`.windows.attribute_window`, which is the reference the tests
hold the SQL to); then ``requests.cost_usd`` of the requests whose last window this was.

Working from the store keeps the per-request work off Python: the sink only watches for late
requests. A request that arrives after its first windows were final (it ran longer than the
delay) marks those windows dirty; they are recomputed from the store, replacing their rows, which
is the same code path as :meth:`Attribution.recompute` -- re-running is idempotent.
``force_flush`` finalises every closed window now; ``shutdown`` does too, then stops.
"""

from __future__ import annotations

import logging
import operator
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..config import Settings
from ..records import CostSource, InferenceRecord
from ..store import queries
from .box import BoxPrice, PriceBook, resolve_box_price
from .catalog import Catalog
from .energy import WindowEnergy, co2e_g_per_mj, window_energies
from .shares import window_cost_nusd
from .windows import Activity, WindowPrice, attribute_window, busy_totals, window_row

__all__ = ["Attribution", "MAX_RESUME_GAP_S"]

logger = logging.getLogger(__name__)

MAX_RESUME_GAP_S = 600
"""On restart, windows missed since the last final one are attributed if the gap is at most this;
a longer gap (the agent was off; whether the box ran is unknown) is not billed."""

_CHUNK_WINDOWS = 600  # windows finalised per pass, to bound memory on catch-up

SHARES_PER_INSERT = 50_000
"""Share rows per INSERT: the window functions hold the rows of their windows in memory, ~300
bytes each (measured: one window of 150k requests fits the default 64MB cap, 250k does not).
Windows are batched up to this many rows."""

SHARES_PER_WINDOW = 100_000
"""A window with more requests than this, or a batch that still hits the memory cap, is split in
Python by :func:`.windows.attribute_window` (the reference the SQL is tested against), holding the
GIL and ~3x slower (measured, a pass over one window of 150k requests: 0.84 s in SQL, 2.3 s so)."""

_SHARE_PARAMS = ("ws", "cost_n", "usage_n", "energy_mj", "by_tokens", "gpus", "co2", "busy_s")


class Attribution:
    def __init__(self, store: Any, settings: Settings, catalog: Catalog, *, pipeline: Any = None,
                 host: str | None = None, clock: Callable[[], int] = time.time_ns) -> None:
        self.store = store
        self.settings = settings
        self.catalog = catalog
        self.pipeline = pipeline
        self.host = host or socket.gethostname()
        self.clock = clock
        self.interval_ns = int(settings.sample_interval_s * 1e9)
        self.delay_ns = int(settings.attribution_delay_s * 1e9)
        self.method = settings.attribution_weighting
        self.box: BoxPrice | None = None
        self.stats = {"windows": 0, "request_rows": 0, "recomputed_windows": 0, "updated_requests": 0, "python_splits": 0,
                      "errors": 0}
        self._book = PriceBook([])
        self._late_lock = threading.Lock()
        self._claimed = 0  # windows before this are (being) finalised: a request starting earlier is late
        self._late: list[tuple[int, int]] = []  # (start, end) of late requests, to recompute
        self._lock = threading.RLock()
        self._origin: int | None = None
        self._watermark: int | None = None
        self._max_duration_ns = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._error_kinds: set[str] = set()
        self.listeners: list[Callable[[int, int, int], None]] = []
        """Called as ``fn(requests_from_ns, windows_from_ns, windows_to_ns)`` after each pass that
        wrote shares (windows in that range) or request costs (requests starting from then on)."""

    # -- sink (pipeline thread) ---------------------------------------------------------------------
    @property
    def sink(self) -> "_Sink":
        """The pipeline sink feeding this attribution (it has no force_flush: ours flushes the pipeline)."""
        return _Sink(self)

    def consume(self, records: Sequence[InferenceRecord]) -> None:
        """Watch a batch (already handed to the store) for late requests and the longest duration."""
        gpu_time = CostSource.GPU_TIME
        if not isinstance(records, (list, tuple)):
            records = list(records)  # read more than once below
        try:
            all_self_hosted = set(map(_SOURCE, records)) == {gpu_time} and None not in map(_ID, records)
        except (TypeError, IndexError):  # record-like objects (tests, older producers): the loop below
            all_self_hosted = False
        if all_self_hosted:  # the common batch: C-level passes instead of the loop, when none is late
            longest = int(max(map(_DURATION, records)) * 1e9)
            with self._late_lock:
                if longest > self._max_duration_ns:
                    self._max_duration_ns = longest
                if min(map(_START, records)) >= self._claimed:
                    return
        with self._late_lock:
            claimed = self._claimed
            longest = self._max_duration_ns
            late = self._late
            for r in records:
                if r.__class__ is not InferenceRecord:  # a record-like object (tests, older producers)
                    r = InferenceRecord(*(getattr(r, f, None) for f in InferenceRecord._fields))
                src, rid, start, dur = _LATE_FIELDS(r)
                if src != gpu_time or rid is None:
                    continue
                d = int(dur * 1e9)
                if d > longest:
                    longest = d
                if start < claimed:
                    late.append((start, start + d if d > 0 else start + 1))
            self._max_duration_ns = longest

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> "Attribution":
        with self._lock:
            if self._origin is None:
                self._begin(self.clock())
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="infermeter-attribution", daemon=True)
                self._thread.start()
        return self

    def force_flush(self, timeout_s: float = 10.0, *, close_current: bool = False) -> bool:
        """Finalise every window closed by now (records still in the pipeline first).

        ``close_current`` also finalises the window in progress, as if the box ran to its end
        (at shutdown, so that no request is left unpriced; it bills at most one interval early).
        """
        if self.pipeline is not None and not self.pipeline.force_flush(timeout_s):
            return False
        with self._lock:
            now = self.clock()
            if self._origin is None:
                self._begin(now)
            self._advance(self._align(now + (self.interval_ns - 1 if close_current else 0)))
        return True

    def shutdown(self, timeout_s: float = 10.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        try:
            self.force_flush(timeout_s, close_current=True)
        except Exception as e:  # noqa: BLE001 - closing anyway; the windows are re-run on restart
            logger.warning("attribution: final windows not written: %r", e)

    def recompute(self, start_ns: int, end_ns: int) -> int:
        """Re-run the final windows in ``[start, end)`` from the store; returns windows written."""
        with self._lock:
            start = max(self._align(start_ns), self._origin or 0)
            end = min(self._align(end_ns + self.interval_ns - 1), self._watermark or 0)
            if end <= start:
                return 0
            priced = self._recompute(start, end)
            lo = self._finish(start, self._watermark, priced)  # every request that touched them and has ended
            self._notify(min(lo, start), start, end)
            return (end - start) // self.interval_ns

    # -- the loop -----------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            now = self.clock()
            wait_s = (self.interval_ns - now % self.interval_ns) / 1e9 + 0.05
            if self._stop.wait(wait_s):
                return
            try:
                self.run_due()
                self.store.release_memory()  # a pass's working memory (~10 MB at 5k requests/s) goes back now
            except Exception as e:  # noqa: BLE001 - a thread edge: count, log once, go on
                self.stats["errors"] += 1
                key = type(e).__name__
                if key not in self._error_kinds:
                    self._error_kinds.add(key)
                    logger.warning("attribution pass failed: %r (further %s errors are counted, not logged)", e, key)

    def run_due(self) -> None:
        """One pass of the loop: finalise the windows that closed ``attribution_delay_s`` ago."""
        with self._lock:
            if self._origin is None:
                self._begin(self.clock())
            self._advance(self._align(self.clock() - self.delay_ns))

    def _align(self, ts_ns: int) -> int:
        return ts_ns - ts_ns % self.interval_ns

    def _begin(self, now_ns: int) -> None:
        aligned = self._align(now_ns)
        cur = self.store.cursor()
        try:
            last = queries.run_one(cur, "costs.last_window_end", host=self.host)["end_ns"]
            longest = queries.run_one(cur, "costs.max_duration", since_ns=now_ns - 86_400 * 10**9)["max_s"]
        finally:
            cur.close()
        self._max_duration_ns = int((longest or 0) * 1e9)
        if last is not None and last >= aligned:  # restarted within a window the last run closed early
            self._origin = self._watermark = last
        elif last is not None and aligned - last <= MAX_RESUME_GAP_S * 10**9:
            self._origin = self._watermark = last
        else:
            self._origin = self._watermark = aligned
        with self._late_lock:
            self._claimed = max(self._claimed, aligned)
        self._resolve_price()
        if self._watermark < aligned:
            start = self._watermark
            priced = self._recompute(start, aligned)
            self._watermark = aligned
            self._finish(start, aligned, priced)

    def _resolve_price(self) -> None:
        """Write the box's price row when it differs from the last one; load the price history."""
        cur = self.store.cursor()
        try:
            gpus = None
            if self.box is None or self.box.needs_gpu_count:
                since = (self._watermark or self.clock()) - 300 * 10**9
                gpus = queries.run_one(cur, "costs.gpus_seen", host=self.host, since_ns=since)["n"] or None
            box = resolve_box_price(self.settings, self.catalog, gpus) if (self.box is None or self.box.needs_gpu_count) else self.box
            rows = queries.run(cur, "costs.instance_prices", host=self.host)
            if not rows or not box.same_as(rows[-1]):
                eff = max(self._watermark or 0, rows[-1]["effective_from_ns"] + 1 if rows else 0)
                queries.run(cur, "costs.insert_instance_price", host=self.host, effective_from_ns=eff,
                            **{k: v for k, v in zip(_PRICE_COLS, box.row(self.host, eff, self.clock())[2:])})
                rows = queries.run(cur, "costs.instance_prices", host=self.host)
            self.box = box
            self._book = PriceBook(rows)
        finally:
            cur.close()

    # -- finalisation -----------------------------------------------------------------------------------
    def _advance(self, until: int) -> None:
        """Finalise live windows up to ``until``, then recompute the windows late records touched."""
        with self._late_lock:
            # From here on, a request starting before `until` may miss this pass: it counts as late.
            self._claimed = max(self._claimed, until)
            late, self._late = self._late, []
        if until <= self._watermark and not late:
            return
        try:
            self._finalise(until, late)
        except BaseException:
            with self._late_lock:  # the next pass retries them
                self._late[:0] = late
            raise

    def _finalise(self, until: int, late: list[tuple[int, int]]) -> None:
        self.store.force_flush()  # every record consumed before now, and the samples, are readable
        if self.box is not None and self.box.needs_gpu_count:
            self._resolve_price()
        a0 = self._watermark
        priced = False
        while self._watermark < until:
            a = self._watermark
            b = min(until, a + _CHUNK_WINDOWS * self.interval_ns)
            priced = self._write_windows(a, b) or priced
            self._watermark = b
        lo = a0
        dirty = [(max(self._origin, s - s % self.interval_ns), min(e, a0)) for s, e in late if e > self._origin]
        for d0, d1 in _merge(dirty):
            end = d1 if d1 % self.interval_ns == 0 else self._align(d1) + self.interval_ns
            priced = self._recompute(d0, end) or priced
            lo = min(lo, d0)
        first = self._finish(lo, self._watermark, priced)
        self._notify(min(first, lo), lo, self._watermark)

    def _recompute(self, start: int, end: int) -> bool:
        """Replace the rows of the final windows ``[start, end)``; True when any had a price."""
        self.store.force_flush()  # rows of these windows still queued would come back after the delete
        cur = self.store.cursor()
        try:
            for name in ("costs.delete_request_costs", "costs.delete_windows"):
                queries.run(cur, name, host=self.host, start_ns=start, end_ns=end)
        finally:
            cur.close()
        priced = False
        for a in range(start, end, _CHUNK_WINDOWS * self.interval_ns):
            priced = self._write_windows(a, min(end, a + _CHUNK_WINDOWS * self.interval_ns)) or priced
        self.stats["recomputed_windows"] += (end - start) // self.interval_ns
        return priced

    def _write_windows(self, a: int, b: int) -> bool:
        """Write the rows of windows ``[a, b)``; True when any window had a price.

        The window rows are queued on the store's writer; the shares are inserted at once, so
        that :meth:`_finish` can sum them."""
        step = self.interval_ns
        n = (b - a) // step
        lo = a - self._max_duration_ns - step
        cur = self.store.cursor()
        try:
            active = {r["ws"]: r for r in queries.run(cur, "costs.window_activity", lo_ns=lo, a_ns=a, b_ns=b, step_ns=step)}
            samples = queries.run(cur, "costs.gpu_energy_samples", host=self.host, lo_ns=a - step // 2, hi_ns=b + step // 2 + 1)
            energies = window_energies(((s["ts_ns"], s["gpu_uuid"], s["power_w"], s["energy_j"]) for s in samples), a, step, n)
            now = self.clock()
            windows = []
            batch: list[tuple] = []  # (shares parameters, price, energy, active requests) of windows to split
            batch_rows = 0
            rows = 0
            priced = False
            for i in range(n):
                ws = a + i * step
                price = self._price(ws, ws + step)
                priced = priced or price.cost_nusd is not None
                act = active.get(ws)
                window, shares = _window_row(self.host, ws, step, act, price, energies[i], self.method, now)
                windows.append(window)
                if shares is None:
                    continue
                if batch and batch_rows + act["n"] > SHARES_PER_INSERT:
                    rows += self._insert_shares(cur, batch, lo, now)
                    batch, batch_rows = [], 0
                batch.append((shares, price, energies[i], act["n"]))
                batch_rows += act["n"]
            if batch:
                rows += self._insert_shares(cur, batch, lo, now)
            self.store.submit("cost_windows", windows)
        finally:
            cur.close()
        self.stats["windows"] += n
        self.stats["request_rows"] += rows
        return priced

    def _insert_shares(self, cur: Any, batch: list[tuple], lo: int, now: int) -> int:
        """Insert the shares of a batch of windows (SQL); a window too big for the store's memory
        cap is split in Python by the reference implementation instead. Returns the rows written."""
        import duckdb  # loaded already: the store is open

        step = self.interval_ns
        a, b = batch[0][0][0], batch[-1][0][0] + step
        bounds = {"lo_ns": lo, "a_ns": a, "b_ns": b, "step_ns": step}
        if len(batch) > 1 or batch[0][3] <= SHARES_PER_WINDOW:
            params = dict(zip(_SHARE_PARAMS, (list(col) for col in zip(*(x[0] for x in batch)))))
            try:
                return cur.execute(queries.sql("costs.insert_request_shares"), {**params, **bounds, "host": self.host}).fetchone()[0]
            except duckdb.OutOfMemoryException as e:
                logger.info("attribution: %d windows' shares did not fit the store's memory (%s); splitting them in Python", len(batch), e)
        self.stats["python_splits"] += 1
        rows = queries.run(cur, "costs.activities", lo_ns=lo, a_ns=a, b_ns=b)
        acts = [Activity(r["request_id"], r["start_ns"], max(r["end_ns"], r["start_ns"] + 1), r["tokens"],
                         r["model"], r["tenant"], r["endpoint"], r["operation"]) for r in rows]
        written = 0
        for shares, price, energy, _n in batch:
            ws = shares[0]
            _, out = attribute_window(self.host, ws, ws + step, [x for x in acts if x.start_ns < ws + step and x.end_ns > ws],
                                      price, energy, self.method, now)
            self.store.submit("request_costs", out)
            written += len(out)
        self.store.force_flush()  # _finish sums them
        return written

    def _price(self, ws: int, we: int) -> WindowPrice:
        hit = self._book.at(ws)
        if hit is None:
            return WindowPrice(None, None, None, None)
        row, hourly_n = hit
        cost = window_cost_nusd(hourly_n, row["effective_from_ns"], ws, we) if hourly_n is not None else None
        return WindowPrice(row["hourly_usd"], cost, row["gpu_count"], co2e_g_per_mj(row["grid_gco2e_per_kwh"], row["pue"]))

    def _notify(self, requests_from_ns: int, windows_from_ns: int, windows_to_ns: int) -> None:
        for fn in self.listeners:
            fn(requests_from_ns, windows_from_ns, windows_to_ns)

    def _finish(self, from_ns: int, hi_ns: int, priced: bool) -> int:
        """Write the totals (sum of their allocation shares) of the requests whose last window is
        now final: those ending in ``(from_ns, hi_ns]``. Returns the earliest start among them
        (``from_ns`` when none)."""
        if not priced:
            return from_ns
        self.store.force_flush()
        lo = self._align(from_ns - self._max_duration_ns) - self.interval_ns
        params = {"lo_ns": lo, "from_ns": from_ns, "hi_ns": hi_ns}
        cur = self.store.cursor()
        try:
            first = queries.run_one(cur, "costs.finished_min_start", **params)["start_ns"]
            if first is None:
                return from_ns
            n = cur.execute(queries.sql("costs.update_finished_totals"),
                            {**params, "host": self.host, "step_ns": self.interval_ns}).fetchone()[0]
        finally:
            cur.close()
        self.stats["updated_requests"] += n
        return first


class _Sink:
    __slots__ = ("consume",)

    def __init__(self, attribution: Attribution) -> None:
        self.consume = attribution.consume


_PRICE_COLS = ("hourly_usd", "cloud", "instance_type", "pricing", "gpu_type", "gpu_count", "region",
               "grid_gco2e_per_kwh", "pue", "source", "recorded_at_ns")


_F = InferenceRecord._fields.index
_LATE_FIELDS = operator.itemgetter(_F("cost_source"), _F("request_id"), _F("start_time_ns"), _F("duration_s"))
_SOURCE, _ID, _START, _DURATION = (operator.itemgetter(_F(f)) for f in ("cost_source", "request_id", "start_time_ns", "duration_s"))


def _window_row(host: str, ws: int, step: int, act: dict | None, price: WindowPrice, energy: WindowEnergy | None,
                method: str, now_ns: int) -> tuple[tuple, tuple | None]:
    """A window's ``cost_windows`` row from its activity aggregates (``costs.window_activity``),
    and the parameters of its shares (None: no request was active)."""
    n = act["n"] if act else 0
    busy = act["busy_ns"] if act else 0
    if method != "tokens" or not n or not act["all_tokens"]:
        method = "time"
    window = window_row(host, ws, ws + step, price, energy, busy, n, method, now_ns)
    if not n:
        return window, None
    usage_total, e_busy = busy_totals(price, energy, busy, step)
    gpus = energy.gpu_count if energy is not None else price.gpu_count
    return window, (ws, price.cost_nusd, usage_total, e_busy, method == "tokens", gpus, price.co2e_g_per_mj, busy / 1e9)


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(r for r in ranges if r[1] > r[0]):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out

"""Attribution: split the box's price and GPU energy over the requests that ran, window by window.

An agent component and a pipeline sink. As a sink it keeps the self-hosted (``gpu_time``) records
it sees, in memory; on its own thread, every sample interval, it finalises the windows that
closed ``attribution_delay_s`` ago (aligned with the sampler, so GPU samples sit on window
boundaries): price and energy per window, one ``cost_windows`` row, one ``request_costs`` row per
active request (see :mod:`.windows` for the split), then ``requests.cost_usd`` of the requests
whose last window this was. A request that arrives after its first windows were final (it ran
longer than the delay) marks those windows dirty; they are recomputed from the store, replacing
their rows, which is the same code path as :meth:`Attribution.recompute` -- re-running is
idempotent. ``force_flush`` finalises every closed window now; ``shutdown`` does too, then stops.
"""

from __future__ import annotations

import logging
import operator
import socket
import threading
import time
from array import array
from collections.abc import Callable, Sequence
from typing import Any

from ..config import Settings
from ..records import CostSource, InferenceRecord
from ..store import queries
from .box import BoxPrice, PriceBook, resolve_box_price
from .catalog import Catalog
from .energy import co2e_g_per_mj, window_energies
from .shares import window_cost_nusd
from .windows import Activity, WindowPrice, attribute_window

__all__ = ["Attribution", "MAX_RESUME_GAP_S"]

logger = logging.getLogger(__name__)

MAX_RESUME_GAP_S = 600
"""On restart, windows missed since the last final one are attributed if the gap is at most this;
a longer gap (the agent was off; whether the box ran is unknown) is not billed."""

_CHUNK_WINDOWS = 600  # windows finalised per pass, to bound memory on catch-up


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
        self.stats = {"windows": 0, "request_rows": 0, "recomputed_windows": 0, "updated_requests": 0, "errors": 0}
        self._book = PriceBook([])
        self._pending = Activities()
        self._pending_lock = threading.Lock()
        self._active: list[Activity] = []  # started before the watermark, still running after it
        self._waiting: dict[int, Activities] = {}  # starting at or after the watermark, by window
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
        with self._pending_lock:
            self._pending.add_records(records)

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
            acts, priced = self._recompute(start, end)
            lo = min((a.start_ns for a in acts), default=start)
            self._finish([a.request_id for a in acts], lo, end, priced)
            self._notify(lo, start, end)
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
        self._resolve_price()
        if self._watermark < aligned:
            acts, priced = self._recompute(last, aligned)
            self._watermark = aligned
            self._finish([a.request_id for a in acts], min((a.start_ns for a in acts), default=aligned), aligned, priced)

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
        if until <= self._watermark and not self._pending:
            return
        self.store.force_flush()  # the samples (and records) written before now are readable
        if self.box is not None and self.box.needs_gpu_count:
            self._resolve_price()
        with self._pending_lock:
            new, self._pending = self._pending, Activities()
        a = a0 = self._watermark
        dirty = []
        step = self.interval_ns
        origin = self._origin
        longest = self._max_duration_ns
        waiting = self._waiting
        for i, (s, e) in enumerate(zip(new.start_ns, new.end_ns)):
            if e - s > longest:
                longest = e - s
            if s < a:
                if e > origin:
                    dirty.append((max(origin, s - s % step), min(a, e)))
                if e > a:
                    self._active.append(new.activity(i))
                # else: wholly inside final windows: the recompute below covers it
                continue
            w = s - s % step
            bucket = waiting.get(w)
            if bucket is None:
                bucket = waiting[w] = Activities()
            bucket.add_from(new, i)
        self._max_duration_ns = longest
        done_ids: list[int] = []
        lo = a
        priced = False
        while a < until:
            b = min(until, a + _CHUNK_WINDOWS * self.interval_ns)
            acts = self._active
            for w in sorted(k for k in waiting if k < b):
                acts += waiting.pop(w).activities()
            priced = self._write_windows(a, b, acts) or priced
            finished = [x for x in acts if x.end_ns <= b]
            done_ids += [x.request_id for x in finished]
            lo = min([lo, *(x.start_ns for x in finished)])
            self._active = [x for x in acts if x.end_ns > b]
            a = self._watermark = b
        for d0, d1 in _merge(dirty):
            racts, rpriced = self._recompute(self._align(d0), d1 if d1 % self.interval_ns == 0 else self._align(d1) + self.interval_ns)
            done_ids += [x.request_id for x in racts]
            lo = min([lo, *(x.start_ns for x in racts)])
            priced = priced or rpriced
            a0 = min(a0, self._align(d0))
        self._finish(done_ids, lo, self._watermark, priced)
        self._notify(lo, a0, self._watermark)

    def _recompute(self, start: int, end: int) -> tuple[list[Activity], bool]:
        self.store.force_flush()
        cur = self.store.cursor()
        try:
            rows = queries.run(cur, "costs.activities", lo_ns=start - self._max_duration_ns - self.interval_ns,
                               hi_ns=end, after_ns=start)
            for name in ("costs.delete_request_costs", "costs.delete_windows"):
                queries.run(cur, name, host=self.host, start_ns=start, end_ns=end)
        finally:
            cur.close()
        acts = [Activity(r["request_id"], r["start_ns"], max(r["end_ns"], r["start_ns"] + 1), r["tokens"],
                         r["model"], r["tenant"], r["endpoint"], r["operation"]) for r in rows]
        priced = False
        for a in range(start, end, _CHUNK_WINDOWS * self.interval_ns):
            priced = self._write_windows(a, min(end, a + _CHUNK_WINDOWS * self.interval_ns), acts) or priced
        self.stats["recomputed_windows"] += (end - start) // self.interval_ns
        return acts, priced

    def _write_windows(self, a: int, b: int, acts: Sequence[Activity]) -> bool:
        """Compute and queue the rows of windows ``[a, b)``; True when any window had a price."""
        step = self.interval_ns
        n = (b - a) // step
        buckets: list[list[Activity]] = [[] for _ in range(n)]
        for act in acts:
            i0 = max(0, (act.start_ns - a) // step)
            i1 = min(n, -(-(act.end_ns - a) // step))
            for i in range(i0, i1):
                buckets[i].append(act)
        cur = self.store.cursor()
        try:
            samples = queries.run(cur, "costs.gpu_energy_samples", host=self.host, lo_ns=a - step // 2, hi_ns=b + step // 2 + 1)
        finally:
            cur.close()
        energies = window_energies(((s["ts_ns"], s["gpu_uuid"], s["power_w"], s["energy_j"]) for s in samples), a, step, n)
        now = self.clock()
        windows, rows = [], []
        priced = False
        for i in range(n):
            ws = a + i * step
            price = self._price(ws, ws + step)
            priced = priced or price.cost_nusd is not None
            w, r = attribute_window(self.host, ws, ws + step, buckets[i], price, energies[i], self.method, now)
            windows.append(w)
            rows.extend(r)
        self.store.submit("cost_windows", windows)
        self.store.submit("request_costs", rows)
        self.stats["windows"] += n
        self.stats["request_rows"] += len(rows)
        return priced

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

    def _finish(self, ids: list[int], lo: int, hi: int, priced: bool) -> None:
        """Write the requests' totals (sum of their allocation shares) once their rows are stored."""
        if not ids or not priced:
            return
        self.store.force_flush()
        cur = self.store.cursor()
        try:
            queries.run(cur, "costs.update_request_totals", host=self.host, ids=ids, lo_ns=self._align(lo), hi_ns=hi)
        finally:
            cur.close()
        self.stats["updated_requests"] += len(ids)


class _Sink:
    __slots__ = ("consume",)

    def __init__(self, attribution: Attribution) -> None:
        self.consume = attribution.consume


_PRICE_COLS = ("hourly_usd", "cloud", "instance_type", "pricing", "gpu_type", "gpu_count", "region",
               "grid_gco2e_per_kwh", "pue", "source", "recorded_at_ns")


_F = InferenceRecord._fields.index
_ACTIVITY_FIELDS = operator.itemgetter(_F("cost_source"), _F("request_id"), _F("start_time_ns"), _F("duration_s"),
                                       _F("input_tokens"), _F("output_tokens"), _F("request_model"), _F("response_model"),
                                       _F("tenant"), _F("endpoint"), _F("operation"))


class Activities:
    """Self-hosted requests waiting for their windows, stored column-wise.

    At a few thousand requests per second, ``attribution_delay_s`` (30 s) of them are held in
    memory. As :class:`Activity` tuples that is 264 bytes each (measured with tracemalloc:
    31.7 MB for 120k); here it is four 8-byte integers plus one reference to a shared label tuple.
    """

    __slots__ = ("request_id", "start_ns", "end_ns", "tokens", "labels", "_intern")

    def __init__(self) -> None:
        self.request_id = array("q")
        self.start_ns = array("q")
        self.end_ns = array("q")
        self.tokens = array("q")  # -1: unknown
        self.labels: list[tuple] = []  # (model, tenant, endpoint, operation), interned
        self._intern: dict[tuple, tuple] = {}

    def __len__(self) -> int:
        return len(self.request_id)

    def add_records(self, records: Sequence[InferenceRecord]) -> None:
        """Add the self-hosted (gpu_time) records that have an id; others are not attributed."""
        rid_a, start_a, end_a, tok_a, labels = (self.request_id.append, self.start_ns.append, self.end_ns.append,
                                                self.tokens.append, self.labels.append)
        intern = self._intern
        gpu_time = CostSource.GPU_TIME
        for r in records:
            if r.__class__ is not InferenceRecord:  # a record-like object (tests, older producers)
                r = InferenceRecord(*(getattr(r, f, None) for f in InferenceRecord._fields))
            src, rid, start, dur, inp, out, req_model, resp_model, tenant, endpoint, op = _ACTIVITY_FIELDS(r)
            if src != gpu_time or rid is None:
                continue
            end = start + int(dur * 1e9)
            rid_a(rid)
            start_a(start)
            end_a(end if end > start else start + 1)
            tok_a(-1 if inp is None and out is None else (inp or 0) + (out or 0))
            label = (req_model or resp_model, tenant, endpoint, op)
            labels(intern.setdefault(label, label))

    def add_from(self, other: "Activities", i: int) -> None:
        self.request_id.append(other.request_id[i])
        self.start_ns.append(other.start_ns[i])
        self.end_ns.append(other.end_ns[i])
        self.tokens.append(other.tokens[i])
        self.labels.append(other.labels[i])

    def activity(self, i: int) -> Activity:
        t = self.tokens[i]
        return Activity(self.request_id[i], self.start_ns[i], self.end_ns[i], None if t < 0 else t, *self.labels[i])

    def activities(self) -> list[Activity]:
        return [Activity(rid, s, e, None if t < 0 else t, *label)
                for rid, s, e, t, label in zip(self.request_id, self.start_ns, self.end_ns, self.tokens, self.labels)]


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(r for r in ranges if r[1] > r[0]):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out

"""The sampler: one loop that asks every collector for readings at each tick.

Ticks fall on multiples of the interval on the wall clock (12:00:00, 12:00:01, ...), computed
from the tick number, not from "now + interval", so they never drift; ``ts_ns`` of every row is
the tick's aligned time, the same for all collectors. If a tick is overdue by a whole interval
(the machine was suspended, a collector blocked) the missed ticks are counted and skipped, never
run late in a burst. A wall clock stepped backwards by more than two intervals is realigned
and logged. Each tick's rows go to the sink (the store) as one batch per table, and the tick's
readings become :meth:`Sampler.latest` for gauges and live views.

A collector that raises is logged once (and again only after it has recovered), counted and
skipped for that tick; the others go on. A collector that sets ``done`` (no GPU) is dropped.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

from .clock import Clock, SystemClock, next_tick_ns
from .readings import GpuReading, Reading, Snapshot

__all__ = ["Sampler", "Collector", "RowSink"]

logger = logging.getLogger(__name__)


class Collector(Protocol):
    """Reads something at a tick. ``done`` True means "nothing to read here, ever" (then dropped)."""

    name: str
    done: bool

    def collect(self, ts_ns: int) -> Sequence[Reading]: ...

    def close(self) -> None: ...


class RowSink(Protocol):
    """Where rows go: :class:`~infermeter.store.Store` is one."""

    def submit(self, table: str, rows: Sequence[Sequence[Any]]) -> bool: ...


class Sampler:
    def __init__(
        self,
        collectors: Sequence[Collector],
        sink: RowSink | None = None,
        *,
        interval_s: float = 1.0,
        clock: Clock | None = None,
        host: str | None = None,
    ) -> None:
        if not interval_s > 0:
            raise ValueError("interval_s must be positive")
        self.collectors = list(collectors)
        self.sink = sink
        self.interval_ns = round(interval_s * 1e9)
        self.clock = clock or SystemClock()
        self.host = host or socket.gethostname()
        self.ticks = 0
        self.ticks_missed = 0
        self.clock_steps = 0
        self.rows_dropped = 0
        self.collector_errors: dict[str, int] = {}
        self.tick_cpu_ns_total = 0
        self.tick_cpu_ns_max = 0
        self.last_ts_ns: int | None = None
        self._latest = Snapshot()
        self._failing: set[str] = set()
        self._tick_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    # -- life cycle -------------------------------------------------------------------------------------
    def start(self) -> "Sampler":
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(target=self._run, name="infermeter-sampler", daemon=True)
            self._thread.start()
        return self

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        """Wait for a tick in progress, then until the sink has stored every row submitted."""
        if not self._tick_lock.acquire(timeout=timeout_s):
            return False
        self._tick_lock.release()
        flush = getattr(self.sink, "force_flush", None)
        return bool(flush(timeout_s)) if flush is not None else True

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Stop the loop and close the collectors. Idempotent; the sink is not ours to close."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                logger.warning("infermeter: sampler did not stop within %.1fs", timeout_s)
        with self._tick_lock:
            for c in self.collectors:
                try:
                    c.close()
                except Exception as e:  # noqa: BLE001 - closing anyway
                    logger.debug("closing collector %s failed: %r", c.name, e)

    # -- reading --------------------------------------------------------------------------------------------
    def latest(self) -> Snapshot:
        """The last tick's readings (an empty Snapshot before the first tick)."""
        return self._latest

    def stats(self) -> dict[str, Any]:
        n = self.ticks
        return {
            "interval_s": self.interval_ns / 1e9,
            "collectors": [c.name for c in self.collectors],
            "ticks": n,
            "ticks_missed": self.ticks_missed,
            "clock_steps": self.clock_steps,
            "last_ts_ns": self.last_ts_ns,
            "rows_dropped": self.rows_dropped,
            "collector_errors": dict(self.collector_errors),
            "tick_cpu_ms_mean": (self.tick_cpu_ns_total / n / 1e6) if n else None,
            "tick_cpu_ms_max": self.tick_cpu_ns_max / 1e6 if n else None,
        }

    # -- the loop -----------------------------------------------------------------------------------------------
    def _run(self) -> None:
        iv, clock, stop = self.interval_ns, self.clock, self._stop
        next_ts = next_tick_ns(clock.time_ns(), iv)
        while not stop.is_set():
            now = clock.time_ns()
            if next_ts - now > 2 * iv:
                self.clock_steps += 1
                logger.warning("infermeter: the wall clock went back %.1fs; sampler ticks realigned", (next_ts - now) / 1e9)
                next_ts = next_tick_ns(now, iv)
                continue
            if now < next_ts:
                if clock.wait((next_ts - now) / 1e9, stop):
                    break
                continue
            behind = (now - next_ts) // iv
            if behind:
                self.ticks_missed += behind
                next_ts += behind * iv
                logger.warning("infermeter: sampler fell %d tick(s) behind (a slow collector, or the machine slept); skipped them", behind)
            try:
                self.tick(next_ts)
            except Exception as e:  # noqa: BLE001 - a thread edge: the loop must survive
                logger.error("infermeter: sampler tick failed: %r", e)
            next_ts += iv

    def tick(self, ts_ns: int) -> Snapshot:
        """Run every collector for the tick at ``ts_ns``, store the rows, and return the snapshot."""
        with self._tick_lock:
            t0 = time.thread_time_ns()
            readings: list[Reading] = []
            for c in list(self.collectors):
                try:
                    got = c.collect(ts_ns)
                except Exception as e:  # noqa: BLE001 - one broken collector never stops the others
                    self._collector_failed(c, e)
                    continue
                if c.name in self._failing:
                    self._failing.discard(c.name)
                    logger.warning("infermeter: collector %s works again", c.name)
                readings.extend(got)
                if getattr(c, "done", False):
                    self.collectors.remove(c)
                    c.close()
            self._store(readings)
            snap = Snapshot.of(ts_ns, readings)
            self._latest = snap
            self.ticks += 1
            self.last_ts_ns = ts_ns
            dt = time.thread_time_ns() - t0
            self.tick_cpu_ns_total += dt
            self.tick_cpu_ns_max = max(self.tick_cpu_ns_max, dt)
            return snap

    def _collector_failed(self, c: Collector, e: Exception) -> None:
        self.collector_errors[c.name] = self.collector_errors.get(c.name, 0) + 1
        if c.name not in self._failing:
            self._failing.add(c.name)
            logger.warning("infermeter: collector %s failed, skipped until it works again: %r", c.name, e)

    def _store(self, readings: list[Reading]) -> None:
        if self.sink is None or not readings:
            return
        host = self.host
        tables: dict[str, list[tuple[Any, ...]]] = {}
        for r in readings:
            tables.setdefault(r.TABLE, []).append(r.row(host))
            if isinstance(r, GpuReading) and r.processes:
                tables.setdefault("gpu_process_samples", []).extend(r.process_rows(host))
        for table, rows in tables.items():
            if not self.sink.submit(table, rows):
                self.rows_dropped += len(rows)

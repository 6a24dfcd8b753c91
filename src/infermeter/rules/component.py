"""The agent's recommender: re-evaluates the rules every ``recommend_interval_s`` and stores each run.

A background part like the others: ``start()``, ``force_flush()``, idempotent ``shutdown()``.
``run_once()`` evaluates now (tests and the first run after start-up use it). A failed run is
logged once per kind of error and counted; it never stops the agent.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from .engine import Evaluation, evaluate

__all__ = ["Recommender", "install"]

logger = logging.getLogger(__name__)


class Recommender:
    def __init__(self, store: Any, settings: Any, *, interval_s: float | None = None) -> None:
        self.store = store
        self.settings = settings
        self.interval_s = settings.recommend_interval_s if interval_s is None else interval_s
        self.latest: Evaluation | None = None
        self.runs = 0
        self.errors = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._done = threading.Condition()
        self._error_kinds: set[str] = set()

    def start(self) -> "Recommender":
        if self._thread is None and self.interval_s > 0:
            self._thread = threading.Thread(target=self._run, name="infermeter-recommender", daemon=True)
            self._thread.start()
        return self

    def run_once(self) -> Evaluation:
        """Evaluate the window ending now and store the run (queued on the store's writer)."""
        from .catalog_lookup import load_catalog
        from .history import save

        with self._lock:
            cur = self.store.cursor()
            try:
                ev = evaluate(cur, window_s=self.settings.recommend_window_s, thresholds=self.settings.rules,
                              catalog=load_catalog(self.settings.price_file))
            finally:
                cur.close()
            save(self.store, ev)
            self.latest = ev
        with self._done:
            self.runs += 1
            self._done.notify_all()
        return ev

    def wait_for_runs(self, n: int, timeout_s: float = 10.0) -> bool:
        """Block until ``n`` runs have finished (the periodic ones included); False on timeout."""
        with self._done:
            return self._done.wait_for(lambda: self.runs >= n, timeout_s)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.run_once()
            except Exception as e:  # noqa: BLE001 - a thread edge: count, log once per kind, go on
                self.errors += 1
                kind = type(e).__name__
                if kind not in self._error_kinds:
                    self._error_kinds.add(kind)
                    logger.warning("recommendations not evaluated: %r (further %s errors are counted)", e, kind)

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        """Nothing is buffered here: each run is queued on the store as it finishes."""
        return self.store.force_flush(timeout_s)

    def shutdown(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)


def install(agent: Any) -> Recommender | None:
    """Add a recommender to ``agent`` when ``recommend_interval_s`` > 0."""
    if agent.settings.recommend_interval_s <= 0 or agent.store is None:
        return None
    rec = Recommender(agent.store, agent.settings)
    agent.add_component(rec)
    return rec

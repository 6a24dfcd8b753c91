"""One poll of every view the TUI shows, off the UI thread; no Textual here.

The poller learns which views the agent serves (``GET /api/v1`` lists its routes; a file source
knows its own), so a view another part has not shipped yet reads "not available", not an error.
A source that stops answering makes the whole snapshot ``lost``: the app keeps the last data and
shows a banner, and the next poll re-learns the views (the agent may have been upgraded).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..agent.source import AgentSource, AgentUnavailable, DataSource
from ..errors import InfermeterError

__all__ = ["Query", "ViewResult", "Snapshot", "Poller", "VIEWS", "InProcessSource"]

logger = logging.getLogger(__name__)

VIEWS = ("costs", "models", "tenants", "gpus", "host", "recommendations", "requests")
"""Every view the TUI reads, in the order one poll asks for them."""

SLOW_VIEWS = {"recommendations": 30.0}
"""Views asked at most this often (seconds): the rules engine evaluates a whole day each time."""


@dataclass(frozen=True)
class Query:
    """What the user is looking at: window, filters, and (for reproducible screens) a fixed clock."""

    window: str = "1h"
    model: str | None = None
    tenant: str | None = None
    until_ns: int | None = None  # None: the agent's now
    tail_limit: int = 100

    def params(self, view: str) -> dict[str, Any]:
        if view == "recommendations":
            return {}  # evaluated over the agent's own window (24h by default), whatever is on screen
        p: dict[str, Any] = {"until_ns": self.until_ns}
        if view in ("models", "tenants", "requests"):
            p.update(model=self.model, tenant=self.tenant)
        if view == "requests":
            p["limit"] = self.tail_limit
        else:
            p["since"] = self.window
        return p


@dataclass
class ViewResult:
    data: dict[str, Any] | None = None
    missing: bool = False  # the agent has no such view
    error: str | None = None
    pending: bool = False  # asked, no answer yet (a slow view)


@dataclass
class Snapshot:
    query: Query
    views: dict[str, ViewResult] = field(default_factory=dict)
    lost: str | None = None  # why the source did not answer; the views are then empty
    fetched_ns: int = 0
    took_s: float = 0.0  # how long the poll took

    def get(self, name: str) -> ViewResult:
        return self.views.get(name) or ViewResult(missing=True)


class InProcessSource(DataSource):
    """The views of an agent running in this process, without HTTP (the demo when its API is off)."""

    def __init__(self, agent: Any) -> None:
        self.agent = agent
        self.description = f"in-process agent ({agent.settings.db})"

    def view(self, name: str, **params: Any) -> dict[str, Any]:
        from ..agent.views import ViewContext, views

        fn = views().get(name)
        if fn is None:
            raise InfermeterError(f"no view named {name!r}")
        cur = self.agent.store.cursor()
        try:
            return fn(ViewContext(cur, self.agent), {k: str(v) for k, v in params.items() if v is not None})
        except ValueError as e:
            raise InfermeterError(str(e)) from e
        finally:
            cur.close()


class Poller:
    """Asks a :class:`DataSource` for every view; ``fetch`` is called from one worker thread at a time.

    Slow views (``SLOW_VIEWS``) are asked on a thread of their own at most that often, so a poll
    never waits for them: it returns their last answer (``pending`` before the first), and
    ``on_slow_answer`` is called when a new one lands, so the caller can poll again at once.
    """

    def __init__(self, source: DataSource, clock: Any = time.monotonic, on_slow_answer: Any = None) -> None:
        self.source = source
        self.available: set[str] | None = None
        self.clock = clock
        self.on_slow_answer = on_slow_answer
        self._slow: dict[str, tuple[float, ViewResult]] = {}  # view -> (when asked, answer)
        self._slow_running: set[str] = set()
        self._lock = threading.Lock()

    def _learn_views(self) -> set[str]:
        if isinstance(self.source, AgentSource):
            index = self.source.get("/api/v1")
            prefix = "GET /api/v1/"
            return {r[len(prefix):] for r in index.get("routes", []) if r.startswith(prefix)}
        from ..agent.views import views

        return set(views())

    def _ask(self, name: str, query: Query) -> ViewResult:
        try:
            return ViewResult(self.source.view(name, **query.params(name)))
        except AgentUnavailable:
            raise
        except InfermeterError as e:
            return ViewResult(error=str(e))
        except Exception as e:  # noqa: BLE001 - one broken view must not blank the others
            logger.debug("view %s failed", name, exc_info=True)
            return ViewResult(error=f"{type(e).__name__}: {e}")

    def _slow_view(self, name: str, query: Query, force: bool) -> ViewResult:
        with self._lock:
            cached = self._slow.get(name)
            stale = cached is None or force or self.clock() - cached[0] >= SLOW_VIEWS[name]
            if stale and name not in self._slow_running:
                self._slow_running.add(name)
                threading.Thread(target=self._refresh_slow, args=(name, query), daemon=True,
                                 name=f"infermeter-top-{name}").start()
        return cached[1] if cached is not None else ViewResult(pending=True)

    def _refresh_slow(self, name: str, query: Query) -> None:
        try:
            result = self._ask(name, query)
        except AgentUnavailable as e:
            result = ViewResult(error=str(e))
        with self._lock:
            self._slow[name] = (self.clock(), result)
            self._slow_running.discard(name)
        if self.on_slow_answer is not None:
            try:
                self.on_slow_answer(name)
            except Exception:  # noqa: BLE001 - a thread edge (the app may be closing)
                logger.debug("slow-view callback failed", exc_info=True)

    def fetch(self, query: Query, force: bool = False) -> Snapshot:
        """Ask every view; ``force`` also re-asks the slow ones (a manual refresh)."""
        snap = Snapshot(query, fetched_ns=query.until_ns or time.time_ns())
        started = time.perf_counter()
        try:
            if self.available is None:
                self.available = self._learn_views()
            for name in VIEWS:
                if name not in self.available:
                    snap.views[name] = ViewResult(missing=True)
                elif name in SLOW_VIEWS:
                    snap.views[name] = self._slow_view(name, query, force)
                else:
                    snap.views[name] = self._ask(name, query)
        except AgentUnavailable as e:
            self.available = None
            with self._lock:
                self._slow.clear()
            snap.views.clear()
            snap.lost = str(e)
        except Exception as e:  # noqa: BLE001 - a thread edge: the UI shows it and polls again
            logger.debug("poll failed", exc_info=True)
            snap.views.clear()
            snap.lost = f"{type(e).__name__}: {e}"
        snap.took_s = time.perf_counter() - started
        return snap

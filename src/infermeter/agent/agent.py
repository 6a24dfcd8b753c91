"""The agent: owns the store, the pipeline and the API; everything else talks to it.

One process owns a DuckDB file (DuckDB's rule). The agent writes a marker beside it naming its
API, so other commands find it. ``start()``, ``force_flush()``, idempotent ``shutdown()``.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

from .. import __version__
from ..config import Settings, parse_hostport
from ..errors import InfermeterError
from ..store import Store, open_store
from .api import ApiServer, Request, Response, json_response
from .pipeline import Pipeline, StoreSink

__all__ = ["Agent"]

logger = logging.getLogger(__name__)

STORE_WAL_CHECKPOINT = "4MB"
"""The agent's store checkpoints every 4 MB of WAL (DuckDB's default: 16 MB). Rows appended since
the last checkpoint stay in memory, ~400 bytes each uncompressed: a sidecar at 4-5k requests/s held
up to ~18 MB of them at the default (measured with ``duckdb_memory()``)."""


class Agent:
    def __init__(self, settings: Settings, *, announce: bool = False) -> None:
        self.settings = settings
        self.announce = announce
        self.store: Store | None = None
        self.pipeline = Pipeline(
            queue_size=settings.queue_size, batch_size=settings.batch_size, flush_interval_s=settings.flush_interval_s
        )
        self.api: ApiServer | None = None
        self.components: list[Any] = []  # extra background parts: start/force_flush/shutdown
        self.started_ns: int | None = None
        self.sampler: Any = None  # collectors.Sampler: latest() -> Snapshot of GPU/host/server readings
        self._stopped = False

    @property
    def api_url(self) -> str | None:
        return self.api.url if self.api is not None else None

    def start(self) -> "Agent":
        s = self.settings
        if s.api:
            host, port = parse_hostport(s.api)
            try:
                self.api = ApiServer(host, port)
            except OSError as e:
                logger.warning("infermeter: API not started, %s is taken (%s); set INFERMETER_API to another host:port or 'off'", s.api, e.strerror)
        self.store = open_store(s.db, api_url=self.api_url, memory_limit=s.store_memory_limit, threads=s.store_threads,
                                wal_autocheckpoint=STORE_WAL_CHECKPOINT, write_delay_s=s.store_write_delay_s)
        self.store.start()
        self.pipeline.sinks.append(StoreSink(self.store))
        from ..cost import install as install_cost

        self.cost = install_cost(self)  # pricing processor; attribution as a sink and a component
        from ..exporters.wiring import attach_exporters

        self.exporters = attach_exporters(self)  # metrics sink, /metrics, OTLP export, OTLP receiver
        from ..rules.component import install as install_recommender

        self.recommender = install_recommender(self)  # re-evaluates and stores recommendations periodically
        self.pipeline.start()
        if self.api is not None:
            self._add_routes(self.api)
            self.api.start()
        if s.sampling and self.sampler is None:
            self._add_sampler()
        for c in self.components:
            c.start()
        self.started_ns = time.time_ns()
        if self.announce:
            where = self.api_url or "no API"
            print(f"infermeter: agent started (store {os.path.abspath(s.db)}, API {where})", file=sys.stderr)
        return self

    def _add_sampler(self) -> None:
        try:
            from ..collectors import build_sampler

            self.sampler = build_sampler(self.settings, self.store)
        except Exception as e:  # noqa: BLE001 - no samples is telemetry lost, never a failed start
            logger.warning("infermeter: sampler not started: %r", e)
            return
        self.add_component(self.sampler)

    def add_component(self, component: Any) -> None:
        self.components.append(component)
        if self.started_ns is not None:
            component.start()

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        ok = True
        for c in self.components:
            try:
                ok = c.force_flush(timeout_s) and ok
            except Exception as e:  # noqa: BLE001
                logger.warning("flush of %s failed: %r", type(c).__name__, e)
                ok = False
        return self.pipeline.force_flush(timeout_s) and ok

    def shutdown(self, timeout_s: float = 10.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        for c in reversed(self.components):
            try:
                c.shutdown(timeout_s)
            except Exception as e:  # noqa: BLE001
                logger.warning("shutdown of %s failed: %r", type(c).__name__, e)
        self.pipeline.shutdown(timeout_s)
        if self.api is not None:
            self.api.shutdown()
        if self.store is not None:
            self.store.shutdown(timeout_s)

    # -- API routes ---------------------------------------------------------------------------------
    def _add_routes(self, api: ApiServer) -> None:
        api.route("GET", "/health", self._health)
        api.route("GET", "/api/v1", self._index)
        from .views import views

        for name, fn in views().items():
            api.route("GET", f"/api/v1/{name}", self._view_handler(fn))

    def _index(self, req: Request) -> Response:
        return json_response({"routes": sorted(f"{m} {p}" for m, p in self.api.routes)})  # type: ignore[union-attr]

    def _health(self, req: Request) -> Response:
        store = self.store
        return json_response({
            "status": "ok",
            "version": __version__,
            "pid": os.getpid(),
            "db": os.path.abspath(self.settings.db),
            "started": self.started_ns,
            "pipeline": self.pipeline.stats(),
            "store": {"written_rows": store.written_rows, "dropped_rows": store.dropped_rows,
                      "schema_version": store.schema_version} if store else None,
        })

    def _view_handler(self, fn: Any) -> Any:
        def handle(req: Request) -> Response:
            from .views import ViewContext

            cur = self.store.cursor()  # type: ignore[union-attr]
            try:
                out = fn(ViewContext(cur, self), req.query)
            finally:
                cur.close()
            if isinstance(out, dict):
                out.setdefault("source", f"agent {self.api_url} (pid {os.getpid()})")
            return json_response(out)

        return handle


def describe_error(e: InfermeterError) -> str:
    return str(e)

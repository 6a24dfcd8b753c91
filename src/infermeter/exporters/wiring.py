"""The agent's exporting parts, wired as one component: metrics, ``/metrics``, OTLP export, receiver.

:func:`attach_exporters` is called by :class:`~infermeter.agent.agent.Agent` once its store and
API exist and before its pipeline starts. It adds the metrics sink (and, when an OTLP endpoint is
configured, the span sink) to the pipeline, registers ``GET /metrics``, ``POST /v1/traces``,
``POST /v1/metrics``, ``GET /api/v1/receiver`` and the fleet export's ``GET /api/v1/fleet/hours`` /
``/rows`` (Arrow IPC) on the API, and adds itself as a component so
``force_flush`` / ``shutdown`` reach the OTLP exporters after the pipeline has drained into them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from ..agent.api import Request, Response
from .histograms import PrometheusHistograms
from .metrics import CostTotal, MetricsSink, genai_histograms
from .otlp import OtlpConfig, SpanSink, build_resource, ensure_request_ids, metric_reader
from .parquet import hours_handler, rows_handler
from .prometheus import PrometheusEndpoint, prometheus_available, unavailable_handler
from .receiver import OtlpReceiver

__all__ = ["AgentExporters", "attach_exporters", "stored_cost_totals"]

logger = logging.getLogger(__name__)


def stored_cost_totals(store: Any, since_ns: int) -> list[CostTotal]:
    """GPU-time usage per model/tenant and idle per host, from the cost tables, since ``since_ns``."""
    from ..store import queries

    cur = store.cursor()
    try:
        rows = queries.run(cur, "exports.stored_cost_totals", since_ns=since_ns)
    finally:
        cur.close()
    return [CostTotal(r["amount_usd"], r["source"], r["model"], r["tenant"], r["resource"]) for r in rows
            if r["amount_usd"] is not None]


class AgentExporters:
    def __init__(self, agent: Any) -> None:
        from opentelemetry.sdk.metrics import MeterProvider

        s = agent.settings
        self.agent = agent
        self.since_ns = time.time_ns()
        self.config = OtlpConfig.from_settings(s)
        resource = build_resource(self.config, s.service_name)
        hists = genai_histograms()
        self.prometheus = PrometheusEndpoint() if prometheus_available() else None
        if self.prometheus is not None:
            self.prometheus.registry.register(PrometheusHistograms(hists))
        self._scrape_lock = threading.Lock()
        self.otlp_metrics = (metric_reader(self.config, hists, resource)
                             if self.config and self.config.metrics_endpoint else None)
        readers = [r for r in (self.prometheus and self.prometheus.reader, self.otlp_metrics) if r is not None]
        self.meter_provider = MeterProvider(metric_readers=readers, resource=resource, shutdown_on_exit=False)
        self.metrics = MetricsSink(self.meter_provider, gpu_latest=self._gpu_latest, cost_source=self._stored_costs,
                                   histograms=hists)
        self.spans = (SpanSink.for_config(self.config, resource, skip_live=True, skip_received=bool(s.otlp_forward))
                      if self.config and self.config.traces_endpoint else None)
        self.receiver = OtlpReceiver(agent.pipeline, max_bytes=s.otlp_max_bytes, forward_url=s.otlp_forward)
        self._stopped = False

    # -- wiring ---------------------------------------------------------------------------------
    def install(self) -> "AgentExporters":
        a = self.agent
        a.pipeline.sinks.append(self.metrics)
        if self.spans is not None:
            a.pipeline.processors.insert(0, ensure_request_ids)
            a.pipeline.sinks.append(self.spans)
        if a.api is not None:
            a.api.route("GET", "/metrics", self._metrics_handler if self.prometheus else unavailable_handler)
            a.api.route("POST", "/v1/traces", self.receiver.handle_traces)
            a.api.route("POST", "/v1/metrics", self.receiver.handle_metrics)
            a.api.route("GET", "/api/v1/receiver", self.receiver.handle_stats)
            a.api.route("GET", "/api/v1/fleet/hours", hours_handler(a.store))
            a.api.route("GET", "/api/v1/fleet/rows", rows_handler(a.store))
        a.add_component(self)
        return self

    def _metrics_handler(self, req: Request) -> Response:
        # The reader's collector queues one collection per call and renders all it holds: two
        # scrapes at once would render a family twice, which Prometheus rejects.
        with self._scrape_lock:
            return self.prometheus.handle(req)  # type: ignore[union-attr]

    def _gpu_latest(self) -> Any:
        sampler = getattr(self.agent, "sampler", None)
        if sampler is None:
            from ..collectors.readings import Snapshot

            return Snapshot()
        return sampler.latest()

    def _stored_costs(self) -> Sequence[CostTotal]:
        store = self.agent.store
        return stored_cost_totals(store, self.since_ns) if store is not None else ()

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> "AgentExporters":
        self.receiver.start()
        return self

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        """Drain the pipeline into the sinks (and the span exporter), then export metrics now."""
        ok = self.agent.pipeline.force_flush(timeout_s)
        ok = self.receiver.force_flush(timeout_s) and ok
        if self.otlp_metrics is not None:
            ok = bool(self.otlp_metrics.force_flush(int(timeout_s * 1000))) and ok
        return ok

    def shutdown(self, timeout_s: float = 10.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.agent.pipeline.force_flush(timeout_s)
        self.receiver.shutdown(timeout_s)
        self.metrics.close()
        if self.spans is not None:
            self.spans.shutdown(timeout_s)
        self.meter_provider.shutdown(int(timeout_s * 1000))


def attach_exporters(agent: Any) -> AgentExporters:
    return AgentExporters(agent).install()

"""Remote mode: with ``INFERMETER_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_ENDPOINT``) set, ``@track``
feeds a pipeline whose sinks export OTLP instead of an embedded agent with a store.

That is how gunicorn-style multi-worker apps share one agent: each worker prices its records with
the catalog (``gen_ai.usage.cost.*`` on the spans) and sends one span per record; the agent's
receiver turns them back into the same records. Spans and metrics go out in batches on the
exporters' own threads; the decorated call only appends to the pipeline's queue.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError
from .otlp import OtlpConfig, SpanSink, build_resource, ensure_request_ids, metric_reader

__all__ = ["RemoteAgent"]

logger = logging.getLogger(__name__)


class RemoteAgent:
    """Agent-shaped (pipeline, components, start/force_flush/shutdown) but with no store or API."""

    store = None
    api = None
    api_url = None
    sampler = None

    def __init__(self, settings: Any, *, environ: Mapping[str, str] | None = None) -> None:
        from ..agent.pipeline import Pipeline

        self.settings = settings
        cfg = OtlpConfig.from_settings(settings, remote=True, environ=environ)
        if cfg is None or cfg.traces_endpoint is None:
            raise ConfigError("OTEL_TRACES_EXPORTER", settings.traces_exporter,
                              "a worker with an endpoint sends its records as spans; they cannot be turned off")
        self.config = cfg
        self.pipeline = Pipeline(queue_size=settings.queue_size, batch_size=settings.batch_size,
                                 flush_interval_s=settings.flush_interval_s)
        self.components: list[Any] = []
        self.pipeline.processors.append(ensure_request_ids)
        pricer = _pricer(settings)
        if pricer is not None:  # the decorator prices its records with it, where they are made
            self.pipeline.processors.append(pricer)
            self.pipeline.pricing = pricer
        resource = build_resource(cfg)
        self.spans = SpanSink.for_config(cfg, resource, skip_live=False)
        self.pipeline.sinks.append(self.spans)
        self.meter_provider = None
        self.otlp_metrics = None
        if cfg.metrics_endpoint:
            from opentelemetry.sdk.metrics import MeterProvider

            from .metrics import MetricsSink, genai_histograms

            hists = genai_histograms()
            self.otlp_metrics = metric_reader(cfg, hists, resource)
            self.meter_provider = MeterProvider(metric_readers=[self.otlp_metrics], resource=resource, shutdown_on_exit=False)
            self.metrics: Any = MetricsSink(self.meter_provider, histograms=hists)
            self.pipeline.sinks.append(self.metrics)
        self._stopped = False

    def start(self) -> "RemoteAgent":
        self.pipeline.start()
        logger.info("infermeter: exporting records as OTLP spans to %s", self.config.traces_endpoint)
        return self

    def add_component(self, component: Any) -> None:
        self.components.append(component)
        component.start()

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        ok = self.pipeline.force_flush(timeout_s)  # flushes the span sink's batch processor too
        if self.otlp_metrics is not None:
            ok = bool(self.otlp_metrics.force_flush(int(timeout_s * 1000))) and ok
        return ok

    def shutdown(self, timeout_s: float = 10.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        for c in reversed(self.components):
            c.shutdown(timeout_s)
        self.pipeline.shutdown(timeout_s)
        self.spans.shutdown(timeout_s)
        if self.meter_provider is not None:
            self.metrics.close()
            self.meter_provider.shutdown(int(timeout_s * 1000))


def _pricer(settings: Any) -> Any:
    """The catalog pricer, so spans carry ``gen_ai.usage.cost`` where the catalog knows the model."""
    try:
        from ..cost.catalog import cached_catalog
        from ..cost.pricing import PricingProcessor
    except ImportError:  # the cost package is not there: the agent prices on receipt instead
        return None
    return PricingProcessor(cached_catalog(settings.price_file))

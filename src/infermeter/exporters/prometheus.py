"""``GET /metrics`` on the agent API: the meter provider's instruments in the Prometheus text format.

Names are converted the way OpenTelemetry's Prometheus compatibility spec says (dots to
underscores, unit suffixes, ``_total`` on counters, ``target_info`` for the resource), by the
OpenTelemetry project's own ``opentelemetry-exporter-prometheus`` reader rather than a copy of its
rules here: ``gen_ai.client.operation.duration`` (s) is ``gen_ai_client_operation_duration_seconds``,
``gen_ai.client.token.usage`` ({token}) is ``gen_ai_client_token_usage``, ``infermeter.cost``
(USD) is ``infermeter_cost_USD_total``. The reader is registered in a private
``CollectorRegistry``, so the user's own ``prometheus_client`` metrics never leak into ours (or
ours into theirs), and several agents can live in one process.
"""

from __future__ import annotations

import logging

from ..agent.api import Request, Response, error_response

__all__ = ["PrometheusEndpoint", "prometheus_available", "unavailable_handler", "MISSING_HINT"]

logger = logging.getLogger(__name__)

MISSING_HINT = "Prometheus /metrics needs opentelemetry-exporter-prometheus: pip install 'infermeter[export]'"


def prometheus_available() -> bool:
    try:
        import opentelemetry.exporter.prometheus  # noqa: F401
    except ImportError:
        return False
    return True


class PrometheusEndpoint:
    """A metric reader for the meter provider plus the HTTP handler that renders it on each scrape."""

    def __init__(self) -> None:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import CollectorRegistry

        self.registry = CollectorRegistry(auto_describe=False)
        # One scope (infermeter) makes every series: its otel_scope_* labels would only add noise.
        self.reader = PrometheusMetricReader(registry=self.registry, scope_info_enabled=False)

    def handle(self, req: Request) -> Response:
        from prometheus_client.exposition import choose_encoder

        encoder, content_type = choose_encoder(req.headers.get("accept", ""))
        return Response(200, encoder(self.registry), content_type)

    def render(self) -> str:
        """The text exposition, for tests and debugging."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry).decode()


def unavailable_handler(req: Request) -> Response:
    return error_response(501, MISSING_HINT)

"""Records as OpenTelemetry metrics, named by the GenAI and hardware semantic conventions.

:class:`MetricsSink` is a pipeline sink: each record adds to ``gen_ai.client.token.usage``
(``gen_ai.token.type`` input/output), ``gen_ai.client.operation.duration``,
``gen_ai.server.request.duration``, ``gen_ai.server.time_to_first_token`` (histograms with the
conventions' explicit bucket boundaries), ``infermeter.cost`` (USD, by model, tenant and cost
source) and ``infermeter.requests``. The GPU gauges (``hw.gpu.utilization``, ``hw.gpu.memory.usage``,
``hw.gpu.memory.limit``, ``hw.power``, ``hw.energy``, by ``hw.id``/``hw.name``/``hw.type=gpu``)
are the collectors' own instruments (:mod:`infermeter.collectors.semconv`), observed at
collection time from the sampler's latest snapshot. Costs the records did not carry at ingest
(self-hosted GPU-time shares, idle capacity) come cumulative from a :class:`CostSource` (the cost
tables). A source that has nothing yields nothing, never zeros.

Whoever reads the meter provider (Prometheus ``/metrics``, an OTLP periodic reader) sees the same
instruments. Metric values are floats: the exact money lives in the store.
"""

from __future__ import annotations

import logging
import operator
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from ..records import InferenceRecord
from .histograms import Histograms, HistogramSpec

_F = InferenceRecord._fields.index
# Everything a record's metric points depend on: records with equal keys share every point.
_GROUP_KEY = operator.itemgetter(_F("operation"), _F("provider"), _F("request_model"), _F("response_model"),
                                 _F("server_address"), _F("error_type"), _F("tenant"), _F("cost_source"), _F("status"))
_INPUT = operator.itemgetter(_F("input_tokens"))
_OUTPUT = operator.itemgetter(_F("output_tokens"))
_DURATION = operator.itemgetter(_F("duration_s"))
_DURATIONS = ("gen_ai.client.operation.duration", "gen_ai.server.request.duration")  # the same boundaries
_TTFT = operator.itemgetter(_F("ttft_s"))
_COST = operator.itemgetter(_F("cost_usd"))

__all__ = [
    "MetricsSink",
    "CostTotal",
    "CostSource",
    "TOKEN_BUCKETS",
    "DURATION_BUCKETS",
    "TTFT_BUCKETS",
    "genai_histograms",
    "genai_attributes",
    "SCOPE",
]

logger = logging.getLogger(__name__)

SCOPE = "infermeter"

# Explicit bucket boundaries the GenAI semantic conventions specify for each histogram.
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


@dataclass(frozen=True, slots=True)
class CostTotal:
    """A cumulative cost the store knows and the records did not carry at ingest, in USD:
    self-hosted requests' GPU-time shares (``gpu_time``) and unused capacity (``idle``)."""

    amount_usd: Decimal
    source: str  # gpu_time | idle
    model: str | None = None
    tenant: str | None = None
    resource: str | None = None  # the host (instance) the cost belongs to


class CostSource(Protocol):
    def __call__(self) -> Sequence[CostTotal]: ...


def genai_attributes(r: InferenceRecord) -> dict[str, Any]:
    """The GenAI attributes a record's metrics and span share: operation, provider, models, server."""
    a: dict[str, Any] = {"gen_ai.operation.name": r.operation}
    if r.provider:
        a["gen_ai.provider.name"] = r.provider
    if r.request_model:
        a["gen_ai.request.model"] = r.request_model
    if r.response_model:
        a["gen_ai.response.model"] = r.response_model
    if r.server_address:
        host, _, port = r.server_address.rpartition(":")
        if host and port.isdigit():
            a["server.address"], a["server.port"] = host, int(port)
        else:
            a["server.address"] = r.server_address
    return a


def _money_attrs(model: str | None, tenant: str | None, source: str) -> dict[str, Any]:
    a = {"gen_ai.request.model": model or "(unknown)", "infermeter.cost.source": source}
    if tenant:
        a["infermeter.tenant"] = tenant
    return a


def _nothing() -> Sequence[Any]:
    return ()


def genai_histograms() -> Histograms:
    """The four GenAI histograms, with the conventions' explicit bucket boundaries."""
    return Histograms([
        HistogramSpec("gen_ai.client.token.usage", "{token}", "Number of input and output tokens used.", TOKEN_BUCKETS),
        HistogramSpec("gen_ai.client.operation.duration", "s", "GenAI operation duration.", DURATION_BUCKETS),
        HistogramSpec("gen_ai.server.request.duration", "s",
                      "Generative AI server request duration such as time-to-last byte or last output token.", DURATION_BUCKETS),
        HistogramSpec("gen_ai.server.time_to_first_token", "s", "Time to generate first token for successful responses.", TTFT_BUCKETS),
    ])


class MetricsSink:
    """Pipeline sink: turns each batch of records into GenAI metric points.

    Histograms go to ``histograms`` (infermeter's own aggregation, see :mod:`.histograms`), which
    the Prometheus collector and the OTLP exporter read; counters and gauges are SDK instruments
    on ``meter_provider``.
    """

    def __init__(
        self,
        meter_provider: Any,
        gpu_latest: Callable[[], Any] | None = None,
        cost_source: CostSource = _nothing,
        histograms: Histograms | None = None,
    ) -> None:
        from .. import __version__

        self.meter_provider = meter_provider
        self.histograms = histograms or genai_histograms()
        self._cost_source = cost_source
        self._attrs: dict[tuple, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self._closed = False
        m = meter_provider.get_meter(SCOPE, __version__)
        self._requests = m.create_counter(
            "infermeter.requests", unit="{request}", description="Inference requests by model, status and cost source (unpriced included).")
        # Cost is observed, not added: request costs are summed exactly (Decimal) here and idle cost
        # comes cumulative from the cost tables, so both live under one instrument.
        self._cost_totals: dict[tuple, Decimal] = {}
        m.create_observable_counter("infermeter.cost", [self._observe_cost], unit="USD",
                                    description="Cost of inference by model, tenant and cost source; source=idle is capacity no request used.")
        if gpu_latest is not None:
            from ..collectors.semconv import register_hw_instruments

            register_hw_instruments(m, gpu_latest)

    # -- records ------------------------------------------------------------------------------
    def consume(self, records: Sequence[InferenceRecord]) -> None:
        """Group the batch by attribute set first (one C-level key per record), then add each
        group's values to each histogram at once: the per-record Python work is the grouping."""
        if self._closed:
            return
        groups: dict[tuple, list[InferenceRecord]] = {}
        for r in records:
            k = _GROUP_KEY(r)
            g = groups.get(k)
            if g is None:
                groups[k] = [r]
            else:
                g.append(r)
        h = self.histograms
        add = h.record_many
        requests: dict[tuple, int] = {}
        costs: dict[tuple, Decimal] = {}
        with h.lock:
            for (_op, _prov, req_model, resp_model, _srv, error_type, tenant, cost_source, status), recs in groups.items():
                key, base = self._base_attrs(recs[0])
                values = [v for v in map(_INPUT, recs) if v is not None]
                if values:
                    k = (key, "input")
                    add("gen_ai.client.token.usage", k, self._with(k, base, "gen_ai.token.type", "input"), values)
                values = [v for v in map(_OUTPUT, recs) if v is not None]
                if values:
                    k = (key, "output")
                    add("gen_ai.client.token.usage", k, self._with(k, base, "gen_ai.token.type", "output"), values)
                if error_type:
                    dk = (key, "error", error_type)
                    dur_attrs = self._with(dk, base, "error.type", error_type)
                else:
                    dk, dur_attrs = key, base
                h.record_many_into(_DURATIONS, dk, dur_attrs, list(map(_DURATION, recs)))
                if error_type is None:
                    values = [v for v in map(_TTFT, recs) if v is not None]
                    if values:
                        add("gen_ai.server.time_to_first_token", key, base, values)
                model = req_model or resp_model
                source = cost_source or "unpriced"
                rk = (model, tenant, source, status)
                requests[rk] = requests.get(rk, 0) + len(recs)
                amounts = [v for v in map(_COST, recs) if v is not None]
                if amounts:
                    ck = (model, tenant, source)
                    costs[ck] = costs.get(ck, 0) + sum(amounts)
        for rk, n in requests.items():  # one SDK call per attribute set and batch, not per record
            self._requests.add(n, self._request_attrs(*rk))
        if costs:
            with self._lock:
                totals = self._cost_totals
                for ck, amount in costs.items():
                    totals[ck] = totals.get(ck, 0) + amount

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        return True  # points are aggregated already; readers flush themselves

    def close(self) -> None:
        """Stop recording (the meter provider is about to shut down)."""
        self._closed = True

    def _base_attrs(self, r: InferenceRecord) -> tuple[tuple, dict[str, Any]]:
        key = ("b", r.operation, r.provider, r.request_model, r.response_model, r.server_address)
        a = self._attrs.get(key)
        if a is None:
            a = genai_attributes(r)
            a = self._remember(key, a)
        return key, a

    def _with(self, key: tuple, base: dict[str, Any], k: str, v: Any) -> dict[str, Any]:
        key = ("w", key)
        a = self._attrs.get(key)
        if a is None:
            a = self._remember(key, {**base, k: v})
        return a

    def _request_attrs(self, model: str | None, tenant: str | None, source: str, status: str) -> dict[str, Any]:
        key = ("r", model, tenant, source, status)
        a = self._attrs.get(key)
        if a is None:
            a = self._remember(key, {**_money_attrs(model, tenant, source), "infermeter.status": status})
        return a

    def _remember(self, key: tuple, value: Any) -> Any:
        # Attribute dicts are cached so a steady stream of records allocates nothing per point.
        # A pathological key space (random models) resets the cache rather than growing it.
        if len(self._attrs) > 10_000:
            self._attrs.clear()
        self._attrs[key] = value
        return value

    # -- observed at collection time -------------------------------------------------------------
    def _observe_cost(self, options: Any) -> Iterable[Any]:
        from opentelemetry.metrics import Observation

        with self._lock:
            sums: dict[tuple, Decimal] = {(*k, None): v for k, v in self._cost_totals.items()}
        for c in self._read("stored cost source", self._cost_source):
            k = (c.model, c.tenant, c.source, c.resource)
            sums[k] = sums.get(k, 0) + c.amount_usd
        out = []
        for (model, tenant, source, resource), amount in sums.items():
            attrs = _money_attrs(model, tenant, source)
            if resource:
                attrs["infermeter.resource"] = resource
            out.append(Observation(float(amount), attrs))
        return out

    def _read(self, what: str, source: Callable[[], Sequence[Any]]) -> Sequence[Any]:
        try:
            return source()
        except Exception as e:  # noqa: BLE001 - a collection edge: no data, logged once
            if what not in self._warned:
                self._warned.add(what)
                logger.warning("infermeter metrics: reading the %s failed: %r (no values reported)", what, e)
            return ()

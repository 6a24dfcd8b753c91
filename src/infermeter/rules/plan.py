"""The deployment as a plan, and what a plan costs a month: the one cost model every rule uses.

A :class:`Plan` is how the model is served (always-on boxes, a serverless GPU, or a hosted API),
on what, at which price, and how much of today's demand it serves. A recommendation is a change
to the plan; its saving is ``monthly(today) - monthly(changed)``. Applying the accepted changes
one after another and pricing each step is what keeps combined savings from being counted twice.

Extrapolation: usage-driven parts (serverless container time, cold starts, API tokens) are
measured over the observed part of the window and scaled to a 730-hour month; an always-on box
costs its hourly price x 730 whatever it does.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from decimal import Decimal

from .base import HOURS_PER_MONTH
from .catalog_lookup import Catalog, GpuInstance, ServerlessOffer, TokenPrice, same_gpu, serverless_for
from .facts import WorkloadFacts

__all__ = ["Plan", "CostModel", "current_plan", "ALWAYS_ON", "SERVERLESS", "HOSTED_API"]

ALWAYS_ON, SERVERLESS, HOSTED_API = "always_on", "serverless", "hosted_api"
_MILLION = Decimal(1_000_000)


def _d(x: float) -> Decimal:
    return Decimal(str(round(float(x), 6)))


@dataclass(frozen=True)
class Plan:
    mode: str  # always_on | serverless | hosted_api
    pricing: str | None = None  # on_demand | spot | committed | explicit (always-on)
    hourly_usd: Decimal | None = None  # one always-on instance, at ``pricing``
    instances: int = 1
    instance: GpuInstance | None = None  # the catalog entry, when known
    gpu_type: str | None = None
    gpus_per_replica: int = 1
    offer: ServerlessOffer | None = None
    batch_cap: float | None = None  # concurrent requests one replica serves before requests queue
    demand: Decimal = Decimal(1)  # share of today's requests still reaching the model (a cache lowers it)
    spot_share: Decimal = Decimal(0)  # share of always-on capacity moved to spot
    spot_hourly_usd: Decimal | None = None
    hosted: TokenPrice | None = None

    def replace(self, **changes: object) -> "Plan":
        return dataclasses.replace(self, **changes)

    def describe(self) -> str:
        if self.mode == HOSTED_API and self.hosted:
            return f"hosted API {self.hosted.provider} {self.hosted.model}"
        if self.mode == SERVERLESS and self.offer:
            return f"serverless {self.offer.provider} {self.offer.gpu_type} x{self.gpus_per_replica}"
        name = self.instance.instance_type if self.instance else (self.gpu_type or "box")
        spot = f", {float(self.spot_share):.0%} on spot" if self.spot_share else ""
        return f"{self.instances} x {name} always on ({self.pricing}{spot})"


class CostModel:
    """Prices plans against the measured workload."""

    def __init__(self, facts: WorkloadFacts) -> None:
        self.facts = facts
        hours = facts.observed_s / 3600
        self.month_factor = HOURS_PER_MONTH / _d(hours) if hours > 0 else Decimal(0)

    def replica_s(self, plan: Plan) -> float:
        """Serverless container-seconds over the window: warm periods, plus extra replicas where
        the per-minute load exceeds what one replica serves at ``plan.batch_cap``."""
        f = self.facts
        extra = 0.0
        if plan.batch_cap:
            demand = float(plan.demand)
            for load, minutes in f.load_histogram:
                extra += max(0, math.ceil(load * demand / plan.batch_cap - 1e-9) - 1) * 60.0 * minutes
        return f.warm_s + extra

    def monthly(self, plan: Plan) -> Decimal | None:
        """Dollars a month, exact to the nano-dollar; None when the plan has no price."""
        f = self.facts
        if plan.mode == HOSTED_API:
            if plan.hosted is None:
                return None
            window = (f.input_tokens * plan.hosted.input_usd_per_mtok + f.output_tokens * plan.hosted.output_usd_per_mtok) / _MILLION
            return _q(window * plan.demand * self.month_factor)
        if plan.mode == SERVERLESS:
            if plan.offer is None:
                return None
            cold = f.cold_starts * plan.offer.cold_start_s
            gpu_s = _d((self.replica_s(plan) + cold) * plan.gpus_per_replica)
            return _q(gpu_s * plan.offer.usd_per_gpu_s * self.month_factor)
        if plan.hourly_usd is None:
            return None
        hourly = plan.hourly_usd
        if plan.spot_share and plan.spot_hourly_usd is not None:
            hourly = (1 - plan.spot_share) * plan.hourly_usd + plan.spot_share * plan.spot_hourly_usd
        return _q(hourly * plan.instances * HOURS_PER_MONTH)


def _q(x: Decimal) -> Decimal:
    return x.quantize(Decimal("0.000000001"))


def current_plan(facts: WorkloadFacts, catalog: Catalog) -> Plan | None:
    """Today's deployment, from the price the cost tables hold; None when the box has no price."""
    gpu_type = facts.instance_gpu_type or facts.gpu_name
    inst = catalog.instance(facts.instance_type) if facts.instance_type else None
    per_replica = facts.instance_gpu_count or (inst.gpu_count if inst else None) or max(1, facts.gpu_count // max(1, facts.replicas))
    cap = facts.metric("requests_running", "max")
    if facts.pricing == "serverless":
        offer = next((o for o in catalog.serverless_offers()
                      if same_gpu(o.gpu_type, gpu_type) and (facts.cloud is None or o.provider == facts.cloud)), None)
        offer = offer or serverless_for(catalog, gpu_type)
        if offer is None:
            return None
        return Plan(SERVERLESS, gpu_type=gpu_type, gpus_per_replica=per_replica, offer=offer, batch_cap=cap or None)
    if facts.hourly_usd is None:
        return None
    return Plan(ALWAYS_ON, pricing=facts.pricing or "on_demand", hourly_usd=facts.hourly_usd, instances=facts.replicas,
                instance=inst, gpu_type=gpu_type, gpus_per_replica=per_replica, batch_cap=cap or None)

"""The prices rules compare against: GPU instances, serverless GPU offers, hosted-API token prices.

Rules see the catalog through this small :class:`Catalog` protocol. :class:`StaticCatalog` is the
in-memory implementation (tests build one by hand); :func:`load_catalog` adapts the shipped
price catalog of :mod:`infermeter.cost` to it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

__all__ = ["GpuInstance", "ServerlessOffer", "TokenPrice", "Catalog", "StaticCatalog", "load_catalog"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GpuInstance:
    """A cloud GPU instance type and its $/hour under each pricing model (None: not offered)."""

    cloud: str
    instance_type: str
    gpu_type: str
    gpu_count: int
    gpu_mem_bytes: int  # per GPU
    on_demand_usd_h: Decimal
    spot_usd_h: Decimal | None = None
    committed_usd_h: Decimal | None = None  # 1-year commitment (savings plan / reserved), per hour
    region: str | None = None

    def price(self, pricing: str) -> Decimal | None:
        return {"on_demand": self.on_demand_usd_h, "spot": self.spot_usd_h, "committed": self.committed_usd_h}.get(pricing)


@dataclass(frozen=True)
class ServerlessOffer:
    """A serverless GPU: billed per GPU-second while a container is up, scaled to zero when idle."""

    provider: str
    gpu_type: str
    gpu_mem_bytes: int
    usd_per_gpu_s: Decimal
    cold_start_s: float  # typical time to a ready container (billed, and felt by the first request)
    note: str | None = None  # the catalog's caveat (e.g. CPU and memory billed on top)


@dataclass(frozen=True)
class TokenPrice:
    """A hosted API's price for a model, $ per million tokens."""

    provider: str
    model: str
    input_usd_per_mtok: Decimal
    output_usd_per_mtok: Decimal


class Catalog(Protocol):
    def instance(self, instance_type: str) -> GpuInstance | None: ...

    def instances(self) -> Sequence[GpuInstance]: ...

    def serverless_offers(self) -> Sequence[ServerlessOffer]: ...

    def api_equivalent(self, model: str) -> TokenPrice | None:
        """The cheapest hosted offer of this very model (None: no API serves it)."""
        ...


class StaticCatalog:
    """A catalog held in memory: what tests use, and what :func:`load_catalog` builds."""

    def __init__(
        self,
        instances: Sequence[GpuInstance] = (),
        serverless: Sequence[ServerlessOffer] = (),
        hosted: Sequence[TokenPrice] = (),
    ) -> None:
        self._instances = tuple(instances)
        self._by_type = {i.instance_type: i for i in self._instances}
        self._serverless = tuple(serverless)
        self._hosted = tuple(hosted)

    def instance(self, instance_type: str) -> GpuInstance | None:
        return self._by_type.get(instance_type)

    def instances(self) -> Sequence[GpuInstance]:
        return self._instances

    def serverless_offers(self) -> Sequence[ServerlessOffer]:
        return self._serverless

    def api_equivalent(self, model: str) -> TokenPrice | None:
        name = model.strip().lower().rsplit("/", 1)[-1]
        offers = [h for h in self._hosted if h.model.lower() == name]
        return min(offers, key=lambda h: h.input_usd_per_mtok + h.output_usd_per_mtok, default=None)


def same_gpu(a: str | None, b: str | None) -> bool:
    """GPU names from NVML, catalogs and clouds differ in decoration ("NVIDIA L4", "l4")."""
    if not a or not b:
        return False

    def norm(s: str) -> str:
        s = s.lower().replace("nvidia", "").replace("tesla", "").replace("-", " ").replace("_", " ")
        return " ".join(s.split())

    return norm(a) == norm(b)


def serverless_for(catalog: Catalog, gpu_type: str | None, min_mem_bytes: int = 0) -> ServerlessOffer | None:
    """The cheapest serverless offer of ``gpu_type`` (any GPU when None) with at least ``min_mem_bytes``."""
    offers = [o for o in catalog.serverless_offers()
              if o.gpu_mem_bytes >= min_mem_bytes and (gpu_type is None or same_gpu(o.gpu_type, gpu_type))]
    return min(offers, key=lambda o: o.usd_per_gpu_s, default=None)


def load_catalog(price_file: str | None = None) -> Catalog:
    """The shipped price catalog (``infermeter.cost``, plus ``price_file``) as a :class:`Catalog`."""
    from ._cost_adapter import from_cost_catalog

    return from_cost_catalog(price_file)

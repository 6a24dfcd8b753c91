"""The shipped price catalog (:mod:`infermeter.cost.catalog`) seen through the rules' Catalog protocol."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .catalog_lookup import GpuInstance, ServerlessOffer, TokenPrice
from .gpu_specs import GIB, spec

__all__ = ["from_cost_catalog", "CostCatalogAdapter"]


class CostCatalogAdapter:
    """Converts entries once; ``api_equivalent`` asks the cost catalog (it knows model aliases)."""

    def __init__(self, catalog: Any) -> None:
        self._cat = catalog
        mem_by_gpu: dict[str, int] = {}
        inst = []
        for i in catalog.instances:
            gib = i.gpu_memory_gib or (spec(i.gpu_type).mem_gib if spec(i.gpu_type) else None)
            if gib is None:
                continue
            mem_by_gpu.setdefault(i.gpu_type.lower(), gib)
            inst.append(GpuInstance(i.cloud, i.instance_type, i.gpu_type, i.gpu_count, gib * GIB,
                                    i.on_demand_usd_per_hour, i.spot_usd_per_hour, i.committed_usd_per_hour, i.region))
        self._instances = tuple(inst)
        offers = []
        for s in catalog.serverless:
            gib = mem_by_gpu.get(s.gpu_type.lower()) or (spec(s.gpu_type).mem_gib if spec(s.gpu_type) else None)
            if gib is None:
                continue
            offers.append(ServerlessOffer(s.provider, s.gpu_type, gib * GIB, s.usd_per_gpu_second,
                                          float(s.cold_start_s) if s.cold_start_s is not None else 30.0, s.note))
        self._serverless = tuple(offers)

    def instance(self, instance_type: str) -> GpuInstance | None:
        name = instance_type.strip().lower().rpartition(":")[2]
        return next((i for i in self._instances if i.instance_type.lower() == name), None)

    def instances(self) -> Sequence[GpuInstance]:
        return self._instances

    def serverless_offers(self) -> Sequence[ServerlessOffer]:
        return self._serverless

    def api_equivalent(self, model: str) -> TokenPrice | None:
        m = self._cat.api_equivalent(model)
        if m is None:
            return None
        return TokenPrice(m.provider, m.model, m.input_usd_per_1m, m.output_usd_per_1m)


def from_cost_catalog(price_file: str | None = None) -> CostCatalogAdapter:
    from ..cost.catalog import cached_catalog

    return CostCatalogAdapter(cached_catalog(price_file))

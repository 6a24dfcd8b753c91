"""Moving a plan to another GPU: the memory a model needs, and the cheapest GPU that holds and serves it.

Shared by ``quantize`` (smaller weights) and ``rightsize`` (same weights, smaller device). A GPU
qualifies when it holds the weights plus the KV cache the workload used, and when its memory
bandwidth (decode is bandwidth-bound) keeps the measured p95 utilization under a ceiling.
"""

from __future__ import annotations

import math
from .catalog_lookup import Catalog
from .facts import WorkloadFacts
from .gpu_specs import GIB, spec
from .plan import ALWAYS_ON, SERVERLESS, Plan

__all__ = ["weights_bytes", "memory_needed", "projected_util", "retarget", "OVERHEAD_BYTES"]

OVERHEAD_BYTES = 2 * GIB  # CUDA context, activations, the server's own buffers


def weights_bytes(params_b: float, bits: int) -> int:
    return int(params_b * 1e9 * bits / 8)


def kv_bytes_used(facts: WorkloadFacts, weights_now: int, min_kv_bytes: int) -> int:
    """KV cache the workload used: the busiest share of the pool the server preallocated."""
    kv = facts.metric("kv_cache_usage", "max")
    total = facts.gpu_mem_total_bytes
    if kv is not None and total:
        pool = max(0, int(total * 0.9) - weights_now)  # vLLM's default --gpu-memory-utilization 0.9
        return max(min_kv_bytes, int(pool * kv))
    return max(min_kv_bytes, int(weights_now * 0.25))


def memory_needed(facts: WorkloadFacts, params_b: float, bits_now: int, bits: int, min_kv_bytes: int = 2 * GIB) -> int:
    """Bytes per GPU to serve the model at ``bits`` with the KV cache this workload used."""
    gpus = max(1, facts.gpu_count // max(1, facts.replicas)) if facts.gpu_count else 1
    now = weights_bytes(params_b, bits_now)
    return math.ceil((weights_bytes(params_b, bits) + kv_bytes_used(facts, now, min_kv_bytes)) / gpus) + OVERHEAD_BYTES


def projected_util(facts: WorkloadFacts, gpu_now: str | None, gpu_new: str, speedup: float = 1.0) -> float | None:
    """p95 utilization the measured work would need on ``gpu_new`` (by memory bandwidth)."""
    a, b = spec(gpu_now), spec(gpu_new)
    util = facts.gpu_util_p95_pct
    if util is None or a is None or b is None:
        return None
    return util * a.bandwidth_gbps / b.bandwidth_gbps / speedup


def retarget(plan: Plan, catalog: Catalog, facts: WorkloadFacts, mem_bytes: int, *, speedup: float = 1.0,
             max_util_pct: float = 85.0, gpu_now: str | None = None) -> Plan | None:
    """``plan`` on the cheapest GPU holding ``mem_bytes`` per GPU that keeps p95 utilization under
    ``max_util_pct``; None when nothing cheaper qualifies (or the plan runs on no GPU of its own)."""
    gpu_now = gpu_now or plan.gpu_type

    def serves(gpu: str) -> bool:
        u = projected_util(facts, gpu_now, gpu, speedup)
        return u is None or u <= max_util_pct

    if plan.mode == ALWAYS_ON:
        pricing = plan.pricing if plan.pricing in ("on_demand", "spot", "committed") else "on_demand"
        cloud = plan.instance.cloud if plan.instance else None
        fits = [i for i in catalog.instances()
                if (not cloud or i.cloud == cloud) and i.gpu_count == plan.gpus_per_replica
                and i.gpu_mem_bytes >= mem_bytes and i.price(pricing) is not None and serves(i.gpu_type)]
        best = min(fits, key=lambda i: (i.price(pricing), i.instance_type), default=None)
        price = best.price(pricing) if best else None
        if best is None or price is None or plan.hourly_usd is None or price >= plan.hourly_usd:
            return None
        return plan.replace(instance=best, hourly_usd=price, gpu_type=best.gpu_type, pricing=pricing,
                            spot_hourly_usd=best.spot_usd_h if plan.spot_share else plan.spot_hourly_usd)
    if plan.mode == SERVERLESS and plan.offer is not None:
        best_offer = min((o for o in catalog.serverless_offers() if o.gpu_mem_bytes >= mem_bytes and serves(o.gpu_type)),
                         key=lambda o: (o.usd_per_gpu_s, o.provider), default=None)
        if best_offer is None or best_offer.usd_per_gpu_s >= plan.offer.usd_per_gpu_s:
            return None
        return plan.replace(offer=best_offer, gpu_type=best_offer.gpu_type)
    return None

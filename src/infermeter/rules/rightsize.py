"""rightsize: the GPU is far bigger and busier-looking than the workload needs; a smaller one serves it.

Memory the workload needs = the model's weights at today's precision + the KV cache it used at its
peak + overhead (or the most memory any GPU held, when the model size is unknown). Fires when that
and the p95 utilization are far below the device's capacity, and a cheaper GPU holds it.
"""

from __future__ import annotations

from collections.abc import Sequence

from .base import Action, Recommendation, RuleContext
from .evidence import cost_evidence, coverage, gib, month_assumption, r
from .facts import model_size
from .gpu_choice import OVERHEAD_BYTES, memory_needed, projected_util, retarget
from .plan import Plan

__all__ = ["RightsizeRule"]


class RightsizeRule:
    name = Action.RIGHTSIZE
    thresholds = {
        "max_memory_share": 0.6,  # memory needed at most this share of the GPU's
        "max_util_p95_pct": 50.0,  # and p95 utilization at most this
        "max_target_util_pct": 85.0,
    }

    def evaluate(self, ctx: RuleContext) -> Sequence[Recommendation]:
        f, plan, n = ctx.facts, ctx.plan, self.name
        if plan.mode not in ("always_on", "serverless") or not f.gpu_mem_total_bytes or f.gpu_util_p95_pct is None:
            return []
        params, bits = model_size(f.model)
        if ctx.thresholds.get("quantize.model_params_b"):
            params = float(ctx.thresholds["quantize.model_params_b"]) or params
        if params is not None:
            mem, basis = memory_needed(f, params, bits, bits), "weights + peak KV cache + overhead"
        elif f.gpu_mem_used_max_bytes is not None:
            mem, basis = f.gpu_mem_used_max_bytes + OVERHEAD_BYTES // 4, "the most memory the GPU held"
        else:
            return []
        share = mem / f.gpu_mem_total_bytes
        if share > ctx.t(n, "max_memory_share") or f.gpu_util_p95_pct > ctx.t(n, "max_util_p95_pct"):
            return []

        def apply(p: Plan) -> Plan | None:
            return retarget(p, ctx.catalog, f, mem, max_util_pct=ctx.t(n, "max_target_util_pct"), gpu_now=plan.gpu_type)

        new = apply(plan)
        if new is None:
            return []
        saved = ctx.savings(new)
        gpu = new.offer.gpu_type if new.offer else new.gpu_type
        where = (f"{new.offer.provider} serverless {gpu}" if new.offer
                 else f"{new.instance.instance_type} ({gpu})" if new.instance else gpu)
        evidence = {
            "gpu_now": plan.gpu_type, "gpu_mem_gib_now": gib(f.gpu_mem_total_bytes), "memory_needed_gib": gib(mem),
            "memory_share": r(share), "memory_basis": basis, "gpu_mem_used_max_gib": gib(f.gpu_mem_used_max_bytes),
            "kv_cache_usage_max": r(f.metric("kv_cache_usage", "max")),
            "gpu_util_p95_pct": r(f.gpu_util_p95_pct, 1), "target": where,
            "target_util_p95_pct": r(projected_util(f, plan.gpu_type, gpu or ""), 1),
            **cost_evidence(ctx, ctx.costs.monthly(new)),
            "queries": ["rules.gpus", "rules.server_metrics", "rules.models", "rules.instance"],
            "assumptions": [
                f"memory needed = {basis}",
                "the smaller GPU's memory bandwidth serves today's p95 load below 85% utilization",
                month_assumption(ctx),
            ],
        }
        how_to = (f"Move {f.model or 'the model'} to {where}, same weights and precision; with vLLM keep "
                  "--gpu-memory-utilization 0.9 and set --max-model-len to the longest context you serve so the "
                  "KV cache fits.")
        return [Recommendation(
            action=n, title=f"Right-size: the workload needs {gib(mem)} GiB of {gib(f.gpu_mem_total_bytes)} GiB and "
                            f"{f.gpu_util_p95_pct:.0f}% p95 utilization; {gpu} is enough",
            evidence=evidence, savings_usd_month=saved, confidence=round(0.6 + 0.25 * coverage(ctx, 7), 3),
            how_to=how_to, touches=("gpu",), apply=apply,
        )]

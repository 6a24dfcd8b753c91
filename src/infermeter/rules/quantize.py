"""quantize: at FP8/INT8 or INT4 the model fits a smaller, cheaper GPU (or frees memory for a bigger batch).

The model's size and precision come from its name ("llama-3.1-8b-instruct": 8 B parameters,
16-bit; "-awq": 4-bit), or ``quantize.model_params_b``. Memory needed at a lower precision =
weights + the KV cache this workload used + overhead. Savings: the cheapest GPU that holds that and
whose memory bandwidth serves the measured p95 load (quantized decode is faster), against today's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from .base import Action, Recommendation, RuleContext
from .evidence import cost_evidence, coverage, gib, month_assumption, r
from .facts import model_size
from .gpu_choice import memory_needed, projected_util, retarget, weights_bytes
from .gpu_specs import spec
from .plan import Plan

__all__ = ["QuantizeRule", "vllm_quantization"]

# Decode speed-up from moving fewer weight bytes (below the 2x/4x of the bytes: kernels and KV).
_SPEEDUP = {(16, 8): 1.6, (16, 4): 2.2, (8, 4): 1.4}
_CONFIDENCE = {8: 0.75, 4: 0.6}  # 4-bit loses more quality


def vllm_quantization(gpu: str | None, bits: int, model: str) -> str:
    """How vLLM serves ``model`` at ``bits`` on ``gpu`` (by compute capability), as a sentence."""
    cc = spec(gpu).compute_capability if spec(gpu) else 8.0
    if bits == 8 and cc >= 8.9:
        return f"serve it in FP8: `vllm serve {model} --quantization fp8 --kv-cache-dtype fp8` (dynamic, no calibration data)"
    if bits == 8 and cc >= 8.0:
        return f"serve it in FP8: `vllm serve {model} --quantization fp8` (FP8 weights through the Marlin kernels on this GPU)"
    if bits == 8:
        return (f"serve an INT8 W8A8 checkpoint of {model} (made with llm-compressor, scheme W8A8; `vllm serve` reads "
                "its compressed-tensors config)")
    kernel = "awq_marlin" if cc >= 8.0 else "awq"
    return f"serve an AWQ INT4 checkpoint of {model}: `vllm serve <{model}-AWQ> --quantization {kernel}`"


class QuantizeRule:
    name = Action.QUANTIZE
    thresholds = {
        "model_params_b": 0.0,  # model size in billions of parameters; 0: read it from the name
        "max_target_util_pct": 85.0,  # p95 utilization the smaller GPU may reach
        "memory_bound_kv_usage": 0.9,  # KV cache this full at p95, with requests waiting: memory-bound
    }

    def evaluate(self, ctx: RuleContext) -> Sequence[Recommendation]:
        f, plan, n = ctx.facts, ctx.plan, self.name
        params, bits_now = model_size(f.model)
        if ctx.t(n, "model_params_b") > 0:
            params = ctx.t(n, "model_params_b")
        if params is None:
            ctx.note(n, f"model size unknown for {f.model!r}: set [rules] quantize.model_params_b")
            return []
        if bits_now <= 4 or plan.mode not in ("always_on", "serverless"):
            return []
        best: tuple[Plan, int, int, Callable[[Plan], Plan | None]] | None = None
        for bits in (8, 4):
            if bits >= bits_now:
                continue
            mem = memory_needed(f, params, bits_now, bits)

            def apply(p: Plan, mem: int = mem, bits: int = bits) -> Plan | None:
                return retarget(p, ctx.catalog, f, mem, speedup=_SPEEDUP[(bits_now, bits)],
                                max_util_pct=ctx.t(n, "max_target_util_pct"), gpu_now=plan.gpu_type)

            new = apply(plan)
            if new is not None and (best is None or ctx.savings(new) > ctx.savings(best[0])):
                best = (new, bits, mem, apply)
        if best is None:
            return self._memory_bound(ctx, params, bits_now)
        new, bits, mem, best_apply = best
        saved = ctx.savings(new)
        gpu = new.offer.gpu_type if new.offer else new.gpu_type
        where = (f"{new.offer.provider} serverless {gpu}" if new.offer
                 else f"{new.instance.instance_type} ({new.instance.gpu_type})" if new.instance else gpu)
        util = projected_util(f, plan.gpu_type, gpu or "", _SPEEDUP[(bits_now, bits)])
        evidence = {
            "model": f.model, "params_b": params, "bits_now": bits_now, "bits": bits,
            "weights_gib_now": gib(weights_bytes(params, bits_now)), "weights_gib": gib(weights_bytes(params, bits)),
            "memory_needed_gib": gib(mem), "gpu_now": plan.gpu_type, "gpu_mem_gib_now": gib(f.gpu_mem_total_bytes),
            "kv_cache_usage_max": r(f.metric("kv_cache_usage", "max")), "gpu_util_p95_pct": r(f.gpu_util_p95_pct, 1),
            "target": where, "target_util_p95_pct": r(util, 1),
            **cost_evidence(ctx, ctx.costs.monthly(new)),
            "queries": ["rules.models", "rules.gpus", "rules.server_metrics", "rules.instance"],
            "assumptions": [
                f"{params:g} B parameters at {bits_now}-bit today (from the model name), {bits}-bit after",
                "memory needed = weights + the KV cache this workload used at its peak + 2 GiB overhead",
                f"decode is memory-bandwidth bound: {bits}-bit weights decode ~{_SPEEDUP[(bits_now, bits)]}x faster; "
                f"p95 utilization on {gpu} ~{util or 0:.0f}%",
                "quality at the lower precision is close to the original (check on your own evaluation set)",
                month_assumption(ctx),
            ],
        }
        how_to = (f"Move to {where} and {vllm_quantization(gpu, bits, f.model or 'MODEL')}. "
                  "Compare answers on a sample of real prompts before switching traffic.")
        conf = _CONFIDENCE[bits] * (0.8 + 0.2 * coverage(ctx, 7))
        return [Recommendation(
            action=n, title=f"Quantize {f.model} to {bits}-bit: {gib(mem)} GiB fits {gpu} instead of {plan.gpu_type}",
            evidence=evidence, savings_usd_month=saved, confidence=round(conf, 3), how_to=how_to,
            touches=("gpu",), apply=best_apply,
        )]

    def _memory_bound(self, ctx: RuleContext, params: float, bits_now: int) -> Sequence[Recommendation]:
        """No cheaper GPU, but a full KV cache with requests waiting: smaller weights give the batch room."""
        f, plan, n = ctx.facts, ctx.plan, self.name
        kv = f.metric("kv_cache_usage", "p95")
        waiting = f.metric("requests_waiting", "p95")
        if kv is None or kv < ctx.t(n, "memory_bound_kv_usage") or not waiting or plan.mode != "always_on":
            return []
        gain = 1.5

        def apply(p: Plan) -> Plan | None:
            return p.replace(instances=max(1, math.ceil(p.instances / gain))) if p.mode == "always_on" else None

        new = apply(plan)
        saved = ctx.savings(new)
        evidence = {
            "model": f.model, "params_b": params, "bits_now": bits_now, "kv_cache_usage_p95": r(kv),
            "requests_waiting_p95": r(waiting), "replicas": plan.instances, "replicas_after": new.instances if new else None,
            **cost_evidence(ctx, ctx.costs.monthly(new) if new else None),
            "queries": ["rules.server_metrics", "rules.replicas"],
            "assumptions": [f"8-bit weights free memory for ~{gain}x the running batch",
                            "saving only when replicas can be removed", month_assumption(ctx)],
        }
        return [Recommendation(
            action=n, title=f"Quantize {f.model} to 8-bit: the KV cache is {kv:.0%} full while requests wait",
            evidence=evidence, savings_usd_month=saved, confidence=0.55,
            how_to=f"On {plan.gpu_type}, {vllm_quantization(plan.gpu_type, 8, f.model or 'MODEL')}; the memory it frees goes to the "
                   "KV cache, so more requests run at once" + (f"; then run {new.instances} replicas instead of {plan.instances}." if new and saved else "."),
            touches=("gpu",), apply=apply, note=None if saved else "no saving on one box: it buys throughput and latency",
        )]

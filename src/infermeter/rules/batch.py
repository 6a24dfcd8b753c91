"""batch: requests queue while the running batch stays small and the GPU has room: batch more.

Fires on model-server metrics: requests wait (``requests_waiting``) while the running batch tops
out at a low cap and the KV cache is far from full, so a server limit, not the GPU, holds the
batch down. On one always-on box that costs latency, not money; wherever capacity follows load
(serverless, several replicas) a bigger batch means fewer replicas at busy minutes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .base import Action, Recommendation, RuleContext
from .evidence import cost_evidence, coverage, month_assumption, per_day, r
from .plan import ALWAYS_ON, SERVERLESS, Plan

__all__ = ["BatchRule"]


class BatchRule:
    name = Action.BATCH
    thresholds = {
        "min_waiting_p95": 1.0,  # requests waiting at the 95th percentile of ticks
        "max_running_cap": 32.0,  # the running batch tops out at most here
        "max_kv_usage": 0.7,  # and the KV cache peaks below this share: memory is not the limit
        "max_request_tokens": 4096.0,  # "small" requests: mean input + output tokens
        "target_running": 64.0,  # the batch to aim for (capped by the KV cache)
    }

    def evaluate(self, ctx: RuleContext) -> Sequence[Recommendation]:
        f, plan, n = ctx.facts, ctx.plan, self.name
        cap = f.metric("requests_running", "max")
        waiting_p95 = f.metric("requests_waiting", "p95")
        if cap is None or waiting_p95 is None:
            if f.requests and f.load_mean and f.load_mean >= 2:
                ctx.note(n, "no model-server metrics (requests_running/waiting): cannot judge batching")
            return []
        kv_max = f.metric("kv_cache_usage", "max")
        tokens = (f.mean_input_tokens or 0) + (f.mean_output_tokens or 0)
        if (waiting_p95 < ctx.t(n, "min_waiting_p95") or cap > ctx.t(n, "max_running_cap")
                or (kv_max is not None and kv_max > ctx.t(n, "max_kv_usage")) or tokens > ctx.t(n, "max_request_tokens")):
            return []
        target = ctx.t(n, "target_running")
        if kv_max:
            target = min(target, math.floor(cap / kv_max * 0.8))
        if target <= cap:
            return []

        def apply(p: Plan) -> Plan | None:
            if p.mode == SERVERLESS:
                return p.replace(batch_cap=target)
            if p.mode == ALWAYS_ON:
                needed = max(1, math.ceil((f.load_p95 or 0) * float(p.demand) / target))
                return p.replace(batch_cap=target, instances=min(p.instances, needed))
            return None

        new = apply(plan)
        saved = ctx.savings(new)
        evidence = {
            "running_batch_max": r(cap, 1), "running_batch_mean_busy": r(f.running_busy_mean, 2),
            "requests_waiting_mean": r(f.metric("requests_waiting"), 2), "requests_waiting_p95": r(waiting_p95, 1),
            "kv_cache_usage_max": r(kv_max), "gpu_util_busy_mean_pct": r(f.gpu_util_busy_mean_pct, 1),
            "mean_request_tokens": r(tokens, 0), "load_p95": r(f.load_p95, 2), "load_max": r(f.load_max, 2),
            "latency_p50_s": r(f.latency_p50_s), "latency_p95_s": r(f.latency_p95_s), "target_running": target,
            "minutes_over_cap_per_day": per_day(ctx, sum(m for load, m in f.load_histogram if load > cap)),
            **cost_evidence(ctx, ctx.costs.monthly(new) if new else None),
            "queries": ["rules.server_metrics", "rules.server_metric_busy", "rules.load_histogram", "rules.gpus"],
            "assumptions": [
                f"the running batch can grow from {cap:g} to {target:g} before the KV cache is 80% full",
                "throughput grows with the batch while decode is memory-bound, so queued requests start at once",
                "savings only where capacity follows load: fewer serverless replicas or boxes at busy minutes; "
                "on a single always-on box it is latency, not dollars",
                month_assumption(ctx),
            ],
        }
        how_to = (
            f"Raise the server's concurrency limit: vLLM `--max-num-seqs {target:g} --enable-chunked-prefill` "
            f"(today's running batch stops at {cap:g} while requests wait); TGI `--max-concurrent-requests` and "
            f"`--max-batch-total-tokens`; llama.cpp `--parallel {target:g} --cont-batching`. Clients should send "
            "concurrent requests rather than serialise them; a serverless deployment should accept that many "
            f"concurrent inputs per container (Modal: @modal.concurrent(max_inputs={target:g}))."
        )
        return [Recommendation(
            action=n, title=f"Batch more: requests wait while the running batch tops out at {cap:g} and the KV cache "
                            f"is {kv_max or 0:.0%} full",
            evidence=evidence, savings_usd_month=saved, confidence=round(0.6 + 0.25 * coverage(ctx, 7), 3),
            how_to=how_to, touches=("batching",), apply=apply,
            note=None if saved > 0 else "no saving on its own on this deployment: it cuts queueing",
        )]

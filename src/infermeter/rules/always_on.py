"""always_on: serverless GPUs that are up most of the time cost more than a box of one's own.

Fires when today's deployment is serverless (its price row says ``pricing = 'serverless'``) and
containers are up most of the window. Projected cost: the cheapest instance with the same GPU
count and memory, on demand, enough of them for the busiest minutes at today's running batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .base import Action, Recommendation, RuleContext, money
from .evidence import cost_evidence, coverage, month_assumption, per_day, r
from .plan import ALWAYS_ON, SERVERLESS, Plan

__all__ = ["AlwaysOnRule"]


class AlwaysOnRule:
    name = Action.ALWAYS_ON
    thresholds = {
        "min_warm_share": 0.6,  # containers up at least this share of the time
        "commit_warm_share": 0.9,  # up at least this share: price the box at its committed rate
        "min_savings_share": 0.1,
    }

    def evaluate(self, ctx: RuleContext) -> Sequence[Recommendation]:
        f, plan, n = ctx.facts, ctx.plan, self.name
        if plan.mode != SERVERLESS or plan.offer is None or not f.requests:
            return []
        warm_share = f.warm_s / f.observed_s if f.observed_s else 0.0
        if warm_share < ctx.t(n, "min_warm_share"):
            return []
        replicas = 1
        if plan.batch_cap and f.load_p95:
            replicas = max(1, math.ceil(f.load_p95 / plan.batch_cap))
        pricing = "committed" if warm_share >= ctx.t(n, "commit_warm_share") else "on_demand"

        def apply(p: Plan) -> Plan | None:
            if p.mode != SERVERLESS or p.offer is None:
                return None
            fits = [i for i in ctx.catalog.instances() if i.gpu_count == p.gpus_per_replica
                    and i.gpu_mem_bytes >= p.offer.gpu_mem_bytes and i.price(pricing) is not None]
            best = min(fits, key=lambda i: (i.price(pricing), i.instance_type), default=None)
            if best is None:
                return None
            return Plan(ALWAYS_ON, pricing=pricing, hourly_usd=best.price(pricing), instances=replicas, instance=best,
                        gpu_type=best.gpu_type, gpus_per_replica=p.gpus_per_replica, batch_cap=p.batch_cap, demand=p.demand)

        new = apply(plan)
        if new is None:
            ctx.note(n, "no instance in the catalog holds this GPU's memory")
            return []
        saved = ctx.savings(new)
        if saved < ctx.current_monthly_usd * money(ctx.t(n, "min_savings_share")):
            return []
        inst = new.instance
        assert inst is not None
        after = ctx.costs.monthly(new)
        evidence = {
            "warm_share": r(warm_share), "busy_share": r(f.duty_cycle),
            "warm_hours_per_day": per_day(ctx, f.warm_s / 3600), "load_p95": r(f.load_p95, 2),
            "replicas": replicas, "instance": inst.instance_type, "pricing": pricing, "usd_h": new.hourly_usd,
            **cost_evidence(ctx, after),
            "queries": ["rules.islands", "rules.concurrency", "rules.instance"],
            "assumptions": [
                f"{replicas} always-on {inst.instance_type} serve the p95 load ({f.load_p95 or 0:.1f} concurrent requests)",
                "a 1-year committed rate: the containers are up nearly all the time" if pricing == "committed"
                else "on-demand price; a commitment would lower it further once the volume holds",
                month_assumption(ctx),
            ],
        }
        how_to = (
            f"Run {f.model or 'the model'} on {replicas} always-on {inst.cloud} {inst.instance_type} "
            f"({inst.gpu_count}x {inst.gpu_type}, ${new.hourly_usd}/h {pricing.replace('_', '-')}) behind your load balancer, e.g. "
            f"`vllm serve {f.model or 'MODEL'} --gpu-memory-utilization 0.9`, and set the serverless deployment's "
            "max replicas to 0 once traffic has moved; no cold starts remain."
        )
        return [Recommendation(
            action=n, title=f"Go always-on: serverless containers are up {warm_share:.0%} of the time",
            evidence=evidence, savings_usd_month=saved, confidence=round(0.5 + 0.35 * coverage(ctx, 7), 3),
            how_to=how_to, touches=("deployment",), apply=apply,
        )]

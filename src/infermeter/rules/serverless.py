"""serverless: an always-on GPU that is mostly idle costs more than a serverless GPU that scales to zero.

Fires when the time a serverless container would be up (every burst of requests plus the
platform's scale-down window) is a small share of the window and there are long idle gaps.
Projected cost: container GPU-seconds (extra replicas where load exceeds today's running batch)
plus one billed cold start per warm period, at the catalog's serverless rate for the same GPU.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from .base import Action, Recommendation, RuleContext, money
from .catalog_lookup import serverless_for
from .evidence import cost_evidence, coverage, month_assumption, per_day, r
from .plan import ALWAYS_ON, SERVERLESS, Plan

__all__ = ["ServerlessRule"]

logger = logging.getLogger(__name__)


class ServerlessRule:
    name = Action.SERVERLESS
    thresholds = {
        "max_warm_share": 0.75,  # serverless containers would be up at most this share of the time
        "min_idle_gap_s": 3600.0,  # and at least one idle gap this long
        "min_savings_share": 0.1,  # and it saves at least this share of today's cost
    }

    def evaluate(self, ctx: RuleContext) -> Sequence[Recommendation]:
        f, plan, n = ctx.facts, ctx.plan, self.name
        if plan.mode != ALWAYS_ON or not f.requests:
            return []
        warm_share = f.warm_s / f.observed_s if f.observed_s else 1.0
        if warm_share > ctx.t(n, "max_warm_share") or f.longest_idle_s < ctx.t(n, "min_idle_gap_s"):
            return []

        def apply(p: Plan) -> Plan | None:
            if p.mode != ALWAYS_ON:
                return None
            mem = p.instance.gpu_mem_bytes if p.instance else (f.gpu_mem_total_bytes or 0)
            offer = serverless_for(ctx.catalog, p.gpu_type) or serverless_for(ctx.catalog, None, mem)
            if offer is None:
                return None
            return p.replace(mode=SERVERLESS, offer=offer, instances=1, spot_share=0, spot_hourly_usd=None)

        new = apply(plan)
        if new is None or new.offer is None:
            ctx.note(n, f"no serverless offer for {plan.gpu_type} in the catalog")
            return []
        saved = ctx.savings(new)
        if saved < ctx.current_monthly_usd * money(ctx.t(n, "min_savings_share")):
            ctx.note(n, f"idle {1 - warm_share:.0%} of the time, but serverless would save only ${saved}/month")
            return []
        o = new.offer
        after = ctx.costs.monthly(new)
        extra_s = ctx.costs.replica_s(new) - f.warm_s
        evidence = {
            "busy_share": r(f.duty_cycle), "warm_share": r(warm_share),
            "warm_hours_per_day": per_day(ctx, f.warm_s / 3600), "busy_hours_per_day": per_day(ctx, f.busy_s / 3600),
            "cold_starts_per_day": per_day(ctx, f.cold_starts), "longest_idle_h": r(f.longest_idle_s / 3600, 2),
            "extra_replica_hours_per_day": per_day(ctx, extra_s / 3600),
            "serverless": f"{o.provider} {o.gpu_type}", "usd_per_gpu_s": o.usd_per_gpu_s, "cold_start_s": o.cold_start_s,
            **cost_evidence(ctx, after),
            "queries": ["rules.islands", "rules.load_histogram", "rules.instance"],
            "assumptions": [
                f"a container stays up {f.keep_warm_s:.0f} s after its last request (the platform's scale-down window), "
                "then scales to zero",
                f"one container serves up to {plan.batch_cap:g} concurrent requests (today's largest running batch); "
                "busier minutes add containers" if plan.batch_cap else "one container serves the load one GPU serves today",
                f"every warm period starts cold: {o.cold_start_s:g} s billed per start",
                f"same GPU class ({o.gpu_type}) at {o.provider}'s list price ${o.usd_per_gpu_s}/GPU-s"
                + (f" ({o.note})" if o.note else ""),
                month_assumption(ctx),
            ],
        }
        conf = 0.55 + 0.3 * coverage(ctx, 7) - (0.1 if per_day(ctx, f.cold_starts) > 24 else 0.0)
        keep = int(f.keep_warm_s)
        how_to = (
            f"Serve {f.model or 'the model'} from a serverless GPU that scales to zero, e.g. {o.provider} {o.gpu_type} "
            f"(${o.usd_per_gpu_s}/GPU-s, ${money(o.usd_per_gpu_s * 3600)}/h while up), minimum replicas 0 and a {keep} s "
            f"scale-down window (Modal: min_containers=0, scaledown_window={keep}; RunPod serverless: active workers 0, "
            f"idle timeout {keep} s; Cloud Run: --min-instances=0). Expect ~{o.cold_start_s:g} s cold starts, about "
            f"{per_day(ctx, f.cold_starts):g} a day; warm it ahead of known busy hours if that matters. Then stop the "
            f"always-on {plan.instance.instance_type if plan.instance else 'box'}."
        )
        return [Recommendation(
            action=n, title=f"Scale to zero: idle {1 - warm_share:.0%} of the time, serverless {o.gpu_type} costs "
                            f"${money(after or 0):,}/month instead of ${money(ctx.current_monthly_usd):,}",
            evidence=evidence, savings_usd_month=saved, confidence=round(max(0.1, min(0.95, conf)), 3), how_to=how_to,
            touches=("deployment", "pricing"), apply=apply,
        )]

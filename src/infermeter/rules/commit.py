"""commit: a box busy around the clock on on-demand prices should be on committed pricing.

Fires when today's always-on deployment pays on-demand, requests arrive in most minutes of the
window (steady 24/7 use), and the catalog has a 1-year committed rate for the instance.
"""

from __future__ import annotations

from collections.abc import Sequence

from .base import Action, Recommendation, RuleContext
from .evidence import cost_evidence, coverage, month_assumption, r
from .plan import ALWAYS_ON, Plan

__all__ = ["CommitRule"]


class CommitRule:
    name = Action.COMMIT
    thresholds = {
        "min_active_share": 0.8,  # share of minutes with at least one request
        "min_span_s": 72000.0,  # at least ~a day of data (20 h) before suggesting a year's commitment
    }

    def evaluate(self, ctx: RuleContext) -> Sequence[Recommendation]:
        f, plan, n = ctx.facts, ctx.plan, self.name
        if plan.mode != ALWAYS_ON or plan.pricing != "on_demand" or not f.requests:
            return []
        active_share = f.active_minutes * 60 / f.observed_s if f.observed_s else 0.0
        if active_share < ctx.t(n, "min_active_share"):
            return []
        if f.observed_s < ctx.t(n, "min_span_s"):
            ctx.note(n, f"steady so far, but only {f.observed_s / 3600:.1f} h of data: too little to justify a commitment")
            return []
        inst = plan.instance
        if inst is None or inst.committed_usd_h is None:
            ctx.note(n, "no committed price for this instance in the catalog")
            return []

        def apply(p: Plan) -> Plan | None:
            if p.mode != ALWAYS_ON or p.instance is None or p.instance.committed_usd_h is None or p.pricing != "on_demand":
                return None
            return p.replace(pricing="committed", hourly_usd=p.instance.committed_usd_h)

        new = apply(plan)
        saved = ctx.savings(new)
        if saved <= 0:
            return []
        evidence = {
            "active_minute_share": r(active_share), "busy_share": r(f.duty_cycle),
            "gpu_util_mean_pct": r(f.gpu_util_mean_pct, 1), "observed_days": r(f.observed_s / 86400, 2),
            "on_demand_usd_h": plan.hourly_usd, "committed_usd_h": inst.committed_usd_h,
            **cost_evidence(ctx, ctx.costs.monthly(new) if new else None),
            "queries": ["rules.concurrency", "rules.instance"],
            "assumptions": [
                "the box stays in use for the whole term (1 year, no upfront)",
                f"the catalog's committed rate for {inst.cloud} {inst.instance_type}: ${inst.committed_usd_h}/h",
                month_assumption(ctx),
            ],
        }
        how_to = {
            "aws": f"Buy a 1-year, no-upfront Compute Savings Plan (or an EC2 Instance Savings Plan for the g/p family) "
                   f"covering {plan.instances} x {inst.instance_type}: ${inst.committed_usd_h}/h instead of ${plan.hourly_usd}/h.",
            "gcp": f"Buy a 1-year committed-use discount for {plan.instances} x {inst.instance_type}'s vCPUs, memory and "
                   f"GPUs in its region: ${inst.committed_usd_h}/h instead of ${plan.hourly_usd}/h.",
            "azure": f"Buy a 1-year reservation for {plan.instances} x {inst.instance_type} in its region: "
                     f"${inst.committed_usd_h}/h instead of ${plan.hourly_usd}/h.",
        }.get(inst.cloud, f"Commit to {plan.instances} x {inst.instance_type} for a year at ${inst.committed_usd_h}/h.")
        how_to += " Commit only the steady baseline; burst above it on demand or spot."
        return [Recommendation(
            action=n, title=f"Commit: requests arrive in {active_share:.0%} of minutes, around the clock, on on-demand prices",
            evidence=evidence, savings_usd_month=saved, confidence=round(0.45 + 0.45 * coverage(ctx, 14), 3),
            how_to=how_to, touches=("pricing",), apply=apply,
        )]

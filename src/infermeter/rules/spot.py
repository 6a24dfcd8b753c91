"""spot: interruption-tolerant work on on-demand capacity should run on spot.

Interruption-tolerant means tagged batch/offline traffic (endpoint or tenant matching
``spot.offline_pattern``) or several replicas, of which all but one can be spot. The share of
capacity moved is the offline share of request time (or (replicas - 1) / replicas), and the
spot price carries an allowance for work redone after interruptions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .base import Action, Recommendation, RuleContext, fraction
from .evidence import cost_evidence, month_assumption, r
from .plan import ALWAYS_ON, Plan

__all__ = ["SpotRule", "offline_share"]

DEFAULT_PATTERN = r"batch|offline|backfill|nightly|etl|bulk|eval"


def offline_share(endpoints: Sequence[dict], pattern: str) -> tuple[float, list[str]]:
    """Share of request-seconds on endpoints/tenants matching ``pattern``, and which matched."""
    rx = re.compile(pattern, re.I)
    total = sum(e["request_s"] for e in endpoints)
    hits = [e for e in endpoints if rx.search(e["endpoint"] or "") or rx.search(e["tenant"] or "")]
    names = sorted({e["endpoint"] or e["tenant"] for e in hits})
    return (sum(e["request_s"] for e in hits) / total if total else 0.0), names


class SpotRule:
    name = Action.SPOT
    thresholds = {
        "min_offline_share": 0.5,  # share of request time that is tagged batch/offline
        "min_replicas": 2.0,  # or this many replicas (all but one can be spot)
        "rework_share": 0.05,  # work redone after interruptions, added to the spot price
        "offline_pattern": DEFAULT_PATTERN,  # regular expression over endpoint and tenant
    }

    def evaluate(self, ctx: RuleContext) -> Sequence[Recommendation]:
        f, plan, n = ctx.facts, ctx.plan, self.name
        if plan.mode != ALWAYS_ON or plan.pricing not in ("on_demand", "committed") or not f.requests:
            return []
        share, names = offline_share(f.endpoints, str(ctx.thresholds[f"{n}.offline_pattern"]))
        why = "offline"
        if share < ctx.t(n, "min_offline_share"):
            if plan.instances < ctx.t(n, "min_replicas"):
                return []
            share, why = (plan.instances - 1) / plan.instances, "replicas"
        inst = plan.instance
        if inst is None or inst.spot_usd_h is None:
            ctx.note(n, "interruption-tolerant traffic, but no spot price for this instance in the catalog")
            return []
        rework = fraction(ctx.t(n, "rework_share"))
        spot_share = fraction(share)

        def apply(p: Plan) -> Plan | None:
            if p.mode != ALWAYS_ON or p.instance is None or p.instance.spot_usd_h is None:
                return None
            return p.replace(spot_share=spot_share, spot_hourly_usd=p.instance.spot_usd_h * (1 + rework))

        new = apply(plan)
        saved = ctx.savings(new)
        if saved <= 0:
            return []
        evidence = {
            "interruption_tolerant": why, "offline_share": r(share), "offline_endpoints": names[:10],
            "replicas": plan.instances, "price_usd_h": plan.hourly_usd, "spot_usd_h": inst.spot_usd_h,
            **cost_evidence(ctx, ctx.costs.monthly(new) if new else None),
            "queries": ["rules.endpoints", "rules.replicas", "rules.instance"],
            "assumptions": [
                f"{share:.0%} of capacity moves to spot"
                + (" (the tagged batch/offline share of request time)" if why == "offline" else ", one replica stays on demand"),
                f"the catalog's typical spot price ${inst.spot_usd_h}/h (it moves by zone and hour), plus {rework:.0%} "
                "for work redone after interruptions",
                month_assumption(ctx),
            ],
        }
        target = ", ".join(names[:3]) if why == "offline" else f"{plan.instances - 1} of {plan.instances} replicas"
        how_to = (
            f"Run {target} on spot {inst.instance_type} (${inst.spot_usd_h}/h vs ${plan.hourly_usd}/h): "
            "an Auto Scaling group / Karpenter NodePool with capacity-type spot (GKE: --spot; Azure: priority Spot), "
            "several instance types and zones, a 2-minute interruption handler that stops taking work, "
            "and idempotent jobs that checkpoint and retry"
            + (" (e.g. vLLM offline batches resumed from the last finished item)." if why == "offline"
               else "; keep one on-demand replica as the floor.")
        )
        conf = 0.75 if why == "offline" else 0.55
        return [Recommendation(
            action=n, title=f"Use spot for interruption-tolerant work ({why}: {share:.0%} of capacity)",
            evidence=evidence, savings_usd_month=saved, confidence=conf, how_to=how_to,
            touches=("pricing",), apply=apply,
        )]

"""cache: the same prompt arrives again and again; answer repeats from a cache, not the GPU.

Counts requests whose ``prompt_hash`` was already seen in the window. A cache removes that share of
demand: fewer serverless replicas or API tokens, fewer boxes; one always-on box keeps its bill but
gains the GPU time back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal

from .base import Action, Recommendation, RuleContext, fraction
from .evidence import cost_evidence, month_assumption, r
from .plan import ALWAYS_ON, Plan

__all__ = ["CacheRule"]


class CacheRule:
    name = Action.CACHE
    thresholds = {
        "min_repeat_share": 0.1,  # share of hashed requests that repeat an earlier prompt
        "min_hashed_requests": 200.0,
        "hit_efficiency": 0.9,  # share of repeats a cache with a sensible TTL actually serves
    }

    def evaluate(self, ctx: RuleContext) -> Sequence[Recommendation]:
        f, plan, n = ctx.facts, ctx.plan, self.name
        if f.hashed_requests < ctx.t(n, "min_hashed_requests"):
            if f.requests and not f.hashed_requests:
                ctx.note(n, "no prompt hashes recorded (INFERMETER_HASH_PROMPTS): cannot see repeats")
            return []
        share = f.repeat_share
        if share < ctx.t(n, "min_repeat_share"):
            return []
        served = fraction(share * ctx.t(n, "hit_efficiency"))

        def apply(p: Plan) -> Plan | None:
            q = p.replace(demand=p.demand * (Decimal(1) - served))
            if q.mode == ALWAYS_ON and q.instances > 1:
                q = q.replace(instances=max(1, math.ceil(q.instances * (Decimal(1) - served))))
            return q

        new = apply(plan)
        saved = ctx.savings(new)
        evidence = {
            "hashed_requests": f.hashed_requests, "repeat_requests": f.repeat_requests, "repeat_share": r(share),
            "repeat_request_hours": r(f.repeat_request_s / 3600, 2),
            "gpu_time_share_on_repeats": r(f.repeat_request_s / f.hashed_request_s if f.hashed_request_s else 0.0),
            **cost_evidence(ctx, ctx.costs.monthly(new) if new else None),
            "queries": ["rules.prompt_repeats"],
            "assumptions": [
                f"a cache serves {ctx.t(n, 'hit_efficiency'):.0%} of repeats (TTL, eviction, non-deterministic sampling)",
                "a repeated prompt hash means the same full prompt (system prompt, history and question)",
                month_assumption(ctx),
            ],
        }
        how_to = ("Put an exact-match response cache in front of the model, keyed on the hash of the full prompt and "
                  "sampling parameters (e.g. Redis with a TTL, LiteLLM `cache: true`, GPTCache), for requests at "
                  "temperature 0 or where a repeated answer is acceptable; keep vLLM `--enable-prefix-caching` on for "
                  "shared prefixes.")
        return [Recommendation(
            action=n, title=f"Cache: {share:.0%} of prompts repeat one seen earlier in the window",
            evidence=evidence, savings_usd_month=saved, confidence=0.6, how_to=how_to, touches=("demand",), apply=apply,
            note=None if saved > 0 else "no saving on one always-on box by itself: it frees GPU time",
        )]

"""hosted_api: the same model on a hosted API would cost less than serving it yourself.

Compares the window's tokens at the cheapest hosted offer of the *same* model (the catalog's
API-equivalent price; a fine-tuned or unknown model has none) with today's monthly cost. The
engine weighs it against the best self-hosted plan, not just against today.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .base import Action, Recommendation, RuleContext, money
from .evidence import cost_evidence, coverage, month_assumption
from .plan import HOSTED_API, Plan

__all__ = ["HostedApiRule", "base_model"]

_QUANT = re.compile(r"[-_.](awq|gptq|fp8|int8|int4|w8a8|w8a16|w4a16|nf4|bnb|gguf|q[2-8](_k)?(_[msl0])?|[48]bit)(?=$|[-_.])", re.I)


def base_model(model: str) -> str:
    """The model name without quantization tags ("llama-3.1-70b-instruct-awq" -> "llama-3.1-70b-instruct")."""
    return _QUANT.sub("", model)


class HostedApiRule:
    name = Action.HOSTED_API
    thresholds = {
        "min_savings_share": 0.2,  # the API must be at least this much cheaper than today
    }

    def evaluate(self, ctx: RuleContext) -> Sequence[Recommendation]:
        f, plan, n = ctx.facts, ctx.plan, self.name
        if plan.mode == HOSTED_API or not f.model or not f.output_tokens and not f.input_tokens:
            return []
        api = ctx.catalog.api_equivalent(f.model) or ctx.catalog.api_equivalent(base_model(f.model))
        if api is None:
            ctx.note(n, f"no hosted API serves {f.model!r} in the catalog")
            return []

        def apply(p: Plan) -> Plan | None:
            return Plan(HOSTED_API, hosted=api, demand=p.demand)

        new = apply(plan)
        saved = ctx.savings(new)
        after = ctx.costs.monthly(new)
        if saved < ctx.current_monthly_usd * money(ctx.t(n, "min_savings_share")):
            ctx.note(n, f"these tokens would cost ${money(after or 0):,}/month at {api.provider}: not enough below "
                        f"today's ${money(ctx.current_monthly_usd):,}")
            return []
        evidence = {
            "model": f.model, "api": f"{api.provider} {api.model}", "input_tokens": f.input_tokens,
            "output_tokens": f.output_tokens, "input_usd_per_mtok": api.input_usd_per_mtok,
            "output_usd_per_mtok": api.output_usd_per_mtok, **cost_evidence(ctx, after),
            "queries": ["rules.requests", "rules.models"],
            "assumptions": [
                "the same tokens at the API's list price (no batch or cached-input discount)",
                "the hosted model answers as well as yours (same weights; no fine-tune of your own)"
                + ("; yours is a quantized build, the API's may not be" if base_model(f.model) != f.model else ""),
                month_assumption(ctx),
            ],
        }
        how_to = (f"Send {f.model}'s traffic to {api.provider} ({api.model}, ${api.input_usd_per_mtok}/M input, "
                  f"${api.output_usd_per_mtok}/M output tokens) through its OpenAI-compatible endpoint: change "
                  "base_url and the model id; keep `infermeter proxy` in front to keep measuring; then release the GPUs.")
        return [Recommendation(
            action=n, title=f"Use a hosted API: these tokens cost ${money(after or 0):,}/month at {api.provider}",
            evidence=evidence, savings_usd_month=saved, confidence=round(0.5 + 0.3 * coverage(ctx, 7), 3),
            how_to=how_to, touches=("deployment", "pricing", "gpu", "batching"), apply=apply,
        )]

"""The engine: measure a window, run every rule, settle conflicts, and add savings up honestly.

1. Window: ``window_s`` (default 24 h) ending at the newest data in the store (never in the future),
   so a store written yesterday or by the simulator is judged on its own data.
2. Too little data (fewer than ``engine.min_requests`` requests or ``engine.min_span_s`` of data)
   gives no recommendation and says so, rather than a guess.
3. Conflicts: two recommendations that change the same thing (``touches``: deployment, pricing,
   GPU, batching) cannot both be taken; the one with the larger expected saving (savings x
   confidence) wins and the loser carries the reason. A hosted API is weighed against the best
   self-hosted plan, not against today.
4. Combined savings: the accepted changes are applied one after another to the plan and each is
   priced against what remains, so the total is never double-counted.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .base import Action, Recommendation, Rule, RuleContext, money
from .catalog_lookup import Catalog, load_catalog
from .facts import WorkloadFacts, latest_data_ns, measure
from .plan import CostModel, Plan, current_plan
from .thresholds import default_rules, resolve

__all__ = ["Evaluation", "evaluate", "settle", "DEFAULT_WINDOW_S"]

logger = logging.getLogger(__name__)

DEFAULT_WINDOW_S = 86400.0
OK, INSUFFICIENT, NO_PRICE = "ok", "insufficient_data", "no_price"

# Why one action beats another, when they change the same thing: {(winner, loser): reason}.
_REASONS = {
    (Action.SERVERLESS, Action.COMMIT): "a commitment pays for all 730 hours a month, and this GPU is needed in few of them",
    (Action.SERVERLESS, Action.SPOT): "scaling to zero removes the idle hours that spot would still pay for",
    (Action.COMMIT, Action.SERVERLESS): "the GPU is busy most hours, so per-second serverless billing costs more",
    (Action.SPOT, Action.COMMIT): "the work tolerates interruptions, and spot costs less than a 1-year commitment without the lock-in",
    (Action.COMMIT, Action.SPOT): "only part of the work tolerates interruptions; a commitment discounts all of it",
    (Action.SPOT, Action.SERVERLESS): "the box is busy enough that cheap interruptible hours beat per-second billing",
    (Action.QUANTIZE, Action.RIGHTSIZE): "lower precision reaches a cheaper GPU than right-sizing at today's precision",
    (Action.RIGHTSIZE, Action.QUANTIZE): "right-sizing saves about as much without changing the model's precision",
    (Action.ALWAYS_ON, Action.SERVERLESS): "containers are up most of the time; a box of one's own is cheaper",
}


@dataclass(frozen=True)
class Evaluation:
    status: str  # ok | insufficient_data | no_price
    message: str
    since_ns: int
    until_ns: int
    evaluated_ns: int
    recommendations: tuple[Recommendation, ...] = ()  # accepted, in the order applied; then superseded
    current_monthly_usd: Decimal | None = None
    projected_monthly_usd: Decimal | None = None
    combined_savings_usd_month: Decimal = Decimal(0)
    current_plan: str | None = None
    final_plan: str | None = None
    notes: tuple[str, ...] = ()
    facts: WorkloadFacts | None = field(default=None, repr=False)
    thresholds: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def recommended(self) -> list[Recommendation]:
        return [r for r in self.recommendations if r.status == "recommended"]

    def to_dict(self) -> dict[str, Any]:
        f = self.facts
        share = (self.combined_savings_usd_month / self.current_monthly_usd
                 if self.current_monthly_usd else None)
        return {
            "status": self.status,
            "message": self.message,
            "window": {"since_ns": self.since_ns, "until_ns": self.until_ns,
                       "seconds": (self.until_ns - self.since_ns) / 1e9,
                       "observed_seconds": f.observed_s if f else 0.0},
            "evaluated_ns": self.evaluated_ns,
            "current_monthly_usd": money(self.current_monthly_usd) if self.current_monthly_usd is not None else None,
            "projected_monthly_usd": money(self.projected_monthly_usd) if self.projected_monthly_usd is not None else None,
            "combined_savings_usd_month": money(self.combined_savings_usd_month),
            "combined_savings_share": round(float(share), 4) if share is not None else None,
            "current_plan": self.current_plan,
            "final_plan": self.final_plan,
            "recommendations": [r.to_dict() for r in self.recommendations],
            "notes": list(self.notes),
            "workload": _workload_summary(f) if f else None,
        }


def _workload_summary(f: WorkloadFacts) -> dict[str, Any]:
    return {"model": f.model, "requests": f.requests, "input_tokens": f.input_tokens, "output_tokens": f.output_tokens,
            "busy_share": round(f.duty_cycle, 4), "gpu": f.gpu_name, "gpus": f.gpu_count, "instance": f.instance_type,
            "pricing": f.pricing, "hourly_usd": f.hourly_usd}


def evaluate(
    con: Any,
    *,
    window_s: float = DEFAULT_WINDOW_S,
    until_ns: int | None = None,
    thresholds: Any = None,
    catalog: Catalog | None = None,
    rules: list[Rule] | None = None,
    now_ns: int | None = None,
) -> Evaluation:
    """Recommendations over ``window_s`` ending at ``until_ns`` (default: the newest data)."""
    now = now_ns or time.time_ns()
    rules = rules if rules is not None else default_rules()
    th = thresholds if isinstance(thresholds, dict) else resolve(thresholds, rules)
    _, latest = latest_data_ns(con)
    until = until_ns or min(now, (latest or now - 1) + 1)
    since = until - int(window_s * 1e9)
    base = {"since_ns": since, "until_ns": until, "evaluated_ns": now, "thresholds": th}
    if latest is None:
        return Evaluation(INSUFFICIENT, "no requests or samples in the store yet: nothing to recommend "
                          "(send traffic through infermeter, or try `infermeter simulate tutoring --db FILE`)", **base)
    facts = measure(con, since, until, keep_warm_s=float(th["engine.keep_warm_s"]), busy_pct=float(th["engine.busy_util_pct"]))
    hours = _hours(window_s)
    if facts.requests < th["engine.min_requests"] or facts.observed_s < th["engine.min_span_s"]:
        return Evaluation(
            INSUFFICIENT,
            f"too little data in the {hours} window: {facts.requests:,} requests over {facts.observed_s / 3600:.1f} h "
            f"(need at least {th['engine.min_requests']:.0f} requests over {th['engine.min_span_s'] / 3600:g} h); "
            "no recommendation rather than a guess", facts=facts, **base)
    catalog = catalog if catalog is not None else load_catalog()
    plan = current_plan(facts, catalog)
    if plan is None:
        return Evaluation(
            NO_PRICE, "no price for this deployment: set INFERMETER_INSTANCE (a catalog instance type) or "
            "INFERMETER_HOURLY_USD so the agent records one; savings cannot be estimated without it", facts=facts, **base)
    costs = CostModel(facts)
    ctx = RuleContext(facts, th, catalog, plan, costs)
    found: list[Recommendation] = []
    for rule in rules:
        try:
            found.extend(rule.evaluate(ctx))
        except Exception as e:  # noqa: BLE001 - one broken rule must not hide the others
            logger.warning("rule %s failed: %r", rule.name, e, exc_info=logger.isEnabledFor(logging.DEBUG))
            ctx.note(rule.name, f"failed ({type(e).__name__}: {e})")
    return settle(found, ctx, base, hours)


def _hours(window_s: float) -> str:
    return f"{window_s / 86400:g}-day" if window_s % 86400 == 0 and window_s >= 86400 else f"{window_s / 3600:g} h"


def _expected(r: Recommendation) -> Decimal:
    return r.savings_usd_month * Decimal(str(r.confidence))


def _conflict_note(winner: Recommendation, loser: Recommendation) -> str:
    shared = sorted(set(winner.touches) & set(loser.touches))
    why = _REASONS.get((winner.action, loser.action))
    text = (f"superseded by {winner.action}: both change the {' and '.join(shared)}; {winner.action} saves "
            f"${money(winner.savings_usd_month):,}/month at {winner.confidence:.0%} confidence against "
            f"${money(loser.savings_usd_month):,} at {loser.confidence:.0%}")
    return f"{text}; {why}" if why else text


def _sequence(recs: list[Recommendation], plan: Plan, costs: CostModel) -> tuple[list[Recommendation], Plan]:
    """Apply ``recs`` in order; each one's saving is priced against the plan the previous ones left."""
    out = []
    before = costs.monthly(plan) or Decimal(0)
    applied: list[str] = []
    for rec in recs:
        new = rec.apply(plan) if rec.apply else None
        after = costs.monthly(new) if new is not None else None
        if new is None or after is None or after > before:
            after_what = f"nothing to save after {', '.join(applied)}" if applied else None
            out.append(dataclasses.replace(rec, combined_savings_usd_month=Decimal("0.00"), note=_join(rec.note, after_what)))
            continue
        inc = money(before - after)
        note = f"applied after {', '.join(applied)}: saves ${inc:,} of the remaining ${money(before):,}/month" if applied else None
        out.append(dataclasses.replace(rec, combined_savings_usd_month=inc, note=_join(rec.note, note)))
        applied.append(rec.action)
        plan, before = new, after
    return out, plan


def _join(*parts: str | None) -> str | None:
    kept = [p for p in parts if p]
    return "; ".join(kept) if kept else None


def settle(found: list[Recommendation], ctx: RuleContext, base: dict[str, Any], hours: str = "24 h") -> Evaluation:
    """Resolve conflicts among ``found`` and price the accepted ones in sequence (``base``: the
    Evaluation's window fields, ``since_ns``, ``until_ns``, ``evaluated_ns``, ``thresholds``)."""
    costs, plan = ctx.costs, ctx.plan
    current = costs.monthly(plan) or Decimal(0)
    order = sorted(found, key=lambda r: (-_expected(r), -r.savings_usd_month, r.action))
    hosted = [r for r in order if r.action == Action.HOSTED_API]
    accepted: list[Recommendation] = []
    superseded: list[Recommendation] = []
    taken: dict[str, Recommendation] = {}
    for rec in (r for r in order if r.action != Action.HOSTED_API):
        rival = next((taken[t] for t in rec.touches if t in taken), None)
        if rival is not None:
            superseded.append(dataclasses.replace(rec, status="superseded", note=_conflict_note(rival, rec)))
            continue
        accepted.append(rec)
        taken.update({t: rec for t in rec.touches})
    done, final = _sequence(accepted, plan, costs)
    final_cost = costs.monthly(final) or Decimal(0)
    for h in hosted:
        api_plan = h.apply(final) if h.apply else None
        api_cost = costs.monthly(api_plan) if api_plan is not None else None
        if api_cost is not None and api_cost < final_cost:
            # the API beats the best self-hosted plan: it replaces every action it conflicts with
            losers = [r for r in accepted if set(r.touches) & set(h.touches)]
            keep = [r for r in accepted if r not in losers]
            reason = (f"superseded by hosted_api: the API costs ${money(api_cost):,}/month, less than "
                      f"${money(final_cost):,} for the best self-hosted plan")
            superseded = [dataclasses.replace(r, status="superseded", note=reason) for r in losers] + superseded
            done, final = _sequence([h, *keep], plan, costs)
        else:
            best = " + ".join(r.action for r in done if r.combined_savings_usd_month) or "today's deployment"
            superseded.append(dataclasses.replace(h, status="superseded", note=(
                f"the self-hosted plan ({best}) costs ${money(final_cost):,}/month, less than "
                f"${money(api_cost or 0):,} on the API")))
        break
    final_cost = costs.monthly(final) or Decimal(0)
    combined = money(current - final_cost)
    recs = tuple(done + superseded)
    n = len(done)
    if n:
        message = (f"{n} recommendation{'s' if n > 1 else ''} over the last {hours} of data; together they save "
                   f"${combined:,}/month ({float(combined / current) if current else 0:.0%} of ${money(current):,})")
    else:
        message = f"no recommendation: nothing in the last {hours} of data crossed a rule's threshold"
    return Evaluation(OK, message, recommendations=recs, current_monthly_usd=current, projected_monthly_usd=final_cost,
                      combined_savings_usd_month=combined, current_plan=plan.describe(), final_plan=final.describe(),
                      notes=tuple(ctx.notes), facts=ctx.facts, **base)

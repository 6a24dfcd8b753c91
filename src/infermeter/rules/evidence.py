"""Helpers the rules share to write evidence: rounding, per-day rates, how much data backs a claim."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from .base import RuleContext, money

__all__ = ["coverage", "r", "per_day", "month_assumption", "cost_evidence", "gib"]


def coverage(ctx: RuleContext, full_days: float) -> float:
    """0..1: how much of ``full_days`` of data backs the facts (confidence grows with it)."""
    return min(1.0, ctx.facts.observed_s / (full_days * 86400))


def r(x: float | None, digits: int = 3) -> float | None:
    return None if x is None else round(float(x), digits)


def gib(n: int | None) -> float | None:
    return None if n is None else round(n / 1024**3, 1)


def per_day(ctx: RuleContext, count: float) -> float:
    days = ctx.facts.observed_s / 86400
    return round(count / days, 2) if days > 0 else 0.0


def month_assumption(ctx: RuleContext) -> str:
    hours = ctx.facts.observed_s / 3600
    return (f"usage measured over {hours:,.1f} h of data in the window, scaled x{float(ctx.costs.month_factor):,.2f} "
            f"to a 730-hour month; an always-on box costs its hourly price x 730")


def cost_evidence(ctx: RuleContext, after: Decimal | None) -> dict[str, Any]:
    """Today's monthly cost, the changed plan's, and what the plan is, for a rule's evidence."""
    return {
        "current_monthly_usd": money(ctx.current_monthly_usd),
        "projected_monthly_usd": money(after) if after is not None else None,
        "current_plan": ctx.plan.describe(),
    }

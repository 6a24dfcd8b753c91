"""The rule seam: a rule reads measured facts over a window and returns zero or more recommendations.

A rule is one small object with a ``name`` (its action), its default ``thresholds`` and
``evaluate(ctx)``. The context carries the facts (numbers measured by named queries over the
window), the thresholds in force and a catalog of prices; a rule never runs SQL itself. Savings
are exact (``Decimal`` dollars a month) and every assumption behind them is written out in
``evidence["assumptions"]`` so a reader can redo the arithmetic.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .catalog_lookup import Catalog
    from .facts import WorkloadFacts
    from .plan import CostModel, Plan

__all__ = [
    "Recommendation",
    "Rule",
    "RuleContext",
    "HOURS_PER_MONTH",
    "money",
    "fraction",
    "Action",
]

logger = logging.getLogger(__name__)

HOURS_PER_MONTH = Decimal(730)
"""Cloud billing's month: 730 hours (8,760 / 12)."""

_CENT = Decimal("0.01")


def money(x: Decimal | float | int) -> Decimal:
    """Dollars to the cent (half-even), exactly, from a Decimal or a measured float."""
    d = x if isinstance(x, Decimal) else Decimal(str(x))
    return d.quantize(_CENT, rounding=ROUND_HALF_EVEN)


def fraction(x: float) -> Decimal:
    """A measured ratio as a Decimal with 4 places, for exact arithmetic on money."""
    return Decimal(str(round(float(x), 4)))


class Action:
    """The ``action`` values, one per rule."""

    QUANTIZE = "quantize"
    BATCH = "batch"
    SERVERLESS = "serverless"
    ALWAYS_ON = "always_on"
    SPOT = "spot"
    COMMIT = "commit"
    RIGHTSIZE = "rightsize"
    CACHE = "cache"
    HOSTED_API = "hosted_api"


@dataclass(frozen=True)
class Recommendation:
    """What to change, what it saves a month, and the numbers that say so.

    ``savings_usd_month`` is against today's monthly cost, as if this were the only change;
    the engine fills ``combined_savings_usd_month`` (this action's share when the accepted actions
    are applied one after another to what remains, so nothing is counted twice). ``evidence``
    holds the measured numbers, the named queries they came from (``evidence["queries"]``) and
    the assumptions (``evidence["assumptions"]``). ``touches`` names what the action changes
    (``deployment``, ``pricing``, ``gpu``, ``demand``, ``efficiency``): two recommendations that
    touch the same thing conflict and the engine keeps one.
    """

    action: str
    title: str
    evidence: Mapping[str, Any]
    savings_usd_month: Decimal
    confidence: float
    how_to: str
    touches: tuple[str, ...] = ()
    status: str = "recommended"  # recommended | superseded
    note: str | None = None  # why superseded, or how it combines
    combined_savings_usd_month: Decimal | None = None
    apply: Callable[[Plan], Plan | None] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence must be within 0..1, got {self.confidence!r}")
        if not isinstance(self.savings_usd_month, Decimal):
            raise TypeError("savings_usd_month must be a Decimal")

    def savings_fraction(self, current_monthly_usd: Decimal) -> Decimal:
        """Savings as a share of today's monthly cost, clamped to 0..1."""
        if current_monthly_usd <= 0:
            return Decimal(0)
        return min(Decimal(1), max(Decimal(0), self.savings_usd_month / current_monthly_usd))

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "title": self.title,
            "evidence": dict(self.evidence),
            "savings_usd_month": self.savings_usd_month,
            "combined_savings_usd_month": self.combined_savings_usd_month,
            "confidence": round(self.confidence, 3),
            "how_to": self.how_to,
            "status": self.status,
            "note": self.note,
        }


@dataclass(frozen=True)
class RuleContext:
    """What a rule may look at: the measured facts, the thresholds in force, the price catalog."""

    facts: WorkloadFacts
    thresholds: Mapping[str, Any]
    catalog: Catalog
    plan: Plan  # today's deployment
    costs: CostModel
    notes: list[str] = field(default_factory=list)  # why a rule did not fire, when that is news

    def t(self, rule: str, key: str) -> float:
        """The threshold ``rule.key`` (configured, else the rule's default)."""
        return float(self.thresholds[f"{rule}.{key}"])

    @property
    def current_monthly_usd(self) -> Decimal:
        cost = self.costs.monthly(self.plan)
        return cost if cost is not None else Decimal(0)

    def savings(self, changed: Plan | None) -> Decimal:
        """Monthly dollars ``changed`` saves against today (negative when it costs more)."""
        after = self.costs.monthly(changed) if changed is not None else None
        if after is None:
            return Decimal(0)
        return money(self.current_monthly_usd - after)

    def note(self, rule: str, text: str) -> None:
        self.notes.append(f"{rule}: {text}")


class Rule(Protocol):
    """One recommendation rule. ``thresholds`` are its defaults, by key (without the rule prefix)."""

    name: str
    thresholds: Mapping[str, float]

    def evaluate(self, ctx: RuleContext) -> Sequence[Recommendation]: ...

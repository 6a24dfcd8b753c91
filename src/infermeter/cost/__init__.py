"""Cost: the price catalog, pricing at ingest, attribution of the box's cost and energy, cost views.

Three views of one request's cost:

* allocation -- its share of the box's price including idle time (``requests.cost_usd`` for a
  self-hosted request; sums with the windows' unallocated cost to the bill);
* usage -- what it consumed: its share of the busy part of each window;
* API-equivalent -- what the same tokens would cost on the cheapest hosted offer of the model.

:func:`install` wires it into an agent: the pricing processor into the pipeline, attribution as a
pipeline sink and an agent component.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .attribution import Attribution
    from .catalog import Catalog
    from .pricing import PricingProcessor
    from .rollups import Rollups

__all__ = ["CostService", "install", "ROLLUP_MARGIN_S"]

ROLLUP_MARGIN_S = 120.0
"""Rollups wait this long past the attribution delay before rolling a block."""


@dataclass
class CostService:
    """What an agent's cost machinery is made of (``agent.cost``)."""

    catalog: "Catalog"
    pricing: "PricingProcessor"
    attribution: "Attribution"
    rollups: "Rollups"

    def stats(self) -> dict[str, Any]:
        return {"pricing": self.pricing.stats(), "attribution": dict(self.attribution.stats),
                "rollups": dict(self.rollups.stats), "box": self.attribution.box.source if self.attribution.box else None}


def install(agent: Any) -> CostService:
    """Add pricing and attribution to a (not yet started) agent. Raises ConfigError on a bad price setting."""
    from .attribution import Attribution
    from .box import resolve_box_price
    from .catalog import load_catalog
    from .pricing import PricingProcessor
    from .rollups import Rollups

    catalog = load_catalog(agent.settings.price_file)
    resolve_box_price(agent.settings, catalog)  # a bad instance/region stops start-up here, by name
    pricing = PricingProcessor(catalog)
    attribution = Attribution(agent.store, agent.settings, catalog, pipeline=agent.pipeline)
    # blocks are rolled once their windows are final: past the attribution delay, with margin
    rollups = Rollups(agent.store, horizon_s=agent.settings.attribution_delay_s + ROLLUP_MARGIN_S)
    attribution.listeners.append(rollups.on_costs_changed)
    agent.pipeline.processors.append(pricing)
    agent.pipeline.pricing = pricing
    agent.pipeline.sinks.append(attribution.sink)
    agent.pipeline.sinks.append(rollups.sink)
    agent.add_component(attribution)
    agent.add_component(rollups)  # after attribution: flushes and shutdowns run in this order
    return CostService(catalog, pricing, attribution, rollups)

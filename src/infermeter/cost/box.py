"""What this box costs: settings + catalog -> one price row, and the history of such rows.

Precedence: ``hourly_usd`` (explicit) > ``gpu_hour_usd`` x GPUs > ``instance`` priced from the
catalog under ``pricing``. The GPU count comes from the catalog's instance, else from the GPUs the
sampler saw; with neither, a $/GPU-hour price cannot be turned into a box price yet and the box
stays unpriced (None), never $0. ``region`` adds grid intensity and PUE for carbon.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from ..config import Settings
from ..errors import ConfigError
from .catalog import Catalog
from .shares import nano_from_usd

__all__ = ["BoxPrice", "resolve_box_price", "PriceBook"]


@dataclass(frozen=True)
class BoxPrice:
    """One row of ``instance_prices`` (without host and times)."""

    hourly_usd: Decimal | None
    cloud: str | None = None
    instance_type: str | None = None
    pricing: str | None = None
    gpu_type: str | None = None
    gpu_count: int | None = None
    region: str | None = None
    grid_gco2e_per_kwh: float | None = None
    pue: float | None = None
    source: str = "no price configured"

    @property
    def needs_gpu_count(self) -> bool:
        return self.hourly_usd is None and self.source.startswith("gpu_hour_usd")

    def row(self, host: str, effective_from_ns: int, recorded_at_ns: int) -> tuple:
        return (host, effective_from_ns, self.hourly_usd, self.cloud, self.instance_type, self.pricing,
                self.gpu_type, self.gpu_count, self.region, self.grid_gco2e_per_kwh, self.pue, self.source,
                recorded_at_ns)

    def same_as(self, row: dict) -> bool:
        keys = ("hourly_usd", "cloud", "instance_type", "pricing", "gpu_count", "region", "source")
        return all(row.get(k) == getattr(self, k) for k in keys)


def resolve_box_price(settings: Settings, catalog: Catalog, gpus_seen: int | None = None) -> BoxPrice:
    """The box's price from settings; raises ConfigError for an instance the catalog lacks."""
    inst = None
    if settings.instance:
        inst = catalog.instance(settings.instance)
        if inst is None:
            raise ConfigError("instance", settings.instance,
                              "not in the price catalog (see `infermeter prices`); set INFERMETER_HOURLY_USD instead, "
                              "or add it to INFERMETER_PRICE_FILE")
    carbon = catalog.carbon(settings.region) if settings.region else None
    if settings.region and carbon is None:
        raise ConfigError("region", settings.region, "no grid carbon intensity for this region in the catalog")
    common = dict(
        cloud=inst.cloud if inst else None,
        instance_type=inst.instance_type if inst else None,
        gpu_type=inst.gpu_type if inst else None,
        gpu_count=inst.gpu_count if inst else gpus_seen,
        region=settings.region,
        grid_gco2e_per_kwh=carbon[0] if carbon else None,
        pue=carbon[1] if carbon else None,
    )
    if settings.hourly_usd is not None:
        return BoxPrice(_usd(settings.hourly_usd), pricing="explicit", source="hourly_usd setting", **common)
    if settings.gpu_hour_usd is not None:
        count = common["gpu_count"]
        if not count:
            return BoxPrice(None, pricing="explicit", source="gpu_hour_usd setting (waiting for a GPU count)", **common)
        how = "catalog" if inst else "GPUs seen"
        return BoxPrice(_usd(settings.gpu_hour_usd) * count, pricing="explicit",
                        source=f"gpu_hour_usd setting x {count} GPUs ({how})", **common)
    if inst is not None:
        hourly = inst.hourly_usd(settings.pricing)
        if hourly is None:
            raise ConfigError("pricing", settings.pricing, f"the catalog has no {settings.pricing} price for {inst.instance_type}")
        return BoxPrice(hourly, pricing=settings.pricing,
                        source=f"catalog {inst.cloud} {inst.instance_type} {settings.pricing} as of {inst.as_of}", **common)
    return BoxPrice(None, **common)


def _usd(x: float | Decimal) -> Decimal:
    return Decimal(str(x)).quantize(Decimal("0.000000001"))


class PriceBook:
    """Price periods of one host: which ``hourly_usd`` applies to a window, in nano-dollars."""

    def __init__(self, rows: Sequence[dict]) -> None:
        rows = sorted(rows, key=lambda r: r["effective_from_ns"])
        self._starts = [r["effective_from_ns"] for r in rows]
        self._rows = rows

    def at(self, ts_ns: int) -> tuple[dict, int | None] | None:
        """(row, hourly nano-dollars or None) in effect at ``ts_ns``; None before the first."""
        i = bisect.bisect_right(self._starts, ts_ns) - 1
        if i < 0:
            return None
        row = self._rows[i]
        h = row.get("hourly_usd")
        return row, (nano_from_usd(h) if h is not None else None)

    def latest(self) -> dict | None:
        return self._rows[-1] if self._rows else None

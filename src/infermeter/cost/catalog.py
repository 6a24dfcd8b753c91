"""The price catalog: token prices, GPU instances, serverless GPUs, grid carbon; shipped + user file.

The shipped data lives in ``cost/data/*.toml``; every entry carries ``as_of`` and ``source``.
A user file (``INFERMETER_PRICE_FILE``, TOML or JSON, same sections and keys) replaces shipped
entries with the same identity (provider+model, cloud+instance_type, provider+gpu_type,
cloud+region) and adds new ones. Prices are ``Decimal``; a bad file raises :class:`CatalogError`
naming the file, the entry and the field. Nothing is fetched from the network.
"""

from __future__ import annotations

import json
import logging
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from importlib import resources
from typing import Any

from ..errors import ConfigError
from .names import candidates, normalize

__all__ = [
    "Catalog",
    "CatalogError",
    "ModelPrice",
    "InstancePrice",
    "ServerlessPrice",
    "RegionCarbon",
    "PRICING_MODELS",
    "load_catalog",
    "cached_catalog",
]

logger = logging.getLogger(__name__)

_NANO = Decimal("0.000000001")
_MILLION = Decimal(1_000_000)
PRICING_MODELS = ("on_demand", "spot", "committed")


class CatalogError(ConfigError):
    """A price file cannot be read or has a bad entry (names the file, entry and field)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__("price_file", path, reason)


@dataclass(frozen=True)
class ModelPrice:
    """A hosted model's token prices at one provider, USD per 1M tokens."""

    provider: str
    model: str
    input_usd_per_1m: Decimal
    output_usd_per_1m: Decimal
    cached_input_usd_per_1m: Decimal | None = None  # None: cached tokens cost the input price
    aliases: tuple[str, ...] = ()
    open_weights: bool = False
    as_of: str = ""
    source: str = ""
    note: str | None = None

    def cost_usd(self, input_tokens: int, output_tokens: int, cached_tokens: int | None = None) -> Decimal:
        """Exact cost to the nano-dollar. ``input_tokens`` includes ``cached_tokens`` (OTel GenAI)."""
        cached = min(max(cached_tokens or 0, 0), input_tokens)
        cached_price = self.input_usd_per_1m if self.cached_input_usd_per_1m is None else self.cached_input_usd_per_1m
        total = (
            (input_tokens - cached) * self.input_usd_per_1m
            + cached * cached_price
            + output_tokens * self.output_usd_per_1m
        ) / _MILLION
        return total.quantize(_NANO)


@dataclass(frozen=True)
class InstancePrice:
    """A cloud GPU instance: the whole box's $/hour under each pricing model."""

    cloud: str
    instance_type: str
    gpu_type: str
    gpu_count: int
    gpu_memory_gib: int | None
    on_demand_usd_per_hour: Decimal
    spot_usd_per_hour: Decimal | None = None
    committed_usd_per_hour: Decimal | None = None
    vcpus: int | None = None
    region: str | None = None
    as_of: str = ""
    source: str = ""
    note: str | None = None

    def hourly_usd(self, pricing: str = "on_demand") -> Decimal | None:
        return {"on_demand": self.on_demand_usd_per_hour, "spot": self.spot_usd_per_hour,
                "committed": self.committed_usd_per_hour}[pricing]


@dataclass(frozen=True)
class ServerlessPrice:
    """A serverless GPU offering: $ per GPU-second while running, and a typical cold start."""

    provider: str
    gpu_type: str
    usd_per_gpu_second: Decimal
    cold_start_s: float | None = None
    as_of: str = ""
    source: str = ""
    note: str | None = None


@dataclass(frozen=True)
class RegionCarbon:
    cloud: str
    region: str
    gco2e_per_kwh: float
    as_of: str = ""
    source: str = ""


@dataclass(frozen=True)
class Catalog:
    """Lookups over the merged catalog. Build with :func:`load_catalog`."""

    models: tuple[ModelPrice, ...] = ()
    instances: tuple[InstancePrice, ...] = ()
    serverless: tuple[ServerlessPrice, ...] = ()
    regions: tuple[RegionCarbon, ...] = ()
    pue_by_cloud: Mapping[str, float] = field(default_factory=dict)
    default_pue: float = 1.58
    files: tuple[str, ...] = ()
    _by_name: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    _by_key: dict[tuple[str, str], ModelPrice] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        for m in self.models:
            canon = normalize(m.model)
            self._by_key[(m.provider, canon)] = m
            for name in (m.model, *m.aliases):
                self._by_name.setdefault(normalize(name), canon)

    # -- models -------------------------------------------------------------------------------
    @property
    def providers(self) -> frozenset[str]:
        """Hosted providers with token prices (gen_ai.provider.name values)."""
        return frozenset(m.provider for m in self.models)

    def canonical(self, name: str) -> str | None:
        """The catalog's name for ``name`` (aliases and version suffixes resolved), or None."""
        for c in candidates(name):
            canon = self._by_name.get(c)
            if canon is not None:
                return canon
        return None

    def offers(self, name: str) -> list[ModelPrice]:
        """Every provider's price for this model, cheapest first (by input + output price)."""
        canon = self.canonical(name)
        if canon is None:
            return []
        found = [m for (p, c), m in self._by_key.items() if c == canon]
        return sorted(found, key=lambda m: (m.input_usd_per_1m + m.output_usd_per_1m, m.provider))

    def model(self, name: str, provider: str | None = None) -> ModelPrice | None:
        """The price of ``name`` at ``provider``; without a provider, the model's only or first-party offer.

        An open-weights model offered by several hosts has no single price without a provider
        (returns None): use :meth:`api_equivalent` to compare.
        """
        offers = self.offers(name)
        if provider is not None:
            p = provider.strip().lower()
            return next((m for m in offers if m.provider == p), None)
        closed = [m for m in offers if not m.open_weights]
        if closed:
            return closed[0]
        return offers[0] if len({m.provider for m in offers}) == 1 else None

    def api_equivalent(self, name: str) -> ModelPrice | None:
        """The cheapest hosted offer of the same model: what its tokens would cost on an API."""
        offers = self.offers(name)
        return offers[0] if offers else None

    # -- instances, serverless, carbon ----------------------------------------------------------
    def instance(self, name: str) -> InstancePrice | None:
        """An instance by type, case-insensitive, optionally ``cloud:type``."""
        cloud, _, itype = name.strip().lower().rpartition(":")
        for i in self.instances:
            if i.instance_type.lower() == itype and (not cloud or i.cloud == cloud):
                return i
        return None

    def serverless_for(self, gpu_type: str) -> list[ServerlessPrice]:
        g = gpu_type.strip().lower()
        return sorted((s for s in self.serverless if s.gpu_type.lower() == g), key=lambda s: s.usd_per_gpu_second)

    def carbon(self, region: str) -> tuple[float, float] | None:
        """(gCO2e/kWh, PUE) for a region (``cloud:region`` or just the region), or None."""
        cloud, _, reg = region.strip().lower().rpartition(":")
        for r in self.regions:
            if r.region.lower() == reg and (not cloud or r.cloud == cloud):
                return r.gco2e_per_kwh, self.pue_by_cloud.get(r.cloud, self.default_pue)
        return None

    def search(self, text: str | None = None) -> dict[str, list[Any]]:
        """Entries whose names contain ``text`` (case-insensitive), by section."""
        t = (text or "").strip().lower()
        canon = self.canonical(t) if t else None  # "llama3.1:8b" finds every host's llama-3.1-8b-instruct

        def hit(*names: str | None) -> bool:
            return not t or any(n and t in n.lower() for n in names)

        return {
            "models": [m for m in self.models if hit(m.provider, m.model, *m.aliases) or normalize(m.model) == canon],
            "instances": [i for i in self.instances if hit(i.cloud, i.instance_type, i.gpu_type)],
            "serverless": [s for s in self.serverless if hit(s.provider, s.gpu_type)],
            "carbon": [r for r in self.regions if hit(r.cloud, r.region)],
        }


# -- loading -------------------------------------------------------------------------------------

_SECTIONS = {
    "model": (ModelPrice, ("provider", "model")),
    "instance": (InstancePrice, ("cloud", "instance_type")),
    "serverless": (ServerlessPrice, ("provider", "gpu_type")),
    "region": (RegionCarbon, ("cloud", "region")),
}
_DECIMALS = {"input_usd_per_1m", "output_usd_per_1m", "cached_input_usd_per_1m", "on_demand_usd_per_hour",
             "spot_usd_per_hour", "committed_usd_per_hour", "usd_per_gpu_second"}
_SHIPPED = ("models.toml", "instances.toml", "serverless.toml", "carbon.toml")


def _parse_entry(cls: type, raw: Mapping[str, Any], where: str) -> Any:
    fields_ = {f for f in cls.__dataclass_fields__ if not f.startswith("_")}
    unknown = set(raw) - fields_
    if unknown:
        raise ValueError(f"{where}: unknown field {sorted(unknown)[0]!r}")
    vals: dict[str, Any] = {}
    for k, v in raw.items():
        if k in _DECIMALS and v is not None:
            try:
                d = Decimal(str(v))
            except InvalidOperation:
                raise ValueError(f"{where}: {k}={v!r} is not a number") from None
            if not d.is_finite() or d < 0:
                raise ValueError(f"{where}: {k}={v!r} must be a non-negative number")
            vals[k] = d
        elif k == "aliases":
            vals[k] = tuple(str(a) for a in v)
        elif k in ("provider", "cloud"):
            vals[k] = str(v).strip().lower()
        else:
            vals[k] = v
    for k in ("as_of", "source"):
        if not vals.get(k):
            raise ValueError(f"{where}: every entry needs {k!r}")
    try:
        return cls(**vals)
    except TypeError as e:  # a required field is missing
        raise ValueError(f"{where}: {e}") from None


def _read(path: str, text: bytes) -> dict[str, Any]:
    if path.endswith(".json"):
        return json.loads(text)
    return tomllib.loads(text.decode("utf-8"))


def _merge(into: dict[str, dict[tuple, Any]], data: Mapping[str, Any], origin: str, extra: dict[str, Any]) -> None:
    for section, (cls, key) in _SECTIONS.items():
        for n, raw in enumerate(data.get(section, ())):
            if not isinstance(raw, Mapping):
                raise ValueError(f"{section}[{n}] is not a table")
            entry = _parse_entry(cls, raw, f"{section}[{n}] {raw.get(key[1], '')!s}".strip())
            into[section][tuple(getattr(entry, k).lower() for k in key)] = entry
    for n, raw in enumerate(data.get("pue", ())):
        extra.setdefault("pue", {})[str(raw["cloud"]).lower()] = float(raw["pue"])
    if "default_pue" in data:
        extra["default_pue"] = float(data["default_pue"])
    unknown = set(data) - set(_SECTIONS) - {"pue", "default_pue"}
    if unknown:
        raise ValueError(f"unknown section {sorted(unknown)[0]!r} (expected {', '.join([*_SECTIONS, 'pue', 'default_pue'])})")


def load_catalog(price_file: str | None = None) -> Catalog:
    """The shipped catalog, with ``price_file`` (TOML or JSON) merged over it."""
    entries: dict[str, dict[tuple, Any]] = {s: {} for s in _SECTIONS}
    extra: dict[str, Any] = {}
    files = []
    data_dir = resources.files(__package__) / "data"
    for name in _SHIPPED:
        _merge(entries, _read(name, (data_dir / name).read_bytes()), name, extra)
    if price_file:
        try:
            with open(price_file, "rb") as fh:
                data = _read(price_file, fh.read())
            _merge(entries, data, price_file, extra)
        except FileNotFoundError:
            raise CatalogError(price_file, "file not found") from None
        except (OSError, ValueError, KeyError, TypeError, tomllib.TOMLDecodeError) as e:
            raise CatalogError(price_file, f"cannot use it: {e}") from e
        files.append(os.path.abspath(price_file))
    return Catalog(
        models=tuple(entries["model"].values()),
        instances=tuple(entries["instance"].values()),
        serverless=tuple(entries["serverless"].values()),
        regions=tuple(entries["region"].values()),
        pue_by_cloud=dict(extra.get("pue", {})),
        default_pue=extra.get("default_pue", 1.58),
        files=tuple(files),
    )


_DEFAULT: dict[str | None, Catalog] = {}


def cached_catalog(price_file: str | None = None) -> Catalog:
    """A process-wide catalog per price file (loading parses four TOML files)."""
    cat = _DEFAULT.get(price_file)
    if cat is None:
        cat = _DEFAULT[price_file] = load_catalog(price_file)
    return cat

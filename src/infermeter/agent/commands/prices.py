"""infermeter prices [SEARCH]: the price catalog (token prices, GPU instances, serverless, carbon)."""

from __future__ import annotations

import argparse
from typing import Any

HELP = "show the price catalog: hosted-model token prices, GPU instances, serverless GPUs, grid carbon"

KINDS = ("models", "instances", "serverless", "carbon")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("search", nargs="?", help="only entries whose name contains this (model, provider, instance, GPU, region)")
    p.add_argument("--kind", choices=KINDS, action="append", help="only this section (repeatable)")
    p.add_argument("--price-file", metavar="FILE", help="merge this user price file (default: INFERMETER_PRICE_FILE)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from ...config import Settings
    from ...cost.catalog import load_catalog
    from ._common import print_json

    price_file = args.price_file or Settings.load().price_file
    cat = load_catalog(price_file)
    found = cat.search(args.search)
    kinds = args.kind or list(KINDS)
    if args.json:
        print_json({k: [dataclasses.asdict(e) for e in found[k]] for k in kinds} | {"files": list(cat.files)})
        return 0
    shown = 0
    for kind in kinds:
        rows = [_ROW[kind](e) for e in found[kind]]
        if not rows:
            continue
        shown += len(rows)
        print(_TITLE[kind])
        print(_table(_HEADER[kind], rows))
        print()
    if not shown:
        print(f"nothing in the catalog matches {args.search!r}" if args.search else "the catalog is empty")
        return 1
    print("Prices are list prices remembered at each entry's as_of date (never fetched); check the source page.")
    print("Override or add entries with INFERMETER_PRICE_FILE; see `infermeter prices --json` for sources.")
    return 0


def _money(v: Any, digits: int = 4) -> str:
    return "-" if v is None else f"${float(v):,.{digits}f}"


_TITLE = {
    "models": "Hosted models, USD per 1M tokens",
    "instances": "GPU instances, USD per hour (whole instance)",
    "serverless": "Serverless GPUs, USD per GPU-second",
    "carbon": "Grid carbon intensity by cloud region",
}
_HEADER = {
    "models": ("provider", "model", "input", "cached in", "output", "as of"),
    "instances": ("cloud", "instance", "GPUs", "GPU mem", "on-demand", "spot", "1y commit", "as of"),
    "serverless": ("provider", "GPU", "$/GPU-s", "$/GPU-h", "cold start", "as of"),
    "carbon": ("cloud", "region", "gCO2e/kWh", "as of"),
}
_ROW = {
    "models": lambda m: (m.provider, m.model, _money(m.input_usd_per_1m, 3), _money(m.cached_input_usd_per_1m, 3),
                         _money(m.output_usd_per_1m, 3), m.as_of),
    "instances": lambda i: (i.cloud, i.instance_type, f"{i.gpu_count}x {i.gpu_type}",
                            f"{i.gpu_memory_gib} GiB" if i.gpu_memory_gib else "-", _money(i.on_demand_usd_per_hour),
                            _money(i.spot_usd_per_hour), _money(i.committed_usd_per_hour), i.as_of),
    "serverless": lambda s: (s.provider, s.gpu_type, f"{float(s.usd_per_gpu_second):.6f}", _money(s.usd_per_gpu_second * 3600, 3),
                             f"~{s.cold_start_s:g} s" if s.cold_start_s is not None else "-", s.as_of),
    "carbon": lambda r: (r.cloud, r.region, f"{r.gco2e_per_kwh:g}", r.as_of),
}


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in (header, *rows)]
    return "\n".join(lines)

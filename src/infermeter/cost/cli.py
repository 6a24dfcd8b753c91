"""Cost options for commands that run an agent (``infermeter proxy``, ``infermeter run``, ...).

    from infermeter.cost.cli import add_cost_arguments, cost_overrides

    add_cost_arguments(parser)            # --instance, --pricing, --hourly-usd, --gpu-hour-usd, ...
    settings = Settings.load(**cost_overrides(args), ...)

Options left out are ``None`` and so fall through to the environment and the config file.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_cost_arguments", "cost_overrides", "COST_OPTIONS"]

COST_OPTIONS = ("instance", "pricing", "hourly_usd", "gpu_hour_usd", "region", "price_file", "attribution_weighting")


def add_cost_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("cost", "what this box costs (default: INFERMETER_* variables, then the config file)")
    g.add_argument("--instance", metavar="TYPE", help="cloud instance type priced from the catalog, e.g. g6.xlarge (see `infermeter prices`)")
    g.add_argument("--pricing", choices=("on_demand", "spot", "committed"), help="pricing model of --instance (default on_demand)")
    g.add_argument("--hourly-usd", type=float, metavar="USD", help="explicit price of the box per hour (wins over --instance)")
    g.add_argument("--gpu-hour-usd", type=float, metavar="USD", help="explicit price per GPU-hour (times the GPU count)")
    g.add_argument("--region", metavar="REGION", help="cloud region, for grid carbon intensity (e.g. us-east-1)")
    g.add_argument("--price-file", metavar="FILE", help="user price catalog (TOML/JSON) over the shipped one")
    g.add_argument("--attribution-weighting", choices=("time", "tokens"), help="split windows by overlap (time) or overlap x tokens")


def cost_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The cost settings given on the command line, as ``Settings.load`` overrides."""
    return {k: getattr(args, k, None) for k in COST_OPTIONS}

"""infermeter report: cost and usage per model."""

from __future__ import annotations

import argparse

from ._common import add_source_arguments, open_from_args, print_json

HELP = "cost and usage per model, from a running agent or a store file"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_source_arguments(p)
    p.add_argument("--from", dest="from_parquet", metavar="GLOB",
                   help="read fleet Parquet files instead (quote it): 'DIR/**/*.parquet' from `infermeter export --format parquet`")
    p.add_argument("--since", default="all", metavar="DURATION", help="window: 15m, 1h, 24h, 7d or 'all' (default)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from ..report import format_report

    if args.from_parquet:
        from ...exporters.parquet import ParquetSource

        src = ParquetSource(args.from_parquet)
    else:
        src = open_from_args(args)
    try:
        rep = src.view("summary", since=args.since)
    finally:
        src.close()
    if args.json:
        print_json(rep)
    else:
        print(format_report(rep))
        print(f"(from {rep.get('source', src.description)})")
    return 0

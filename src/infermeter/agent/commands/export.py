"""infermeter export: FOCUS cost files, and the fleet's hive-partitioned Parquet."""

from __future__ import annotations

import argparse
import sys

from ...errors import InfermeterError
from ._common import add_source_arguments, open_from_args, print_json

HELP = "export costs as FOCUS (CSV/Parquet) or the store as hive-partitioned Parquet for fleet-wide reports"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_source_arguments(p)
    p.add_argument("--format", required=True, choices=("focus", "parquet"), help="focus: a FOCUS 1.2 cost file (1.3 allocation "
                   "columns included); parquet: requests, samples and costs under --to DIR, one file per table, day, host and hour")
    p.add_argument("-o", "--output", metavar="FILE", help="FOCUS file to write; .parquet writes Parquet, anything else CSV")
    p.add_argument("--to", metavar="DIR", help="directory (or mounted bucket) for the Parquet files")
    p.add_argument("--since", default=None, metavar="WHEN",
                   help="start: 24h, 7d, an ISO date/time (UTC) or 'all' (default: all; parquet rounds down to the hour)")
    p.add_argument("--until", default=None, metavar="WHEN",
                   help="end (exclusive): same forms (default: now for focus; the start of this hour for parquet, so only whole hours)")
    p.add_argument("--host", default=None, help="host name for the parquet partition (default: this machine's)")
    p.add_argument("--billing-account", default="infermeter", metavar="ID", help="FOCUS BillingAccountId/Name (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")


def run(args: argparse.Namespace) -> int:
    if args.format == "focus":
        if not args.output:
            raise InfermeterError("--format focus needs -o FILE (.csv or .parquet)")
        return _focus(args)
    if not args.to:
        raise InfermeterError("--format parquet needs --to DIR")
    return _parquet(args)


def _focus(args: argparse.Namespace) -> int:
    from ...exporters.focus import write_focus

    src = open_from_args(args)
    try:
        out = src.view("focus", since=args.since, until=args.until, billing_account=args.billing_account)
    finally:
        src.close()
    rows = [dict(zip(out["columns"], r)) for r in out["rows"]]
    fmt = write_focus(rows, args.output)
    for note in out.get("notes", []):
        print(f"infermeter: note: {note}", file=sys.stderr)
    summary = {"file": args.output, "format": fmt, "rows": len(rows), "notes": out.get("notes", []),
               "source": out.get("source", src.description)}
    if args.json:
        print_json(summary)
    else:
        print(f"wrote {len(rows)} FOCUS rows to {args.output} ({fmt}) from {summary['source']}")
    return 0


def _parquet(args: argparse.Namespace) -> int:
    import time

    from ...exporters.focus import parse_when
    from ...exporters.parquet import AgentReader, StoreReader, export_fleet, hour_floor
    from ..source import AgentSource

    now = time.time_ns()
    try:
        since = hour_floor(parse_when(args.since, now, 0) or 0)
        until = hour_floor(parse_when(args.until, now, now) or now)
    except ValueError as e:
        raise InfermeterError(str(e)) from e
    src = open_from_args(args)
    try:
        if isinstance(src, AgentSource):
            summary = export_fleet(AgentReader(src.url), args.to, since, until, args.host)
        else:
            cur = src.store.cursor()
            try:
                summary = export_fleet(StoreReader(cur), args.to, since, until, args.host)
            finally:
                cur.close()
        summary["source"] = src.description
    finally:
        src.close()
    if args.json:
        print_json(summary)
    else:
        rows = ", ".join(f"{t} {n:,}" for t, n in summary["rows"].items()) or "no rows"
        print(f"wrote {summary['files']} Parquet files to {summary['dir']} (host {summary['host']}): {rows}")
    return 0

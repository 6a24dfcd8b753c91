"""infermeter recommend: what to change, what it saves a month, and the evidence."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from ._common import add_source_arguments, open_from_args, print_json

if TYPE_CHECKING:
    from ...config import Settings

HELP = "recommendations with $/month savings and evidence, from a running agent or a store file"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_source_arguments(p)
    p.add_argument("--window", default=None, metavar="DURATION",
                   help="data to judge, ending at the newest data: 24h (default: INFERMETER_RECOMMEND_WINDOW), 7d, ...")
    p.add_argument("--json", action="store_true",
                   help="print a JSON list of the recommendations (action, title, evidence, savings_usd_month, confidence, how_to, ...)")
    p.add_argument("--all", action="store_true", help="with --json: include the superseded ones (status, note say why)")
    p.add_argument("--history", type=int, default=0, metavar="N", help="also list the last N stored runs")
    p.add_argument("--save", action="store_true", help="store this run in the file's history (--db only; a running agent stores its own)")
    p.add_argument("--thresholds", action="store_true", help="list every rule threshold and its value, then exit")


def run(args: argparse.Namespace) -> int:
    from ...config import Settings
    from ...rules.format import format_recommendations

    if args.thresholds:
        return _thresholds(Settings.load())
    if args.save:
        rep = _evaluate_and_save(args, Settings.load())
    else:
        src = open_from_args(args)
        try:
            rep = src.view("recommendations", window=args.window, history=args.history or None)
        finally:
            src.close()
    if args.json:
        recs = [r for r in rep.get("recommendations", []) if args.all or r.get("status") == "recommended"]
        print_json(recs)
        print(f"infermeter: {rep.get('message')}", file=sys.stderr)
    else:
        print(format_recommendations(rep))
        if rep.get("history"):
            from datetime import datetime, timezone

            print("\nstored runs:")
            for run in rep["history"]:
                when = datetime.fromtimestamp(run["evaluated_ns"] / 1e9, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
                print(f"  {when}  {run['status']:17}  {run['message']}")
        if rep.get("source"):
            print(f"(from {rep['source']})")
    return 0


def _evaluate_and_save(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    import os

    from ...config import parse_duration
    from ...errors import InfermeterError
    from ...rules import history
    from ...rules.catalog_lookup import load_catalog
    from ...rules.engine import evaluate
    from ...store import open_store

    if args.agent:
        raise InfermeterError("--save works on a store file (--db); a running agent stores its own runs")
    path = args.db or settings.db
    if not os.path.exists(path):
        raise InfermeterError(f"no store at {path}")
    store = open_store(path)
    try:
        store.start()
        window = parse_duration(args.window) if args.window else settings.recommend_window_s
        cur = store.cursor()
        try:
            ev = evaluate(cur, window_s=window, thresholds=settings.rules, catalog=load_catalog(settings.price_file))
        finally:
            cur.close()
        history.save(store, ev)
        store.force_flush()
        rep = ev.to_dict()
        if args.history:
            cur = store.cursor()
            rep["history"] = history.runs(cur, args.history)
            cur.close()
        rep["source"] = f"file {os.path.abspath(path)} (run stored)"
        return rep
    finally:
        store.shutdown()


def _thresholds(settings: Settings) -> int:
    from ...rules.thresholds import resolve

    for key, value in sorted(resolve(settings.rules).items()):
        print(f"{key:34} {value}")
    return 0

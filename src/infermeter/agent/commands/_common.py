"""Options shared by the commands that read data."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ...agent.api import to_jsonable


def add_source_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--db", metavar="FILE", help="read this store file (default: INFERMETER_DB or ./infermeter.duckdb)")
    g.add_argument("--agent", metavar="URL", help="read a running agent's API, e.g. http://127.0.0.1:9187")


def open_from_args(args: argparse.Namespace) -> Any:
    from ...config import Settings
    from ..source import open_source

    settings = Settings.load()
    return open_source(args.db, args.agent, settings.db)


def print_json(obj: Any) -> None:
    json.dump(to_jsonable(obj), sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")

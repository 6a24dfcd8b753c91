"""infermeter top: the live terminal UI (Textual, from the ``tui`` extra, imported only in ``run``)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ._common import add_source_arguments

HELP = "live terminal UI: burn rate, cost per model and tenant, GPUs, recommendations, recent requests"

WINDOWS = ("5m", "1h", "24h", "7d")  # the app's own list; repeated so --help does not import textual


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_source_arguments(p)
    p.add_argument("--window", choices=WINDOWS, default="1h", help="initial window (default: %(default)s; w switches)")
    p.add_argument("--interval", type=float, default=2.0, metavar="SECONDS", help="seconds between polls (default: %(default)s)")


def default_source() -> Any:
    """No --agent/--db: the local agent if one answers, else the default store (or its holder), else wait for the agent."""
    from ...config import Settings
    from ..source import AgentSource, AgentUnavailable, open_source

    settings = Settings.load()
    url = settings.api or "127.0.0.1:9187"
    probe = AgentSource(url, timeout_s=0.5)
    try:
        probe.get("/health")
        return AgentSource(url, timeout_s=3.0)
    except AgentUnavailable:
        pass
    if os.path.exists(settings.db):
        return open_source(settings.db, None, settings.db)
    print(f"infermeter: no agent at {probe.url} and no store at {settings.db}; waiting for the agent", file=sys.stderr)
    return AgentSource(url, timeout_s=3.0)


def open_tui_source(args: argparse.Namespace) -> Any:
    from ..source import AgentSource, open_source

    if args.agent:
        return AgentSource(args.agent, timeout_s=3.0)
    if args.db:
        return open_source(args.db, None, args.db)
    return default_source()


def run(args: argparse.Namespace) -> int:
    from ...errors import InfermeterError

    try:
        from ...tui.app import TopApp
    except ImportError as e:
        raise InfermeterError(f"the terminal UI needs Textual: pip install 'infermeter[tui]' ({e})") from e
    if not (sys.stdin.isatty() and sys.stderr.isatty()):  # Textual reads keys from stdin and draws on stderr
        raise InfermeterError("infermeter top needs a terminal; for plain text use `infermeter report`")
    if not args.interval > 0:
        raise InfermeterError(f"--interval must be positive, not {args.interval}")
    source = open_tui_source(args)
    try:
        TopApp(source, window=args.window, interval_s=args.interval).run()
    finally:
        source.close()
    return 0

"""The ``infermeter`` command: one module per subcommand under ``agent/commands``.

Each command module defines ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int`` and keeps
its heavy imports inside ``run``, so ``infermeter --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from ..errors import InfermeterError

__all__ = ["main", "COMMANDS"]

COMMANDS = {
    "demo": "infermeter.agent.commands.demo",
    "report": "infermeter.agent.commands.report",
    "config": "infermeter.agent.commands.config",
    "prices": "infermeter.agent.commands.prices",
    "top": "infermeter.agent.commands.top",
    "run": "infermeter.agent.commands.run",
    "proxy": "infermeter.agent.commands.proxy",
    "recommend": "infermeter.agent.commands.recommend",
    "simulate": "infermeter.agent.commands.simulate",
    "export": "infermeter.agent.commands.export",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with ``command``, only that subcommand's arguments are added (the others
    are listed by name and help), so a command does not import what another's arguments need
    (``simulate`` lists its scenarios from ``infermeter.sim``, ~26 ms)."""
    from .. import __version__

    parser = argparse.ArgumentParser(prog="infermeter", description="What every inference request costs, and what to change.")
    parser.add_argument("--version", action="version", version=f"infermeter {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, modname in COMMANDS.items():
        mod = importlib.import_module(modname)
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        if command is None or name == command:
            mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    command = next((w for w in words if not w.startswith("-")), None)  # the only global option takes no value
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except InfermeterError as e:
        print(f"infermeter: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `infermeter report | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())

"""infermeter config: every setting, its environment variable, default and current value."""

from __future__ import annotations

import argparse

HELP = "show every setting with its environment variable, default and effective value"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--markdown", action="store_true", help="print the reference table as Markdown (for the README)")


def run(args: argparse.Namespace) -> int:
    from ...config import SETTINGS_HELP, Settings

    if args.markdown:
        print("| setting | environment variable | default | what it does |")
        print("|---|---|---|---|")
        for name, env, default, help_ in SETTINGS_HELP:
            print(f"| `{name}` | `{env}` | `{default}` | {help_} |")
        return 0
    s = Settings.load()
    for name, env, default, help_ in SETTINGS_HELP:
        print(f"{name:22} {env:42} = {getattr(s, name)!r}")
    return 0

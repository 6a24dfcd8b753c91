"""infermeter proxy: the sidecar, a reverse proxy in front of a model server that records every request."""

from __future__ import annotations

import argparse

HELP = "run the sidecar: a streaming-safe reverse proxy in front of a model server, plus the agent"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--upstream", metavar="URL", help="model server to forward to, e.g. http://127.0.0.1:8000 (INFERMETER_UPSTREAM)")
    p.add_argument("--listen", metavar="HOST:PORT", help="proxy address (INFERMETER_LISTEN, default 0.0.0.0:8100)")
    p.add_argument("--db", metavar="FILE", help="store file (INFERMETER_DB, default ./infermeter.duckdb)")
    p.add_argument("--api", metavar="HOST:PORT", help="agent API address or 'off' (INFERMETER_API, default 127.0.0.1:9187)")
    p.add_argument("--timeout", metavar="SECONDS", type=float, help="answer 504 when the upstream is silent this long (default 600)")
    p.add_argument("--route", action="append", metavar="PATH=PROTOCOL",
                   help="wire protocol for a path (repeatable; PATH may end in '*'): openai, ollama, tgi, kserve, anthropic, generic")
    p.add_argument("--no-inject-stream-usage", action="store_true",
                   help="do not ask OpenAI-compatible upstreams for usage on streams the client did not ask it for")
    from ...cost.cli import add_cost_arguments

    add_cost_arguments(p)


def run(args: argparse.Namespace) -> int:
    from ...config import Settings
    from ...cost.cli import cost_overrides
    from ..proxy import serve

    settings = Settings.load(
        upstream=args.upstream, listen=args.listen, db=args.db, api=args.api, upstream_timeout_s=args.timeout,
        proxy_routes=",".join(args.route) if args.route else None,
        inject_stream_usage=False if args.no_inject_stream_usage else None,
        **cost_overrides(args),
    )
    return serve(settings)

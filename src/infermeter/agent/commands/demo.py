"""infermeter demo: simulated model traffic through the sidecar proxy into the embedded agent, then the report.

Three parts, started in order and stopped in reverse: the agent (store, pipeline, API), a
SIMULATED OpenAI-compatible model server, and the proxy in front of it. :func:`send_traffic`
drives clients against the proxy for a while (it blocks; run it on a thread to do something else
meanwhile); then the report is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from typing import Any

HELP = "run a live demo: simulated model traffic through the sidecar proxy, then the cost report"

TENANTS = ("acme", "globex", "initech", "umbrella")
WORDS = "the model reads a prompt and writes tokens while the meter counts what each request costs".split()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default="infermeter-demo.duckdb", metavar="FILE", help="store for the demo (default: %(default)s)")
    p.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                   help="how long to send traffic (default: 6, or until you quit the TUI)")
    p.add_argument("--concurrency", type=int, default=8, help="concurrent simulated clients (default: %(default)s)")
    p.add_argument("--api", default=None, metavar="HOST:PORT", help="agent API address (default: INFERMETER_API or 127.0.0.1:9187)")
    p.add_argument("--listen", default="127.0.0.1:0", metavar="HOST:PORT", help="proxy address (default: an ephemeral port)")
    p.add_argument("--instance", default="g6.xlarge", metavar="TYPE",
                   help="price the simulated box as this cloud instance, on demand (default: %(default)s, one L4 GPU)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--tui", action=argparse.BooleanOptionalAction, default=None,
                   help="watch it live in `infermeter top` (default: when run in a terminal; --no-tui stays non-interactive)")


def run(args: argparse.Namespace) -> int:
    import infermeter
    from infermeter.agent.report import build_report, format_report

    from ..proxy import ProxyComponent
    from ..simulated_server import SimulatedServer
    from ._common import print_json

    # a short attribution delay: the demo's costs appear within seconds, not after the default 30 s
    agent = infermeter.configure(db=args.db, api=args.api, instance=args.instance, attribution_delay_s=2.0)
    server = SimulatedServer(seed=args.seed).start()
    try:
        proxy = ProxyComponent(agent.settings.replace(upstream=server.url, listen=args.listen), agent.pipeline)
        agent.add_component(proxy)  # stopped with the agent
        tui = _want_tui(args)
        print(f"infermeter demo: traffic from a SIMULATED model server (no real model runs) at {server.url}, "
              f"through the proxy at {proxy.url}: {args.concurrency} clients "
              + ("until you quit the TUI" if tui and not args.duration else f"for {args.duration or 6.0:g}s"), file=sys.stderr)
        started_ns = time.time_ns()
        try:
            if tui:
                counts = _traffic_under_tui(agent, proxy.url, args)
            else:
                counts = send_traffic(proxy.url, duration_s=args.duration or 6.0, concurrency=args.concurrency, seed=args.seed)
        except KeyboardInterrupt:
            counts = {}
            print("interrupted; reporting what was recorded", file=sys.stderr)
        agent.force_flush()
        # bill the window in progress too, so every demo request has its share of the box's price
        agent.cost.attribution.force_flush(close_current=True)
        cur = agent.store.cursor()
        try:
            rep = build_report(cur, since_s=(time.time_ns() - started_ns) / 1e9 + 1)
        finally:
            cur.close()
        if args.json:
            print_json(rep)
        else:
            print(format_report(rep))
            print(f"\nclients sent {counts.get('requests', 0):,} requests ({counts.get('failed', 0):,} answered with errors, on purpose)")
            print(f"store: {args.db}   agent API while running: {agent.api_url or 'off'}")
            print(f"again later: infermeter report --db {args.db}")
    finally:
        infermeter.shutdown()
        server.shutdown()
    return 0


def _want_tui(args: argparse.Namespace) -> bool:
    if args.tui is None:
        # Textual draws on stderr and reads stdin; stdout too, so `demo > file` stays non-interactive
        return sys.stdin.isatty() and sys.stdout.isatty() and sys.stderr.isatty() and not args.json
    return bool(args.tui)


def _traffic_under_tui(agent: Any, proxy_url: str, args: argparse.Namespace) -> dict[str, int]:
    """Traffic on a thread while `infermeter top` shows it; quitting the TUI (or --duration) ends it."""
    import threading

    from ...errors import InfermeterError

    try:
        from ...tui.app import TopApp
        from ...tui.fetch import InProcessSource
    except ImportError as e:
        raise InfermeterError(f"the TUI needs Textual: pip install 'infermeter[tui]', or run with --no-tui ({e})") from e
    from ..source import AgentSource

    stop = threading.Event()
    counts: dict[str, int] = {}
    duration = args.duration or 365 * 86400.0
    worker = threading.Thread(target=lambda: counts.update(send_traffic(
        proxy_url, duration_s=duration, concurrency=args.concurrency, seed=args.seed, stop=stop)),
        name="infermeter-demo-traffic", daemon=True)
    worker.start()
    source = AgentSource(agent.api_url, timeout_s=3.0) if agent.api_url else InProcessSource(agent)
    try:
        TopApp(source, window="5m", interval_s=1.0).run()
    finally:
        stop.set()
        worker.join(30)
    return counts


def send_traffic(base_url: str, *, duration_s: float, concurrency: int = 8, seed: int = 7, stop: Any = None) -> dict[str, int]:
    """Simulated clients against an OpenAI-compatible ``base_url`` for ``duration_s``; returns counts.

    A mix of chat (JSON), streamed chat (without asking for usage), embeddings, and a few requests
    for a model that does not exist; each client is a tenant (``X-Infermeter-Tenant``). ``stop``
    (a ``threading.Event``) ends it early.
    """
    return asyncio.run(_traffic(base_url.rstrip("/"), duration_s, max(1, concurrency), seed, stop))


async def _traffic(url: str, duration_s: float, concurrency: int, seed: int, stop: Any = None) -> dict[str, int]:
    import aiohttp

    counts = {"requests": 0, "failed": 0}
    deadline = time.monotonic() + duration_s

    async def client(i: int, session: aiohttp.ClientSession) -> None:
        rng = random.Random(seed * 1000 + i)
        headers = {"X-Infermeter-Tenant": TENANTS[i % len(TENANTS)], "Authorization": "Bearer sk-demo"}
        while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
            path, body = _request(rng)
            async with session.post(url + path, json=body, headers=headers) as resp:
                async for _ in resp.content.iter_any():  # read streams as they come, like a chat UI
                    pass
                counts["requests"] += 1
                counts["failed"] += resp.status >= 400

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        await asyncio.gather(*(client(i, session) for i in range(concurrency)))
    return counts


def _request(rng: random.Random) -> tuple[str, dict[str, Any]]:
    prompt = " ".join(rng.choice(WORDS) for _ in range(max(1, int(rng.lognormvariate(4, 0.8)))))
    roll = rng.random()
    if roll < 0.40:
        return "/v1/chat/completions", {"model": "sim-llama-3.1-8b", "messages": [{"role": "user", "content": prompt}]}
    if roll < 0.75:
        return "/v1/chat/completions", {"model": "sim-qwen2.5-32b", "stream": True, "max_tokens": 128,
                                        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": prompt}]}
    if roll < 0.96:
        return "/v1/embeddings", {"model": "sim-bge-embed", "input": [prompt, prompt[::-1]]}
    return "/v1/chat/completions", {"model": "sim-gpt-unknown", "messages": [{"role": "user", "content": prompt}]}

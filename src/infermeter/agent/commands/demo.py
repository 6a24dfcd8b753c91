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
    p.add_argument("--duration", type=float, default=6.0, metavar="SECONDS", help="how long to send traffic (default: %(default)s)")
    p.add_argument("--concurrency", type=int, default=8, help="concurrent simulated clients (default: %(default)s)")
    p.add_argument("--api", default=None, metavar="HOST:PORT", help="agent API address (default: INFERMETER_API or 127.0.0.1:9187)")
    p.add_argument("--listen", default="127.0.0.1:0", metavar="HOST:PORT", help="proxy address (default: an ephemeral port)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    import infermeter
    from infermeter.agent.report import build_report, format_report

    from ..proxy import ProxyComponent
    from ..simulated_server import SimulatedServer
    from ._common import print_json

    agent = infermeter.configure(db=args.db, api=args.api)
    server = SimulatedServer(seed=args.seed).start()
    try:
        proxy = ProxyComponent(agent.settings.replace(upstream=server.url, listen=args.listen), agent.pipeline)
        agent.add_component(proxy)  # stopped with the agent
        print(f"infermeter demo: traffic from a SIMULATED model server (no real model runs) at {server.url}, "
              f"through the proxy at {proxy.url}: {args.concurrency} clients for {args.duration:g}s", file=sys.stderr)
        started_ns = time.time_ns()
        try:
            counts = send_traffic(proxy.url, duration_s=args.duration, concurrency=args.concurrency, seed=args.seed)
        except KeyboardInterrupt:
            counts = {}
            print("interrupted; reporting what was recorded", file=sys.stderr)
        agent.force_flush()
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


def send_traffic(base_url: str, *, duration_s: float, concurrency: int = 8, seed: int = 7) -> dict[str, int]:
    """Simulated clients against an OpenAI-compatible ``base_url`` for ``duration_s``; returns counts.

    A mix of chat (JSON), streamed chat (without asking for usage), embeddings, and a few requests
    for a model that does not exist; each client is a tenant (``X-Infermeter-Tenant``).
    """
    return asyncio.run(_traffic(base_url.rstrip("/"), duration_s, max(1, concurrency), seed))


async def _traffic(url: str, duration_s: float, concurrency: int, seed: int) -> dict[str, int]:
    import aiohttp

    counts = {"requests": 0, "failed": 0}
    deadline = time.monotonic() + duration_s

    async def client(i: int, session: aiohttp.ClientSession) -> None:
        rng = random.Random(seed * 1000 + i)
        headers = {"X-Infermeter-Tenant": TENANTS[i % len(TENANTS)], "Authorization": "Bearer sk-demo"}
        while time.monotonic() < deadline:
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

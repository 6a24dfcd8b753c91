"""infermeter demo: a live run on the embedded default against a simulated model server."""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import threading
import time

HELP = "run a live demo: simulated model traffic through @track, then the cost report"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default="infermeter-demo.duckdb", metavar="FILE", help="store for the demo (default: %(default)s)")
    p.add_argument("--duration", type=float, default=6.0, metavar="SECONDS", help="how long to send traffic (default: %(default)s)")
    p.add_argument("--concurrency", type=int, default=8, help="concurrent simulated clients (default: %(default)s)")
    p.add_argument("--api", default=None, metavar="HOST:PORT", help="agent API address (default: INFERMETER_API or 127.0.0.1:9187)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    import infermeter
    from infermeter.agent.report import build_report, format_report
    from infermeter.agent.simulated import SIMULATED_MODELS

    from ._common import print_json

    agent = infermeter.configure(db=args.db, api=args.api)
    print("infermeter demo: traffic from a SIMULATED model server (no real model runs), "
          f"{args.concurrency} clients for {args.duration:.0f}s", file=sys.stderr)
    llama, qwen, embed = (SIMULATED_MODELS[k] for k in ("sim-llama-3.1-8b", "sim-qwen2.5-32b", "sim-bge-embed"))
    tenants = ["acme", "globex", "initech", "umbrella"]

    @infermeter.track(model=llama.name, provider="simulated")
    def chat_llama(prompt_tokens: int, rng: random.Random) -> dict:
        return llama.complete(prompt_tokens, rng=rng)

    @infermeter.track(model=qwen.name, provider="simulated")
    def stream_qwen(prompt_tokens: int, rng: random.Random):
        yield from qwen.stream(prompt_tokens, rng=rng)

    @infermeter.track(model=embed.name, provider="simulated", operation="embeddings")
    def embed_docs(prompt_tokens: int, rng: random.Random) -> dict:
        return embed.complete(prompt_tokens, rng=rng)

    @infermeter.track(model=llama.name, provider="simulated")
    async def achat_llama(prompt_tokens: int, rng: random.Random) -> dict:
        return await llama.acomplete(prompt_tokens, rng=rng)

    deadline = time.monotonic() + args.duration
    started_ns = time.time_ns()
    counts = {"calls": 0, "errors": 0}

    def client(i: int) -> None:
        rng = random.Random(args.seed * 1000 + i)
        while time.monotonic() < deadline:
            tenant = rng.choice(tenants)
            call = rng.random()
            prompt = int(rng.lognormvariate(5, 0.8))
            try:
                with infermeter.measure(model=llama.name, provider="simulated", tenant=tenant, endpoint="demo.tool_call") if call < 0.05 else _null():
                    if call < 0.05:
                        raise TimeoutError("simulated upstream timeout")
                if call < 0.45:
                    chat_llama(prompt, rng)
                elif call < 0.8:
                    for _ in stream_qwen(prompt, rng):
                        pass
                else:
                    embed_docs(prompt, rng)
            except TimeoutError:
                counts["errors"] += 1
            counts["calls"] += 1

    async def async_clients() -> None:
        rng = random.Random(args.seed)
        while time.monotonic() < deadline:
            await asyncio.gather(*(achat_llama(int(rng.lognormvariate(5, 0.8)), rng) for _ in range(4)))

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(max(1, args.concurrency - 1))]
    threads.append(threading.Thread(target=lambda: asyncio.run(async_clients()), daemon=True))
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    except KeyboardInterrupt:
        print("interrupted; reporting what was recorded", file=sys.stderr)
    infermeter.force_flush()
    cur = agent.store.cursor()
    try:
        rep = build_report(cur, since_s=(time.time_ns() - started_ns) / 1e9 + 1)
    finally:
        cur.close()
    if args.json:
        print_json(rep)
    else:
        print(format_report(rep))
        print(f"\nstore: {args.db}   agent API while running: {agent.api_url or 'off'}")
        print(f"again later: infermeter report --db {args.db}")
    infermeter.shutdown()
    return 0


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return False

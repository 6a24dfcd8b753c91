"""infermeter simulate: write a realistic synthetic workload into a store, for tests and demos."""

from __future__ import annotations

import argparse
import re
import sys

HELP = "write a simulated workload (requests, GPU/host/server samples, the box's price) into a store, then attribute its cost"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ...sim.scenarios import SCENARIOS

    p.add_argument("scenario", choices=sorted(SCENARIOS), help="; ".join(f"{s.name}: {s.description}" for s in SCENARIOS.values()))
    p.add_argument("--db", required=True, metavar="FILE", help="a new store file to write (never your real one)")
    p.add_argument("--hours", type=float, default=168.0, help="simulated hours (default: %(default)s, a week)")
    p.add_argument("--seed", type=int, default=1, help="random seed: the same seed gives the same rows (default: %(default)s)")
    p.add_argument("--start", metavar="ISO", help="simulated start, UTC (default: HOURS before the most recent Saturday 00:00 UTC)")
    p.add_argument("--sample-interval", default="60s", metavar="DURATION", help="sampler tick and cost window (default: %(default)s)")
    g = p.add_argument_group("scenario parameters (override the scenario's)")
    g.add_argument("--users", type=int, help="users (tutoring: students)")
    g.add_argument("--requests-per-user", type=float, dest="requests_per_user_day", help="requests per user on a busy day")
    g.add_argument("--rate", type=float, dest="rate_per_s", help="average requests/s over a day (wins over --users)")
    g.add_argument("--concurrency", type=int, help="batch workers' requests in flight (batch-offline)")
    g.add_argument("--instance", help="catalog instance type, e.g. g6.xlarge, g5.xlarge, g6e.xlarge")
    g.add_argument("--model", help="model name; its size and precision are read from it (e.g. llama-3.1-8b-instruct-awq)")
    g.add_argument("--model-size", metavar="SIZE", help="change the size in the model's name, e.g. 70b")
    g.add_argument("--max-num-seqs", type=int, help="the server's running-batch limit")


def _start_ns(text: str) -> int:
    from datetime import datetime, timezone

    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise ValueError(f"--start {text!r} is not an ISO date/time: {e}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp()) * 1_000_000_000


def run(args: argparse.Namespace) -> int:
    from ...config import parse_duration
    from ...errors import InfermeterError
    from ...sim import SCENARIOS, simulate

    try:
        start = _start_ns(args.start) if args.start else None
        interval = parse_duration(args.sample_interval)
    except ValueError as e:
        raise InfermeterError(str(e)) from None
    overrides = {k: getattr(args, k) for k in ("users", "requests_per_user_day", "rate_per_s", "concurrency",
                                                "instance", "model", "max_num_seqs")}
    if args.model_size:
        base = overrides["model"] or SCENARIOS[args.scenario].model
        size = args.model_size.lower().rstrip("b") + "b"
        if not re.fullmatch(r"\d+(\.\d+)?b", size):
            raise InfermeterError(f"--model-size {args.model_size!r}: expected a size like 8b or 70b")
        new, n = re.subn(r"(?<![\d.])\d+(\.\d+)?b(?![a-z0-9])", size, base, count=1, flags=re.I)
        overrides["model"] = new if n else f"{base}-{size}"
    print(f"infermeter simulate: {args.scenario}, {args.hours:g} h, seed {args.seed} -> {args.db} (SIMULATED data)", file=sys.stderr)
    r = simulate(args.db, args.scenario, hours=args.hours, seed=args.seed, start_ns=start, interval_s=interval,
                 overrides=overrides)
    from datetime import datetime, timezone

    def when(ns: int) -> str:
        return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).strftime("%a %Y-%m-%d %H:%M")

    sc = r.scenario
    print(f"scenario   {sc.name}: {sc.description}")
    print(f"period     {when(r.start_ns)} -> {when(r.end_ns)} UTC (simulated clock)")
    print(f"model      {sc.model} on {r.instance} (${r.hourly_usd}/h {sc.pricing}), max-num-seqs {sc.max_num_seqs}")
    print(f"requests   {r.requests:,} ({r.input_tokens:,} input, {r.output_tokens:,} output tokens), "
          f"{r.gpu_samples:,} GPU samples")
    if r.instance_cost_usd is not None:
        idle = f", idle ${float(r.idle_cost_usd or 0):,.2f} ({float((r.idle_cost_usd or 0) / r.instance_cost_usd):.0%})" if r.instance_cost_usd else ""
        print(f"cost       ${float(r.instance_cost_usd):,.2f} for the box{idle}; {r.unpriced_requests:,} requests unpriced")
    print(f"wrote it in {r.wall_s:.1f}s; next: infermeter recommend --db {args.db}")
    return 0

"""What one ``infermeter top`` poll costs the agent: every view the TUI asks, over the HTTP API.

Generates ``--requests`` rows of ``requests`` (in SQL) spread over the last 24 h across 12 models
and 50 tenants, plus 2 GPUs sampled every second for the last hour, in an agent's store; then
times, per window (5m, 1h, 24h), one poll as the TUI makes it (``Poller.fetch``: costs, models,
tenants, gpus, host, requests; the recommendations are asked on a thread of their own at most every
30 s, so a poll never waits for them) and each view alone, recommendations included. Medians of
``--repeats`` runs after one warm-up. Goal: a poll well inside the 2 s poll interval at 24 h (the
TUI also waits twice a poll's duration before the next, so it never takes more than a third of
the agent). The machine is shared (noisy).

    .venv/bin/python benchmarks/bench_tui_poll.py [--requests 1000000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

S = 10**9

GENERATE_REQUESTS = """
    INSERT INTO requests (start_time_ns, duration_s, operation, source, status, ttft_s, request_model, tenant,
                          streaming, input_tokens, output_tokens, tokens_estimated, cost_usd, cost_source, request_id)
    SELECT $t0 + i * ($span_ns // $n),
           0.05 + (hash(i * 3) % 5000) / 1000.0,
           'chat', 'decorator', CASE WHEN i % 97 = 0 THEN 'error' ELSE 'ok' END,
           (hash(i * 5) % 800) / 1000.0,
           'model-' || (i % 12), 'tenant-' || (i % 50), (i % 2 = 0),
           (hash(i * 7) % 2000)::INTEGER, (hash(i * 11) % 500)::INTEGER, false,
           CASE WHEN i % 12 = 2 THEN NULL ELSE ((hash(i * 13) % 100000) / 1e9)::DECIMAL(18, 9) END,
           CASE WHEN i % 12 = 2 THEN 'unpriced' ELSE 'catalog' END,
           i + 1
    FROM range($n) t(i)
"""

GENERATE_GPUS = """
    INSERT INTO gpu_samples (ts_ns, host, gpu_uuid, gpu_index, gpu_name, utilization_pct, mem_used_bytes,
                             mem_total_bytes, power_w, power_limit_w)
    SELECT $t0 + s * 1000000000, 'bench', 'GPU-' || g, g, 'NVIDIA L4', (hash(s * 7 + g) % 100)::DOUBLE,
           (hash(s) % 24) * 1073741824::BIGINT, 24 * 1073741824::BIGINT, 20 + (hash(s * 3) % 50)::DOUBLE, 72.0
    FROM range(3600) a(s), range(2) b(g)
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
    import infermeter
    from infermeter.agent.source import AgentSource
    from infermeter.tui.fetch import VIEWS, Poller, Query

    tmp = tempfile.mkdtemp(prefix="bench-tui-")
    agent = infermeter.configure(db=os.path.join(tmp, "bench.duckdb"), api="127.0.0.1:0", sampling=False,
                                 recommend_interval_s=0)
    now = time.time_ns()
    t = time.perf_counter()
    cur = agent.store.cursor()
    cur.execute(GENERATE_REQUESTS, {"t0": now - 24 * 3600 * S, "span_ns": 24 * 3600 * S, "n": args.requests})
    cur.execute(GENERATE_GPUS, {"t0": now - 3600 * S})
    cur.close()
    print(f"generated {args.requests:,} requests over 24 h and 2 GPUs x 3,600 samples in {time.perf_counter() - t:.1f}s "
          f"(cpus: {os.cpu_count()})")

    src = AgentSource(agent.api_url, timeout_s=120)
    print(f"{'window':>6}  {'poll':>8}  " + "  ".join(f"{v:>15}" for v in VIEWS))
    poller = Poller(src)
    for window in ("5m", "1h", "24h"):
        q = Query(window=window)
        polls: list[float] = []
        per_view: dict[str, list[float]] = {v: [] for v in VIEWS}
        for r in range(args.repeats + 1):
            snap = poller.fetch(q)
            if r:
                polls.append(snap.took_s)
            for v in VIEWS:
                t = time.perf_counter()
                src.view(v, **q.params(v))
                if r:
                    per_view[v].append(time.perf_counter() - t)
        problems = {k: v.error for k, v in snap.views.items() if v.error or v.missing}
        if problems:
            print(f"  note: {problems}")

        def ms(xs: list[float]) -> str:
            return f"{statistics.median(xs) * 1000:,.0f} ms"

        print(f"{window:>6}  {ms(polls):>8}  " + "  ".join(f"{ms(per_view[v]):>15}" for v in VIEWS))
    infermeter.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How fast is the workload simulator, and how long does one recommendations evaluation take?

For each scenario, simulates ``--hours`` into a fresh DuckDB file (generation, the store's
appender writes and the cost attribution included) ``--repeats`` times, then evaluates the rules
over the default 24 h window of the last file. Prints medians: wall seconds, simulated time per
wall second (the speed-up over real time) and rows written per second. The machine is shared:
expect noise, compare runs made side by side.

    .venv/bin/python benchmarks/bench_simulate.py [--hours 24] [--repeats 3] [--scenarios tutoring,steady]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from infermeter.rules.engine import evaluate
from infermeter.sim import SCENARIOS, simulate
from infermeter.store import open_store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    args = ap.parse_args()
    print(f"{'scenario':14} {'hours':>6} {'requests':>9} {'wall s':>7} {'sim h/s':>8} {'x real time':>11} "
          f"{'rows/s':>9} {'evaluate s':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.scenarios.split(","):
            walls, result, path = [], None, ""
            for i in range(args.repeats):
                path = os.path.join(tmp, f"{name}-{i}.duckdb")
                t0 = time.perf_counter()
                result = simulate(path, name, hours=args.hours, seed=i + 1)
                walls.append(time.perf_counter() - t0)
            assert result is not None
            evals = []
            store = open_store(path, read_only=True)
            try:
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    evaluate(store.cursor())
                    evals.append(time.perf_counter() - t0)
            finally:
                store.shutdown()
            wall = statistics.median(walls)
            rows = result.requests + result.gpu_samples * 5  # requests + gpu, host and 3 server rows per tick
            print(f"{name:14} {args.hours:6g} {result.requests:9,} {wall:7.2f} {args.hours / wall:8.1f} "
                  f"{args.hours * 3600 / wall:11,.0f} {rows / wall:9,.0f} {statistics.median(evals):10.3f}")


if __name__ == "__main__":
    main()

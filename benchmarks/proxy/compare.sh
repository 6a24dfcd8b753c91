#!/usr/bin/env bash
# The shared proxy kit (../shared/bench) with `infermeter proxy` in the sidecar slot, RUNS times;
# prints each run's JSON line and the median sidecar-vs-peer ratios. Run from the repository root:
#   bash benchmarks/proxy/compare.sh                 # 2 runs, all five targets (TIME_LIMIT=240: 2 s cells)
#   RUNS=3 TARGETS=direct,pyfloor,sidecar bash benchmarks/proxy/compare.sh
# Needs `sh ../shared/bench/setup.sh` once (nginx, wrk, /tmp/benchvenv with LiteLLM).
set -euo pipefail
cd "$(dirname "$0")/../.."
KIT=${KIT:-../shared/bench}
[ -d "$KIT" ] || KIT=/work/shared/bench
PY=${BENCH_PYTHON:-/tmp/benchvenv/bin/python}
RUNS=${RUNS:-2}
OUT=${OUT_LINES:-/tmp/infermeter-proxy-bench.jsonl}
DB=$(mktemp -d)/sidecar.duckdb
export TIME_LIMIT=${TIME_LIMIT:-240}
export SIDECAR_CMD=${SIDECAR_CMD:-"$PWD/.venv/bin/infermeter proxy --upstream {upstream_url} --listen 127.0.0.1:{listen} --db $DB --api off"}
: > "$OUT"
for i in $(seq 1 "$RUNS"); do
  echo "# run $i of $RUNS: $SIDECAR_CMD" >&2
  "$PY" "$KIT/compare.py" | tee /dev/stderr | tail -n 1 >> "$OUT"
done
"$PY" - "$OUT" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
print(f"\nsidecar / peer, median of {len(runs)} runs (each run's own ratios):")
for peer in ("pyfloor", "litellm", "nginx", "direct"):
    for fig in ("cpu_ms_per_req", "added_p50_ms", "rps"):
        vals = [r["sidecar_vs"].get(peer, {}).get(fig) for r in runs]
        vals = [v for v in vals if v is not None]
        if vals:
            print(f"  {peer:8} {fig:15} {statistics.median(vals):8.3f}   runs: {', '.join(f'{v:.3f}' for v in vals)}")
for fig in ("added_ttft_ms_c1", "added_ttft_ms_c32"):
    ratios = [r["targets"]["sidecar"][fig] / r["targets"]["pyfloor"][fig] for r in runs
              if (r["targets"].get("pyfloor", {}).get(fig) or 0) > 0 and r["targets"].get("sidecar")]  # noise can make it <= 0
    if ratios:
        print(f"  pyfloor  {fig:15} {statistics.median(ratios):8.3f}   runs: {', '.join(f'{v:.3f}' for v in ratios)}")
PY

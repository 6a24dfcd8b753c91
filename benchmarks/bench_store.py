"""Store ingest: records/s through the writer (one thread, batched) and bytes on disk per record.

Builds N realistic records first (not timed: the decorator and proxy build them on their own
threads), then times submit -> force_flush (committed), then checkpoints and reads the file size.
Prints medians of several runs, each into a fresh file.

    .venv/bin/python benchmarks/bench_store.py [--records 1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time

from infermeter.records import InferenceRecord, new_request_id
from infermeter.store import open_store
from infermeter.store.arrow_batch import arrow_available


def make_records(n: int, seed: int = 1, traced: bool = False) -> list[InferenceRecord]:
    rng = random.Random(seed)
    models = ["llama-3.1-8b-instruct", "qwen2.5-32b", "bge-m3", "mistral-7b"]
    tenants = [f"tenant-{i}" for i in range(50)]
    endpoints = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]
    t = time.time_ns() - n * 1_000_000
    out = []
    for i in range(n):
        t += rng.randrange(200_000, 1_800_000)
        model = rng.choice(models)
        inp = int(rng.lognormvariate(5.5, 0.9))
        outp = int(rng.expovariate(1 / 150))
        dur = 0.02 + outp * 0.012 * rng.uniform(0.8, 1.3)
        out.append(InferenceRecord(
            start_time_ns=t, duration_s=round(dur, 6), operation="chat", source="proxy",
            status="ok" if rng.random() > 0.01 else "error",
            trace_id=rng.getrandbits(128) if traced else None, span_id=rng.getrandbits(64) if traced else None,
            ttft_s=round(0.02 + inp * 0.00004, 6), request_model=model, response_model=model, provider="vllm",
            endpoint=rng.choice(endpoints), server_address="127.0.0.1:8000", tenant=rng.choice(tenants),
            finish_reason="stop", streaming=rng.random() < 0.6, input_tokens=inp, output_tokens=outp,
            request_bytes=400 + inp * 4, response_bytes=300 + outp * 5, http_status=200,
            prompt_hash=rng.getrandbits(63) if rng.random() < 0.3 else None, request_id=new_request_id(),
        ))
    return out


def run_once(records: list[InferenceRecord], batch: int) -> tuple[float, float]:
    d = tempfile.mkdtemp(prefix="infermeter-store-bench-")
    path = os.path.join(d, "bench.duckdb")
    store = open_store(path, api_url=None).start()
    t0 = time.perf_counter()
    for i in range(0, len(records), batch):
        store.write_records(records[i : i + batch])
    assert store.force_flush(600)
    dt = time.perf_counter() - t0
    assert store.dropped_rows == 0 and store.write_errors == 0
    store.shutdown()
    size = os.path.getsize(path) + (os.path.getsize(path + ".wal") if os.path.exists(path + ".wal") else 0)
    os.remove(path)
    return len(records) / dt, size / len(records)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8192, help="records per pipeline batch (default: the pipeline's)")
    args = ap.parse_args()
    res = {}
    for traced in (False, True):
        recs = make_records(args.records, traced=traced)
        runs = [run_once(recs, args.batch) for _ in range(args.repeats)]
        rate = statistics.median(r[0] for r in runs)
        size = statistics.median(r[1] for r in runs)
        label = "with trace/span ids" if traced else "untraced (no SDK)"
        print(f"{args.records:,} records, {label:20}: {rate:,.0f} records/s (runs: {', '.join(f'{r[0]:,.0f}' for r in runs)}), "
              f"{size:.1f} bytes/record on disk")
        res["traced" if traced else "untraced"] = {"records_per_s": round(rate), "bytes_per_record": round(size, 1)}
    print(f"insert path: {'arrow (pyarrow installed)' if arrow_available() else 'appender'}; goals: >= 300,000 records/s on one core, <= 100 bytes/record")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Decorator overhead, side by side with a bare OpenTelemetry SDK span, in one run.

Each figure is the time per call of N calls *including* the background work they cause (the
pipeline and the store writer for @track, the BatchSpanProcessor for the bare span): every timed
run ends with a force_flush. Overhead = time per call minus a bare call's. Ratios are medians of
several interleaved runs.

    .venv/bin/python benchmarks/bench_decorator.py [--calls 50000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import infermeter
from infermeter.agent import decorator


class DropExporter(SpanExporter):
    """Receives the batches and drops them: measures the SDK, not a network."""

    def export(self, spans):  # noqa: ANN001
        return SpanExportResult.SUCCESS


def sdk_provider() -> TracerProvider:
    p = TracerProvider()
    p.add_span_processor(BatchSpanProcessor(DropExporter(), max_queue_size=65536, max_export_batch_size=4096))
    return p


RESULT = {"model": "m", "usage": {"prompt_tokens": 12, "completion_tokens": 30}}


def timed(loop, flush, n: int) -> float:
    t0 = time.perf_counter()
    loop(n)
    flush()
    return (time.perf_counter() - t0) / n * 1e6  # µs per call


def sync_cases(bare_provider: TracerProvider):
    def model(x):
        return RESULT

    tracked = infermeter.track(model="llama-3-8b", provider="vllm")(model)
    span_tracer = bare_provider.get_tracer("bench")

    def bare_loop(n):
        for i in range(n):
            model(i)

    def tracked_loop(n):
        for i in range(n):
            tracked(i)

    def span_loop(n):
        for i in range(n):
            with span_tracer.start_as_current_span("chat llama-3-8b"):
                model(i)

    return {"bare": (bare_loop, lambda: None), "track": (tracked_loop, lambda: infermeter.force_flush(60)),
            "otel_span": (span_loop, lambda: bare_provider.force_flush(60_000))}


def async_cases(bare_provider: TracerProvider):
    async def model(x):
        return RESULT

    tracked = infermeter.track(model="llama-3-8b", provider="vllm")(model)
    span_tracer = bare_provider.get_tracer("bench")

    async def bare(n):
        for i in range(n):
            await model(i)

    async def tr(n):
        for i in range(n):
            await tracked(i)

    async def sp(n):
        for i in range(n):
            with span_tracer.start_as_current_span("chat llama-3-8b"):
                await model(i)

    return {"bare": (lambda n: asyncio.run(bare(n)), lambda: None),
            "track": (lambda n: asyncio.run(tr(n)), lambda: infermeter.force_flush(60)),
            "otel_span": (lambda n: asyncio.run(sp(n)), lambda: bare_provider.force_flush(60_000))}


def measure(cases, n: int, repeats: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {k: [] for k in cases}
    for loop, flush in cases.values():  # warm-up
        timed(loop, flush, max(1000, n // 20))
    for _ in range(repeats):
        for name, (loop, flush) in cases.items():  # interleaved, so drift hits every case alike
            samples[name].append(timed(loop, flush, n))
    return {k: statistics.median(v) for k, v in samples.items()}


def report(title: str, med: dict[str, float]) -> dict[str, float]:
    bare = med["bare"]
    span_over = med["otel_span"] - bare
    track_over = med["track"] - bare
    ratio = track_over / span_over
    print(f"{title}: bare {bare:.2f} µs/call, @track {med['track']:.2f} (+{track_over:.2f}), "
          f"bare SDK span {med['otel_span']:.2f} (+{span_over:.2f})  ->  @track overhead / span overhead = {ratio:.2f}x")
    return {"bare_us": bare, "track_us": med["track"], "span_us": med["otel_span"], "ratio": ratio}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=50_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="infermeter-bench-")
    infermeter.configure(db=os.path.join(tmp, "bench.duckdb"), api="off")
    bare_provider = sdk_provider()
    out = {}
    print(f"python {sys.version.split()[0]}, {args.calls} calls x {args.repeats} runs, store enabled ({tmp})")
    # 1. No trace export: the global provider is OTel's default proxy, so @track makes no span.
    out["sync_no_export"] = report("sync, no trace export ", measure(sync_cases(bare_provider), args.calls, args.repeats))
    out["async_no_export"] = report("async, no trace export", measure(async_cases(bare_provider), args.calls, args.repeats))
    # 2. An SDK TracerProvider installed globally: @track records a real span per call too.
    trace.set_tracer_provider(sdk_provider())
    decorator._tracer_cache = (None, None)
    out["sync_sdk"] = report("sync, SDK provider     ", measure(sync_cases(bare_provider), args.calls, args.repeats))
    out["async_sdk"] = report("async, SDK provider    ", measure(async_cases(bare_provider), args.calls, args.repeats))
    agent = infermeter.force_flush(60) and None
    print("goals: no export <= 0.3x the bare span's overhead; SDK provider <= 1.3x")
    import json

    print(json.dumps({k: round(v["ratio"], 3) for k, v in out.items()}))
    infermeter.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

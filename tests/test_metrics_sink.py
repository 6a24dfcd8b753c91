"""The metrics sink aggregates a batch per attribute set; the points must be those of one record at a time."""

import random
from decimal import Decimal

from opentelemetry.sdk.metrics import MeterProvider

from infermeter.exporters.histograms import Histograms, HistogramSpec
from infermeter.exporters.metrics import MetricsSink
from infermeter.records import InferenceRecord


def records(n: int, seed: int = 7) -> list[InferenceRecord]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        err = rng.random() < 0.1
        out.append(InferenceRecord(
            start_time_ns=1_700_000_000_000_000_000 + i, duration_s=rng.lognormvariate(-1, 1.5),
            operation=rng.choice(["chat", "embeddings"]), source="proxy", status="error" if err else "ok",
            ttft_s=None if err or rng.random() < 0.3 else rng.random(), request_model=rng.choice(["a", "b", None]),
            response_model=rng.choice(["a-2024", None]), provider=rng.choice(["vllm", "openai"]),
            server_address=rng.choice([None, "127.0.0.1:8000", "api.openai.com"]), tenant=rng.choice([None, "t1", "t2"]),
            error_type="TimeoutError" if err else None, input_tokens=rng.choice([None, rng.randrange(1, 5000)]),
            output_tokens=rng.choice([None, rng.randrange(0, 900)]),
            cost_usd=rng.choice([None, Decimal(rng.randrange(1, 10**6)).scaleb(-9)]),
            cost_source=rng.choice([None, "catalog", "gpu_time", "unpriced"]), request_id=i,
        ))
    return out


def snapshot(sink: MetricsSink) -> dict:
    snap = sink.histograms.snapshot()
    return {name: sorted((sorted(a.items()), counts, round(s, 6), n, mn, mx) for a, counts, s, n, mn, mx in pts)
            for name, pts in snap.items()}


def test_a_batch_gives_the_points_of_its_records_one_by_one():
    recs = records(3000)
    batched = MetricsSink(MeterProvider())
    single = MetricsSink(MeterProvider())
    batched.consume(recs)
    for r in recs:
        single.consume([r])
    got, want = snapshot(batched), snapshot(single)
    assert got == want
    assert sum(n for pts in got.values() for *_, n, _mn, _mx in pts) > 3000  # every histogram got values
    assert batched._cost_totals == single._cost_totals
    assert sum(batched._cost_totals.values()) == sum(r.cost_usd for r in recs if r.cost_usd is not None)


def test_record_many_counts_each_value_in_its_bucket():
    """Both ways of counting (a loop for a few values, Counter over bisect for many) give the
    buckets, sum, count, min and max computed value by value here."""
    import bisect

    bounds = (0.01, 0.1, 1, 10)
    rng = random.Random(3)
    values = [rng.choice([0.01, 0.1, 1, 10, 100]) * rng.random() * 2 for _ in range(500)] + [0.1, 10, 1e9]
    h = Histograms([HistogramSpec("h", "s", "", bounds)])
    h.record_many("h", "k", {"x": 1}, values[:5])  # the short path
    h.record_many("h", "k", {"x": 1}, values[5:])  # the counting path
    h.record("h", "k", {"x": 1}, 0.5)
    values.append(0.5)
    want = [0] * (len(bounds) + 1)
    for v in values:
        want[bisect.bisect_left(bounds, v)] += 1
    ((attrs, counts, total, n, lo, hi),) = h.snapshot()["h"]
    assert attrs == {"x": 1} and counts == want and n == len(values)
    assert (lo, hi) == (min(values), max(values)) and abs(total - sum(values)) < 1e-6 * sum(values)

"""Rollups: blocks + raw rows answer exactly like the raw rows alone, and stay right when data arrives late."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infermeter.cost.rollups import BLOCK_NS, Rollups, latency_histograms, quantile, request_stats, split_ranges
from infermeter.records import InferenceRecord
from infermeter.store import open_store, queries

S = 10**9
T0 = 1_700_000_400 * S - (1_700_000_400 * S) % BLOCK_NS  # block aligned


@pytest.fixture
def store(db_path):
    s = open_store(db_path).start()
    # Attribution is final past every request here, as it is for blocks old enough to roll: the raw
    # rows count no self-hosted request as pending (test_cost_attribution covers pending).
    cur = s.cursor()
    cur.execute("INSERT INTO cost_windows (host, window_start_ns, window_end_ns, busy_s, requests, method, finalized_at_ns) "
                "VALUES ('h', $a, $b, 0, 0, 'time', 0)", {"a": T0 + 10**15 - S, "b": T0 + 10**15})
    cur.close()
    yield s
    s.shutdown()


def _records(n, seed=1, span_s=3600):
    rng = random.Random(seed)
    return [InferenceRecord(start_time_ns=T0 + rng.randrange(span_s * S), duration_s=rng.lognormvariate(-1, 1),
                            ttft_s=rng.random() / 10 if rng.random() < 0.5 else None,
                            request_model=rng.choice(["a", "b", None]), tenant=rng.choice(["x", "y"]),
                            status=rng.choice(["ok", "ok", "error"]), input_tokens=rng.randrange(100),
                            output_tokens=rng.choice([None, 5]), cost_source=rng.choice(["catalog", "gpu_time"]),
                            cost_usd=rng.choice([None, Decimal(rng.randrange(10**6)) / 10**9]), request_id=i)
            for i in range(n)]


def _raw(store, lo, hi):
    cur = store.cursor()
    try:
        return sorted(queries.run(cur, "rollups.requests_raw", lo_ns=lo, hi_ns=hi), key=repr)
    finally:
        cur.close()


def _stats(store, lo, hi):
    cur = store.cursor()
    try:
        return sorted(request_stats(cur, lo, hi), key=repr)
    finally:
        cur.close()


def test_rolled_blocks_plus_raw_edges_equal_the_raw_rows(store):
    store.write_records(_records(3000))
    clock = [T0 + 2 * 3600 * S]
    r = Rollups(store, horizon_s=150, clock=lambda: clock[0])
    r.run_due()
    assert r.stats["blocks_rolled"] == 11  # everything up to 2h - 150s, block-aligned
    lo, hi = T0 + 123 * S, T0 + 3000 * S + 7  # partial blocks at both ends
    cur = store.cursor()
    rolled, raw = split_ranges(cur, lo, hi)
    cur.close()
    assert rolled == [(T0 + BLOCK_NS, T0 + 5 * BLOCK_NS)] and raw == [(lo, T0 + BLOCK_NS), (T0 + 5 * BLOCK_NS, hi)]
    assert _stats(store, lo, hi) == _raw(store, lo, hi)
    assert _stats(store, 0, T0 + 10**15) == _raw(store, 0, T0 + 10**15)


def test_late_record_rerolls_its_block(store):
    store.write_records(_records(500, span_s=1200))
    clock = [T0 + 3600 * S]
    r = Rollups(store, horizon_s=150, clock=lambda: clock[0])
    r.run_due()
    late = InferenceRecord(start_time_ns=T0 + 5 * S, duration_s=3000.0, request_model="late", request_id=10**6)
    store.write_records([late])
    r.consume([late])
    assert not any(x["model"] == "late" for x in _stats(store, T0, T0 + BLOCK_NS))  # rolled block: not yet
    clock[0] += 151 * S
    r.run_due()
    assert r.stats["blocks_rerolled"] == 1
    assert _stats(store, T0, T0 + BLOCK_NS) == _raw(store, T0, T0 + BLOCK_NS)
    assert any(x["model"] == "late" for x in _stats(store, T0, T0 + BLOCK_NS))


def test_costs_changed_after_the_roll_are_rerolled(store):
    (rec,) = _records(1, span_s=60)
    rec = rec.replace(cost_usd=None, cost_source="gpu_time")
    store.write_records([rec])
    clock = [T0 + 3600 * S]
    r = Rollups(store, horizon_s=150, clock=lambda: clock[0])
    r.run_due()
    cur = store.cursor()
    cur.execute("UPDATE requests SET cost_usd = 0.5")  # what attribution's UPDATE does
    cur.close()
    r.on_costs_changed(rec.start_time_ns, T0, T0 + S)
    clock[0] += 151 * S
    r.run_due()
    assert sum(x["cost_usd"] for x in _stats(store, T0, T0 + BLOCK_NS)) == Decimal("0.5")


def test_latency_quantiles_from_buckets_are_within_2_5_percent(store):
    recs = _records(4000, seed=3)
    store.write_records(recs)
    clock = [T0 + 3 * 3600 * S]
    Rollups(store, horizon_s=150, clock=lambda: clock[0]).run_due()
    cur = store.cursor()
    hist = latency_histograms(cur, 0, T0 + 10**15)
    cur.close()
    for model in ("a", "b"):
        durs = sorted(r.duration_s for r in recs if r.request_model == model)
        for q in (0.5, 0.95):
            exact = durs[max(0, int(q * len(durs) + 0.5) - 1)]
            assert quantile(hist[(model, "duration")], q) == pytest.approx(exact, rel=0.026)


@settings(deadline=None, max_examples=60)
@given(st.lists(st.integers(0, 30), max_size=20), st.integers(0, 31 * BLOCK_NS), st.integers(1, 31 * BLOCK_NS))
def test_split_ranges_cover_the_window_exactly_once(blocks, lo_off, length):
    import duckdb

    con = duckdb.connect()
    con.execute("CREATE TABLE schema_version AS SELECT 6 AS version")
    con.execute("CREATE TABLE rollup_blocks (block_ns BIGINT PRIMARY KEY, rolled_at_ns BIGINT)")
    for b in set(blocks):
        con.execute("INSERT INTO rollup_blocks VALUES (?, 0)", [T0 + b * BLOCK_NS])
    lo, hi = T0 + lo_off, T0 + lo_off + length
    rolled, raw = split_ranges(con, lo, hi)
    pieces = sorted(rolled + raw)
    assert pieces[0][0] == lo and pieces[-1][1] == hi
    assert all(a < b for a, b in pieces) and all(p[1] == q[0] for p, q in zip(pieces, pieces[1:]))
    assert all((a - T0) // BLOCK_NS in set(blocks) and (b - a) % BLOCK_NS == 0 for a, b in rolled)

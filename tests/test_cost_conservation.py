"""Property tests: cost and energy are conserved exactly, whatever the workload.

For every window: sum of allocations + unallocated == sum of usage + idle == instance price x
window length (nano-dollar rounding of the price telescopes), and sum of energy shares + idle
energy == measured energy. Checked on the pure split and end to end through a real store,
with requests arriving late and out of order.
"""

from __future__ import annotations

import os
import tempfile
from decimal import ROUND_FLOOR, Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infermeter.config import Settings
from infermeter.cost.attribution import Attribution
from infermeter.cost.catalog import load_catalog
from infermeter.cost.energy import WindowEnergy
from infermeter.cost.pricing import PricingProcessor
from infermeter.cost.shares import HOUR_NS, largest_remainder, window_cost_nusd
from infermeter.cost.windows import Activity, WindowPrice, attribute_window
from infermeter.records import InferenceRecord
from infermeter.store import open_store

S = 10**9
T0 = 1_700_000_000 * S
CATALOG = load_catalog()


@settings(deadline=None)
@given(st.integers(0, 10**15), st.lists(st.integers(0, 10**12), max_size=50))
def test_largest_remainder_parts_sum_to_the_total(total, weights):
    parts = largest_remainder(total, weights, list(range(len(weights))))
    assert len(parts) == len(weights)
    if weights:
        assert sum(parts) == total and min(parts) >= 0
        wsum = sum(weights)
        if wsum:
            for p, w in zip(parts, weights):
                assert abs(p - total * w / wsum) < 1 + 1e-6 * total  # within one unit of its exact share


@settings(deadline=None)
@given(st.integers(0, 10**12), st.integers(0, 10**15), st.lists(st.integers(0, 10**14), min_size=1, max_size=20))
def test_window_prices_telescope(hourly_nusd, origin_off, cuts):
    bounds = sorted({T0 + origin_off + c for c in cuts} | {T0 + origin_off})
    total = sum(window_cost_nusd(hourly_nusd, T0, a, b) for a, b in zip(bounds, bounds[1:]))
    exact = Decimal(hourly_nusd) * (bounds[-1] - bounds[0]) / HOUR_NS
    assert abs(total - exact) < 1


activities = st.lists(
    st.tuples(st.integers(-2 * S, S - 1), st.integers(1, 3 * S), st.one_of(st.none(), st.integers(0, 5000))),
    max_size=40,
)


@settings(deadline=None, max_examples=300)
@given(activities, st.one_of(st.none(), st.integers(0, 10**9)), st.one_of(st.none(), st.integers(0, 10**7)),
       st.sampled_from(["time", "tokens"]))
def test_one_window_conserves_cost_and_energy(acts, cost, energy, method):
    ws, we = T0, T0 + S
    items = [Activity(i + 1, T0 + s, T0 + s + d, tok) for i, (s, d, tok) in enumerate(acts) if T0 + s + d > ws]
    price = WindowPrice(None, cost, 1, 1e-6)
    en = WindowEnergy(energy, "counter", 1) if energy is not None else None
    w, rows = attribute_window("h", ws, we, items, price, en, method, 0)
    (_, _, _, _, inst, usage, idle, alloc, unalloc, e, e_idle, _, _, _, busy_s, n, used_method, _) = w
    assert n == len(rows) == len(items)
    assert 0 <= busy_s <= 1.0
    if cost is None:
        assert inst is None and all(r[5] is None for r in rows)
    else:
        nano = Decimal("1e-9")
        assert inst == Decimal(cost) * nano
        assert usage + idle == inst and alloc + unalloc == inst
        assert sum((r[5] for r in rows), Decimal(0)) == alloc
        assert sum((r[6] for r in rows), Decimal(0)) == usage
        assert unalloc == (inst if not items else 0)
    if energy is None:
        assert e is None and all(r[7] is None for r in rows)
    else:
        assert sum(r[7] for r in rows) + e_idle == e == energy
    if used_method == "tokens":
        assert items and all(a.tokens for a in items)


workloads = st.fixed_dictionaries({
    "interval_ms": st.sampled_from([250, 1000, 2000]),
    "hourly": st.decimals(min_value=Decimal("0.01"), max_value=Decimal("150"), places=4),
    "method": st.sampled_from(["time", "tokens"]),
    "requests": st.lists(st.tuples(st.integers(0, 8000), st.integers(0, 4000), st.one_of(st.none(), st.integers(1, 900))),
                         max_size=60),
    "gpus": st.lists(st.tuples(st.booleans(), st.floats(50, 700)), max_size=3),
    "flushes": st.lists(st.integers(0, 10_000), max_size=4),
})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workloads)
def test_end_to_end_every_window_conserves_exactly(w):
    step = w["interval_ms"] * 1_000_000
    with tempfile.TemporaryDirectory() as d:
        store = open_store(os.path.join(d, "s.duckdb")).start()
        try:
            _run_workload(store, w, step)
        finally:
            store.shutdown()


def _run_workload(store, w, step):
    clock = [T0]
    s = Settings.load(environ={}, hourly_usd=float(w["hourly"]), sample_interval_s=step / 1e9,
                      attribution_weighting=w["method"], region="eu-west-1")
    att = Attribution(store, s, CATALOG, host="h", clock=lambda: clock[0])
    att.force_flush()
    end_ms = 14_000
    samples = []
    for g, (counter, watts) in enumerate(w["gpus"]):
        for k in range(end_ms * 1_000_000 // step + 1):
            samples.append((T0 + k * step, "h", f"GPU-{g}", g, "X", None, None, None, None, None, watts,
                            None, 1000.0 + watts * k * step / 1e9 if counter else None, None, None))
    store.submit("gpu_samples", samples)
    pricing = PricingProcessor(CATALOG)
    recs = [InferenceRecord(start_time_ns=T0 + start * 1_000_000, duration_s=dur / 1000, request_model="m",
                            input_tokens=tok, output_tokens=tok) for start, dur, tok in w["requests"]]
    recs = pricing(recs)
    # records arrive when they end; flush at random moments in between (late arrivals included)
    pending = sorted(recs, key=lambda r: r.end_time_ns)
    for at in sorted(w["flushes"]) + [end_ms]:
        clock[0] = T0 + at * 1_000_000
        ready = [r for r in pending if r.end_time_ns <= clock[0]]
        pending = [r for r in pending if r.end_time_ns > clock[0]]
        store.write_records(ready)
        att.consume(ready)
        att.force_flush()
    store.force_flush()
    assert store.query("costs.conservation_violations", since_ns=0) == []
    cur = store.cursor()
    try:
        n, first, last, total = cur.execute(
            "SELECT count(*), min(window_start_ns), max(window_end_ns), sum(instance_cost_usd) FROM cost_windows").fetchone()
        assert n == end_ms * 1_000_000 // step and first == T0 and last == T0 + n * step
        exact = w["hourly"] * Decimal(last - first) / HOUR_NS
        assert total == exact.quantize(Decimal("1e-9"), rounding=ROUND_FLOOR)  # telescoped from one price origin
        bad = cur.execute("""
            SELECT r.request_id FROM requests r
            LEFT JOIN (SELECT request_id, sum(allocation_cost_usd) AS c FROM request_costs GROUP BY 1) s USING (request_id)
            WHERE r.cost_usd IS DISTINCT FROM s.c""").fetchall()
        assert bad == []  # every request's cost is the sum of its shares
        before = cur.execute("SELECT * EXCLUDE (finalized_at_ns) FROM cost_windows ORDER BY ALL").fetchall()
        rc_before = cur.execute("SELECT * FROM request_costs ORDER BY ALL").fetchall()
    finally:
        cur.close()
    att.recompute(T0, T0 + end_ms * 1_000_000)
    store.force_flush()
    cur = store.cursor()
    try:
        assert cur.execute("SELECT * EXCLUDE (finalized_at_ns) FROM cost_windows ORDER BY ALL").fetchall() == before
        assert cur.execute("SELECT * FROM request_costs ORDER BY ALL").fetchall() == rc_before
    finally:
        cur.close()

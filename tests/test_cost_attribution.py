"""Attribution on a real DuckDB store with a controlled clock: shares, idle, energy, re-runs."""

from __future__ import annotations

import os
import tempfile
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infermeter.config import Settings
from infermeter.agent.report import build_report, format_report
from infermeter.cost.attribution import Attribution
from infermeter.cost.views import cost_groups
from infermeter.cost.catalog import load_catalog
from infermeter.cost.pricing import PricingProcessor
from infermeter.records import InferenceRecord
from infermeter.store import open_store

S = 10**9
T0 = 1_700_000_000 * S  # window-aligned wall clock
HOST = "box-1"


class Clock:
    def __init__(self, t: int) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


@pytest.fixture
def store(db_path):
    s = open_store(db_path).start()
    yield s
    s.shutdown()


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def make(store, catalog, clock=None, **settings):
    settings.setdefault("hourly_usd", 3.6)  # $0.001 per second
    s = Settings.load(environ={}, **settings)
    return Attribution(store, s, catalog, host=HOST, clock=clock or Clock(T0))


def feed(store, att, catalog, *records):
    priced = PricingProcessor(catalog)(list(records))
    store.write_records(priced)
    att.consume(priced)
    return priced


def rec(start_s: float, dur_s: float, model="llama-3.1-8b", tokens=None, **kw):
    return InferenceRecord(start_time_ns=T0 + int(start_s * S), duration_s=dur_s, request_model=model,
                           input_tokens=tokens, output_tokens=0 if tokens is not None else None, **kw)


def windows(store):
    store.force_flush()
    cur = store.cursor()
    try:
        cur.execute("SELECT * FROM cost_windows ORDER BY window_start_ns")
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]
    finally:
        cur.close()


def first_request(store):
    store.force_flush()
    return store.query("requests.recent", since_ns=0, limit=1)[0]


def shares(store):
    store.force_flush()
    cur = store.cursor()
    try:
        return {r[0]: r for r in cur.execute(
            "SELECT request_id, sum(allocation_cost_usd), sum(usage_cost_usd), sum(energy_mj), count(*) FROM request_costs GROUP BY 1"
        ).fetchall()}
    finally:
        cur.close()


def table(store, name):
    store.force_flush()
    cur = store.cursor()
    try:
        return sorted(cur.execute(f"SELECT * EXCLUDE (finalized_at_ns) FROM {name}" if name == "cost_windows" else f"SELECT * FROM {name}").fetchall(), key=repr)
    finally:
        cur.close()


def violations(store):
    store.force_flush()
    return store.query("costs.conservation_violations", since_ns=0)


def test_one_request_filling_a_window_gets_all_of_it(store, catalog):
    clock = Clock(T0)
    att = make(store, catalog, clock)
    att.force_flush()  # begins at T0
    (r,) = feed(store, att, catalog, rec(0, 1.0))
    clock.t = T0 + 2 * S
    att.force_flush()
    w = windows(store)
    assert [x["window_start_ns"] for x in w] == [T0, T0 + S]
    assert w[0]["instance_cost_usd"] == Decimal("0.001") == w[0]["allocated_cost_usd"] == w[0]["usage_cost_usd"]
    assert w[0]["idle_cost_usd"] == 0 and w[0]["requests"] == 1 and w[0]["busy_s"] == 1.0
    assert w[1]["requests"] == 0 and w[1]["unallocated_cost_usd"] == w[1]["idle_cost_usd"] == Decimal("0.001")
    assert first_request(store)["cost_usd"] == Decimal("0.001")
    assert not violations(store)


def test_half_busy_window_splits_usage_and_idle_and_allocates_all(store, catalog):
    clock = Clock(T0)
    att = make(store, catalog, clock)
    att.force_flush()
    a, b = feed(store, att, catalog, rec(0.0, 0.5), rec(0.25, 0.25))
    clock.t = T0 + S
    att.force_flush()
    (w,) = windows(store)
    assert w["busy_s"] == 0.5
    assert w["usage_cost_usd"] == Decimal("0.0005") and w["idle_cost_usd"] == Decimal("0.0005")
    assert w["allocated_cost_usd"] == Decimal("0.001") and w["unallocated_cost_usd"] == 0
    sh = shares(store)
    # weights by overlap 0.5 : 0.25 -> 2 : 1
    assert sh[a.request_id][1] == Decimal("0.000666667") and sh[b.request_id][1] == Decimal("0.000333333")
    assert sh[a.request_id][2] + sh[b.request_id][2] == Decimal("0.0005")
    assert not violations(store)


def test_token_weighting_is_recorded_and_falls_back_to_time(store, catalog):
    clock = Clock(T0)
    att = make(store, catalog, clock, attribution_weighting="tokens")
    att.force_flush()
    a, b = feed(store, att, catalog, rec(0, 1.0, tokens=300), rec(0, 1.0, tokens=100))
    c = feed(store, att, catalog, rec(1.0, 1.0, tokens=None))[0]
    feed(store, att, catalog, rec(1.0, 1.0, tokens=50))
    clock.t = T0 + 2 * S
    att.force_flush()
    w0, w1 = windows(store)
    assert (w0["method"], w1["method"]) == ("tokens", "time")
    sh = shares(store)
    assert sh[a.request_id][1] == Decimal("0.00075") and sh[b.request_id][1] == Decimal("0.00025")
    assert sh[c.request_id][1] == Decimal("0.0005")
    assert not violations(store)


def test_request_spanning_windows_is_priced_once_its_last_window_is_final(store, catalog):
    clock = Clock(T0)
    att = make(store, catalog, clock)
    att.force_flush()
    (r,) = feed(store, att, catalog, rec(0.5, 2.0))
    clock.t = T0 + 2 * S
    att.force_flush()
    assert first_request(store)["cost_usd"] is None  # still running in window 2
    clock.t = T0 + 3 * S
    att.force_flush()
    assert first_request(store)["cost_usd"] == Decimal("0.003")
    assert shares(store)[r.request_id][4] == 3


def test_late_request_recomputes_final_windows_like_a_fresh_rerun(store, catalog):
    clock = Clock(T0)
    att = make(store, catalog, clock)
    att.force_flush()
    feed(store, att, catalog, rec(0.1, 0.2), rec(1.5, 0.2))
    clock.t = T0 + 3 * S
    att.force_flush()
    late = feed(store, att, catalog, rec(0.0, 2.5))[0]  # ran 2.5 s, arrives after windows 0-2 were final
    clock.t = T0 + 4 * S
    att.force_flush()
    assert att.stats["recomputed_windows"] >= 3
    assert shares(store)[late.request_id][4] == 3
    assert not violations(store)
    before = (table(store, "cost_windows"), table(store, "request_costs"), table(store, "requests"))
    assert att.recompute(T0, T0 + 4 * S) == 4
    store.force_flush()
    after = (table(store, "cost_windows"), table(store, "request_costs"), table(store, "requests"))
    assert after == before  # idempotent: same rows, no duplicates


def test_energy_from_counter_and_power_with_carbon(store, catalog):
    clock = Clock(T0)
    att = make(store, catalog, clock, region="us-east-1")
    att.force_flush()
    rows = []
    for k in range(3):
        ts = T0 + k * S + (5_000_000 if k == 1 else 0)  # sampler jitter: snapped to the boundary
        rows.append((ts, HOST, "GPU-a", 0, "H100", None, 50.0, None, None, None, 300.0, 700.0, 1000.0 + 250.0 * k, None, None))
        rows.append((ts, HOST, "GPU-b", 1, "H100", None, 50.0, None, None, None, 100.0 + 100 * k, 700.0, None, None, None))
        rows.append((ts, HOST, "MIG-1", None, "MIG", "GPU-a", None, None, None, None, 999.0, None, 999.0, None, None))
    store.submit("gpu_samples", rows)
    (r,) = feed(store, att, catalog, rec(0.0, 0.5))
    clock.t = T0 + 2 * S
    att.force_flush()
    w0, w1 = windows(store)
    # GPU-a: counter delta 250 J; GPU-b: mean power (100+200)/2 W x 1 s = 150 J; MIG ignored
    assert w0["energy_mj"] == 400_000 and w0["energy_source"] == "mixed" and w0["gpu_count"] == 2
    assert w1["energy_mj"] == 250_000 + 250_000
    assert shares(store)[r.request_id][3] == 200_000 and w0["idle_energy_mj"] == 200_000
    intensity, pue = catalog.carbon("us-east-1")
    assert w0["co2e_g"] == pytest.approx(400 / 3.6e6 * intensity * pue)
    assert not violations(store)


def test_no_gpu_data_is_null_energy_not_zero(store, catalog):
    clock = Clock(T0)
    att = make(store, catalog, clock)
    att.force_flush()
    feed(store, att, catalog, rec(0, 0.5))
    clock.t = T0 + S
    att.force_flush()
    (w,) = windows(store)
    assert w["energy_mj"] is None and w["energy_source"] is None and w["co2e_g"] is None


def test_unpriced_box_keeps_requests_unpriced_but_attributes_time(store, catalog):
    clock = Clock(T0)
    att = make(store, catalog, clock, hourly_usd=None)
    att.force_flush()
    feed(store, att, catalog, rec(0, 0.5))
    clock.t = T0 + S
    att.force_flush()
    (w,) = windows(store)
    assert w["instance_cost_usd"] is None and w["busy_s"] == 0.5 and w["requests"] == 1
    r = first_request(store)
    assert r["cost_usd"] is None and r["cost_source"] == "gpu_time"


def test_gpu_hour_price_waits_for_a_gpu_count_then_applies(store, catalog):
    clock = Clock(T0)
    att = make(store, catalog, clock, hourly_usd=None, gpu_hour_usd=1.8)
    att.force_flush()
    assert att.box.hourly_usd is None
    store.submit("gpu_samples", [(T0, HOST, f"GPU-{i}", i, "L4", None, None, None, None, None, 70.0, None, None, None, None)
                                 for i in range(2)])
    clock.t = T0 + S
    att.force_flush()
    assert att.box.hourly_usd == Decimal("3.6") and "2 GPUs" in att.box.source
    feed(store, att, catalog, rec(1.0, 1.0))
    clock.t = T0 + 2 * S
    att.force_flush()
    w0, w1 = windows(store)
    assert w0["instance_cost_usd"] is None and w1["instance_cost_usd"] == Decimal("0.001")
    prices = store.query("costs.instance_prices", host=HOST)
    assert [p["hourly_usd"] for p in prices] == [None, Decimal("3.6")]


def test_catalog_instance_price_and_restart_resumes_without_gaps(db_path, catalog):
    clock = Clock(T0)
    store = open_store(db_path).start()
    att = make(store, catalog, clock, hourly_usd=None, instance="g6.xlarge", pricing="spot")
    att.force_flush()
    feed(store, att, catalog, rec(0.0, 1.0))
    clock.t = T0 + 2 * S
    att.shutdown()
    store.shutdown()
    store = open_store(db_path).start()
    try:
        clock.t = T0 + 5 * S  # the agent was down for 3 s: resumed and billed (below MAX_RESUME_GAP_S)
        att = make(store, catalog, clock, hourly_usd=None, instance="g6.xlarge", pricing="spot")
        att.force_flush()
        w = windows(store)
        assert [x["window_start_ns"] for x in w] == [T0 + k * S for k in range(5)]
        assert w[0]["hourly_usd"] == Decimal("0.3219")
        assert sum(x["instance_cost_usd"] for x in w) == (Decimal("0.3219") * 5 / 3600).quantize(Decimal("1e-9"), rounding="ROUND_FLOOR")
        assert len(store.query("costs.instance_prices", host=HOST)) == 1
    finally:
        store.shutdown()


def test_unknown_instance_stops_start_up_by_name(store, catalog):
    from infermeter.errors import ConfigError

    with pytest.raises(ConfigError, match="instance"):
        make(store, catalog, hourly_usd=None, instance="x9.huge").force_flush()


def test_agent_end_to_end_every_request_priced_and_conserved(db_path):
    import duckdb

    import infermeter

    infermeter.configure(db=db_path, api="off", hourly_usd=3.6)
    f = infermeter.track(model="llama-3.1-8b")(lambda: {"usage": {"prompt_tokens": 3, "completion_tokens": 4}})
    for _ in range(20):
        f()
    infermeter.shutdown()  # closes the window in progress: nothing is left unpriced
    con = duckdb.connect(db_path, read_only=True)
    try:
        n, priced, total = con.execute(
            "SELECT count(*), count(cost_usd), sum(cost_usd) FROM requests WHERE cost_source = 'gpu_time'").fetchone()
        inst, unalloc = con.execute("SELECT sum(instance_cost_usd), sum(unallocated_cost_usd) FROM cost_windows").fetchone()
    finally:
        con.close()
    assert n == priced == 20
    assert total + unalloc == inst > 0


def test_run_due_waits_for_the_delay_before_finalising(store, catalog):
    clock = Clock(T0)
    att = make(store, catalog, clock, attribution_delay_s=5)
    att.run_due()
    feed(store, att, catalog, rec(0.0, 0.5))
    clock.t = T0 + 4 * S + 10
    att.run_due()
    assert windows(store) == []  # nothing closed 5 s ago yet
    clock.t = T0 + 7 * S + 10
    att.run_due()
    assert [w["window_start_ns"] for w in windows(store)] == [T0, T0 + S]
    assert first_request(store)["cost_usd"] == Decimal("0.001")


def test_requests_in_windows_not_final_yet_are_counted_as_pending(store, catalog):
    from infermeter.cost.views import rates

    clock = Clock(T0)
    att = make(store, catalog, clock)
    att.force_flush()
    feed(store, att, catalog, rec(0.2, 0.3), rec(1.5, 2.0))
    clock.t = T0 + 2 * S
    att.force_flush()  # window 0 and 1 final; the second request runs on into window 3
    store.force_flush()
    cur = store.cursor()
    try:
        assert rates(cur, T0 + 2 * S)["pending_attribution_requests"] == 1
        rep = build_report(cur, until_ns=T0 + 10 * S)
        text = format_report(rep)
        groups = cost_groups(cur, "model", 0, T0 + 10 * S)
    finally:
        cur.close()
    # the report and the costs view say pending, as the live views do: not unpriced, not $0
    [m] = rep["models"]
    assert (m["requests"], m["pending_requests"], m["unpriced_requests"]) == (2, 1, 0)
    assert m["cost_usd"] is not None and (rep["pending_requests"], rep["unpriced_requests"]) == (1, 0)
    assert "(1 pending: their cost windows are not final yet)" in text and "unpriced)" not in text
    assert [(g["pending_requests"], g["unpriced_requests"]) for g in groups] == [(1, 0)]
    assert groups[0]["cost_per_1k_requests_usd"] == groups[0]["cost_usd"] * 1000  # per priced request: 1 of the 2


def test_once_a_window_without_a_price_is_final_its_requests_are_unpriced_not_pending(store, catalog):
    from infermeter.cost.views import rates

    clock = Clock(T0)
    att = make(store, catalog, clock, hourly_usd=None)  # the box has no price
    att.force_flush()
    feed(store, att, catalog, rec(0.2, 0.3), rec(1.5, 2.0))
    clock.t = T0 + 2 * S
    att.force_flush()
    store.force_flush()
    cur = store.cursor()
    try:
        [m] = build_report(cur, until_ns=T0 + 10 * S)["models"]
        pending = rates(cur, T0 + 2 * S)["pending_attribution_requests"]
    finally:
        cur.close()
    assert m["cost_usd"] is None and (m["unpriced_requests"], m["pending_requests"]) == (1, 1) and pending == 1


_reference_workload = st.fixed_dictionaries({
    "requests": st.lists(st.tuples(st.integers(-1500, 2999), st.integers(0, 3500), st.one_of(st.none(), st.integers(0, 900)),
                                   st.sampled_from(["m1", "m2"]), st.sampled_from([None, "acme"])), max_size=25),
    "method": st.sampled_from(["time", "tokens"]),
    "hourly": st.sampled_from([None, 0.5, 3.6, 97.3]),
    "gpus": st.lists(st.tuples(st.booleans(), st.floats(50, 700)), max_size=2),
})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(w=_reference_workload)
def test_shares_computed_in_the_store_match_the_reference_split(w, catalog):
    """The store computes every request's shares (costs.insert_request_shares); they must be the
    rows cost.windows.attribute_window -- the readable reference -- makes, window by window:
    exact money and energy, the same weights and method, the same labels."""
    from infermeter.cost.energy import window_energies
    from infermeter.cost.windows import Activity, attribute_window

    with tempfile.TemporaryDirectory() as d:
        store = open_store(os.path.join(d, "ref.duckdb")).start()
        try:
            clock = Clock(T0)
            settings_ = {"attribution_weighting": w["method"], "region": "eu-west-1"}
            if w["hourly"] is None:
                settings_["hourly_usd"] = None
            else:
                settings_["hourly_usd"] = w["hourly"]
            att = make(store, catalog, clock, **settings_)
            att.force_flush()
            samples = [(T0 + k * S, HOST, f"GPU-{g}", g, "X", None, None, None, None, None, watts,
                        None, 500.0 + watts * k if counter else None, None, None)
                       for g, (counter, watts) in enumerate(w["gpus"]) for k in range(5)]
            store.submit("gpu_samples", samples)
            recs = [rec(start / 1000, dur / 1000, model=m, tokens=tok, tenant=tenant)
                    for start, dur, tok, m, tenant in w["requests"]]
            priced = feed(store, att, catalog, *recs)
            clock.t = T0 + 4 * S
            att.force_flush()
            got_windows = table(store, "cost_windows")
            cur = store.cursor()
            try:
                got_rows = cur.execute("SELECT * FROM request_costs ORDER BY window_start_ns, request_id").fetchall()
            finally:
                cur.close()
        finally:
            store.shutdown()
    acts = [Activity(r.request_id, r.start_time_ns, max(r.start_time_ns + int(r.duration_s * 1e9), r.start_time_ns + 1),
                     None if r.input_tokens is None and r.output_tokens is None else (r.input_tokens or 0) + (r.output_tokens or 0),
                     r.request_model, r.tenant, r.endpoint, r.operation) for r in priced]
    energies = window_energies([(s[0], s[2], s[10], s[12]) for s in samples], T0, S, 4)
    want_windows, want_rows = [], []
    for i in range(4):
        ws = T0 + i * S
        window, rows = attribute_window(HOST, ws, ws + S, [a for a in acts if a.start_ns < ws + S and a.end_ns > ws],
                                        att._price(ws, ws + S), energies[i], w["method"], 0)
        want_windows.append(window[:-1])
        want_rows += rows
    assert got_windows == sorted(want_windows, key=repr)
    assert len(got_rows) == len(want_rows)
    for got, want in zip(got_rows, want_rows):
        exact = [j for j in range(len(want)) if not isinstance(want[j], float)]
        assert [got[j] for j in exact] == [want[j] for j in exact]
        assert [got[j] for j in range(len(want)) if j not in exact] == pytest.approx(
            [want[j] for j in range(len(want)) if j not in exact], rel=1e-12)


def test_the_sink_keeps_no_request_in_memory(store, catalog):
    """Shares are computed from the store, so a busy box's requests are not held between passes:
    only late ones (starting before a window already being finalised) are noted, as a range."""
    clock = Clock(T0)
    att = make(store, catalog, clock)
    att.force_flush()
    clock.t = T0 + 5 * S
    att.force_flush()  # windows 0..4 final (and idle)
    feed(store, att, catalog, *[rec(5 + i / 1000, 0.01) for i in range(500)])
    assert att._late == []
    (late,) = feed(store, att, catalog, rec(0.5, 4.7))  # ran through the final windows
    assert att._late == [(T0 + S // 2, T0 + S // 2 + 4_700_000_000)]
    clock.t = T0 + 7 * S
    att.force_flush()
    assert att._late == [] and violations(store) == []
    assert shares(store)[late.request_id][4] == 6  # windows 0..5, the first five recomputed
    assert [w["requests"] for w in windows(store)][:5] == [1, 1, 1, 1, 1]


def _mixed_workload(store, catalog, tmp_path, name, **settings):
    """Windows with 1, 2, 8 and 1 requests (one spans two windows), tokens weighting; returns the tables."""
    clock = Clock(T0)
    att = make(store, catalog, clock, attribution_weighting="tokens", **settings)
    att.force_flush()
    recs = [rec(0.1, 0.2, tokens=30), rec(1.2, 0.3, tokens=10), rec(1.5, 0.9, tokens=5, tenant="acme")]
    recs += [rec(2.0 + i / 10, 0.35, tokens=7 + i) for i in range(7)] + [rec(3.3, 0.1, tokens=3)]
    recs = [r._replace(request_id=1000 + i) for i, r in enumerate(recs)]  # the same ids (and tie-breaks) in every run
    feed(store, att, catalog, *recs)
    clock.t = T0 + 5 * S
    att.force_flush()
    assert violations(store) == []
    costs = sorted((r["request_id"], r["cost_usd"]) for r in store.query("requests.recent", since_ns=0, limit=100))
    return att, table(store, "cost_windows"), table(store, "request_costs"), costs


def test_windows_too_big_for_one_insert_are_split_in_python_the_same_way(store, catalog, tmp_path, monkeypatch):
    """Share rows go to DuckDB in batches of windows (SHARES_PER_INSERT rows at most); a window
    with more than SHARES_PER_WINDOW requests is split by the reference implementation in Python
    instead, with the same result."""
    from infermeter.cost import attribution

    att, *want = _mixed_workload(store, catalog, tmp_path, "sql")
    assert att.stats["python_splits"] == 0
    other = open_store(str(tmp_path / "small-batches.duckdb")).start()
    try:
        monkeypatch.setattr(attribution, "SHARES_PER_INSERT", 2)
        monkeypatch.setattr(attribution, "SHARES_PER_WINDOW", 3)
        att2, *got = _mixed_workload(other, catalog, tmp_path, "python")
    finally:
        other.shutdown()
    assert att2.stats["python_splits"] == 1  # the window of 8 requests (the others go in batches of <= 2 rows)
    assert got == want


def test_shares_that_hit_the_memory_cap_are_split_in_python(store, catalog, tmp_path, monkeypatch):
    """DuckDB runs the splits under the agent's memory cap; when an INSERT does not fit
    (OutOfMemoryException, injected here at the cursor), the same windows are split in Python."""
    import duckdb

    _, *want = _mixed_workload(store, catalog, tmp_path, "sql")
    other = open_store(str(tmp_path / "oom.duckdb")).start()

    class Cursor:
        def __init__(self, cur):
            self._cur = cur

        def execute(self, sql, *params):
            if sql.lstrip().startswith("INSERT INTO request_costs"):
                raise duckdb.OutOfMemoryException("Out of Memory Error: failed to pin block (injected)")
            return self._cur.execute(sql, *params)

        def __getattr__(self, name):
            return getattr(self._cur, name)

    real = other.cursor
    monkeypatch.setattr(other, "cursor", lambda: Cursor(real()))
    try:
        att, *got = _mixed_workload(other, catalog, tmp_path, "oom")
    finally:
        other.shutdown()
    assert att.stats["python_splits"] >= 1 and att.stats["errors"] == 0
    assert got == want


def test_each_periodic_pass_gives_duckdbs_freed_memory_back(store, catalog, monkeypatch):
    import threading

    passed = threading.Event()
    monkeypatch.setattr(store, "release_memory", passed.set)
    att = make(store, catalog, Clock(T0), sample_interval_s=0.1)  # the loop waits for real time: a short interval
    att.start()
    try:
        assert passed.wait(10)
    finally:
        att.shutdown()

"""The workload simulator, and acceptance of the recommendations by scenario (through the CLI).

Each scenario is simulated once per module into a real DuckDB file on a fixed simulated clock
(a week ending Saturday 2025-03-08 00:00 UTC, so the default 24 h window is a Friday)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from infermeter.agent.cli import main
from infermeter.collectors.scrapers import KINDS
from infermeter.rules.engine import evaluate
from infermeter.sim import SCENARIOS, SimulationError, default_start_ns, simulate
from infermeter.store import open_store

SAT = 1_740_787_200 * 10**9  # Saturday 2025-03-01 00:00 UTC
FRI = SAT + 6 * 86400 * 10**9  # Friday 2025-03-07 00:00 UTC
NS_H = 3600 * 10**9


def recommend_json(capsys, *args: str) -> tuple[list[dict], str]:
    assert main(["recommend", *args, "--json"]) == 0
    out = capsys.readouterr()
    return json.loads(out.out), out.err


@pytest.fixture(scope="module")
def tutoring(tmp_path_factory):
    db = str(tmp_path_factory.mktemp("sim") / "tutoring.duckdb")
    return db, simulate(db, "tutoring", hours=168, seed=7, start_ns=SAT)


@pytest.fixture(scope="module")
def steady(tmp_path_factory):
    db = str(tmp_path_factory.mktemp("sim") / "steady.duckdb")
    return db, simulate(db, "steady", hours=24, seed=7, start_ns=FRI)


@pytest.fixture(scope="module")
def batch_offline(tmp_path_factory):
    db = str(tmp_path_factory.mktemp("sim") / "batch.duckdb")
    return db, simulate(db, "batch-offline", hours=24, seed=7, start_ns=FRI)


def query(db: str, sql: str, *params):
    s = open_store(db, read_only=True)
    try:
        return s.cursor().execute(sql, list(params)).fetchall()
    finally:
        s.shutdown()


# -- acceptance ---------------------------------------------------------------------------------------


def test_tutoring_recommends_serverless_quantize_and_batch_saving_40_to_80_percent(tutoring, capsys):
    db, sim = tutoring
    recs, err = recommend_json(capsys, "--db", db)
    actions = [r["action"] for r in recs]
    assert {"serverless", "quantize", "batch"} <= set(actions), (actions, err)
    for r in recs:
        assert {"action", "title", "evidence", "savings_usd_month", "confidence", "how_to"} <= set(r)
        assert 0 <= r["confidence"] <= 1 and r["how_to"]
    current = recs[0]["evidence"]["current_monthly_usd"]
    assert current == pytest.approx(0.8048 * 730, abs=0.005)  # g6.xlarge on demand, 730 h, to the cent
    combined = sum(r["combined_savings_usd_month"] for r in recs)
    assert 0.40 <= combined / current <= 0.80, combined / current
    assert "together they save" in err


def test_tutoring_evidence_matches_what_the_simulator_generated(tutoring, capsys):
    db, sim = tutoring
    recs = {r["action"]: r for r in recommend_json(capsys, "--db", db)[0]}
    sl = recs["serverless"]["evidence"]
    assert sl["cold_starts_per_day"] == 1  # one warm stretch a school day
    assert 14.0 <= sl["warm_hours_per_day"] <= 15.5  # 07:00-22:00, plus the scale-down window
    assert sl["longest_idle_h"] >= 6.9  # Friday 00:00-07:00 (nights are idle)
    q = recs["quantize"]["evidence"]
    assert (q["model"], q["params_b"], q["bits_now"], q["gpu_now"]) == (SCENARIOS["tutoring"].model, 8.0, 16, "L4")
    b = recs["batch"]["evidence"]
    assert b["running_batch_max"] == SCENARIOS["tutoring"].max_num_seqs  # the server's limit the simulator used
    assert b["requests_waiting_p95"] >= 1
    # the window's request count is what the simulator wrote on Friday
    s = open_store(db, read_only=True)
    try:
        ev = evaluate(s.cursor())
        friday = s.cursor().execute("SELECT count(*) FROM requests WHERE start_time_ns >= ? AND start_time_ns < ?",
                                    [ev.since_ns, ev.until_ns]).fetchone()[0]
    finally:
        s.shutdown()
    assert ev.facts.requests == friday > 10_000
    assert ev.facts.until_ns == SAT + 7 * 86400 * 10**9 + 1  # the newest sample (Saturday 00:00) ends the window


def test_tutoring_over_a_week_sees_the_idle_weekend(tutoring, capsys):
    db, _ = tutoring
    week = {r["action"]: r for r in recommend_json(capsys, "--db", db, "--window", "7d")[0]}
    day = {r["action"]: r for r in recommend_json(capsys, "--db", db)[0]}
    assert week["serverless"]["evidence"]["longest_idle_h"] >= 48  # Friday 22:00 -> Monday 07:00
    assert week["serverless"]["savings_usd_month"] > day["serverless"]["savings_usd_month"]


def test_steady_recommends_commit_or_spot_and_not_serverless(steady, capsys):
    db, _ = steady
    recs, err = recommend_json(capsys, "--db", db)
    actions = {r["action"] for r in recs}
    assert "serverless" not in actions
    assert actions & {"commit", "spot"}, (actions, err)
    everything, _ = recommend_json(capsys, "--db", db, "--all")
    assert "serverless" not in {r["action"] for r in everything}  # not even superseded


def test_batch_offline_recommends_spot_over_commit(batch_offline, capsys):
    db, _ = batch_offline
    recs, _ = recommend_json(capsys, "--db", db, "--all")
    by = {r["action"]: r for r in recs}
    assert by["spot"]["status"] == "recommended"
    assert by["spot"]["evidence"]["offline_share"] == 1.0
    assert by["spot"]["evidence"]["offline_endpoints"] == ["/v1/batch/summarize"]
    assert by["commit"]["status"] == "superseded" and "superseded by spot" in by["commit"]["note"]


def test_empty_store_gives_no_recommendation_and_says_why(tmp_path, capsys):
    db = str(tmp_path / "empty.duckdb")
    open_store(db).shutdown()
    recs, err = recommend_json(capsys, "--db", db)
    assert recs == []
    assert "no requests or samples in the store" in err
    assert main(["recommend", "--db", db]) == 0
    assert "nothing to recommend" in capsys.readouterr().out


def test_too_little_data_gives_no_recommendation(tmp_path, capsys):
    db = str(tmp_path / "short.duckdb")
    simulate(db, "steady", hours=0.5, seed=1, start_ns=FRI)
    recs, err = recommend_json(capsys, "--db", db)
    assert recs == [] and "too little data" in err and "rather than a guess" in err


# -- the simulator --------------------------------------------------------------------------------------


def test_tutoring_traffic_follows_the_school_week(tutoring):
    db, sim = tutoring
    rows = dict(query(db, "SELECT dayofweek(to_timestamp(start_time_ns / 1e9)) AS d, count(*) FROM requests GROUP BY d"))
    assert set(rows) == {1, 2, 3, 4, 5}  # Monday..Friday; nothing on Saturday (6) or Sunday (0)
    hours = dict(query(db, "SELECT hour(to_timestamp(start_time_ns / 1e9)) AS h, count(*) FROM requests GROUP BY h"))
    assert min(hours) == 7 and max(hours) == 21  # idle nights
    assert hours[10] > hours[17] > hours[21]  # class time > homework > late evening
    assert sum(rows.values()) == sim.requests


def test_simulated_rows_look_like_the_agents(tutoring):
    db, sim = tutoring
    assert query(db, "SELECT DISTINCT source FROM requests") == [("simulator",)]
    metrics = {m for (m,) in query(db, "SELECT DISTINCT metric FROM server_samples")}
    normalised = {name for kind in KINDS.values() for name, _ in kind.values()}
    assert metrics <= normalised and {"requests_running", "requests_waiting", "kv_cache_usage"} <= metrics
    n, name, mem = query(db, "SELECT count(*), any_value(gpu_name), max(mem_total_bytes) FROM gpu_samples")[0]
    assert (n, name, mem) == (168 * 60 + 1, "NVIDIA L4", 24 * 1024**3)  # one per minute, both ends included
    assert query(db, "SELECT count(*) FROM host_samples")[0][0] == n
    assert query(db, "SELECT max(value) FROM server_samples WHERE metric = 'requests_running'")[0][0] == 8


def test_simulation_is_priced_by_the_cost_attribution_and_conserves_cost(tutoring):
    db, sim = tutoring
    instance, allocated, idle, usage = query(
        db, "SELECT sum(instance_cost_usd), sum(allocated_cost_usd), sum(idle_cost_usd), sum(usage_cost_usd) FROM cost_windows")[0]
    assert instance == Decimal("0.8048") * 168  # the box, every hour of the week
    assert usage + idle == instance
    priced, unpriced = query(db, "SELECT sum(cost_usd), count(*) FILTER (WHERE cost_usd IS NULL) FROM requests")[0]
    assert unpriced == 0 and priced == allocated
    assert query(db, "SELECT instance_type, pricing, hourly_usd FROM instance_prices")[0] == ("g6.xlarge", "on_demand", Decimal("0.8048"))
    assert sim.idle_cost_usd / sim.instance_cost_usd > Decimal("0.5")  # nights and the weekend


def test_same_seed_same_rows_other_seed_other_rows(tmp_path):
    a = simulate(str(tmp_path / "a.duckdb"), "tutoring", hours=24, seed=3, start_ns=FRI)
    b = simulate(str(tmp_path / "b.duckdb"), "tutoring", hours=24, seed=3, start_ns=FRI)
    c = simulate(str(tmp_path / "c.duckdb"), "tutoring", hours=24, seed=4, start_ns=FRI)
    assert (a.requests, a.input_tokens, a.output_tokens) == (b.requests, b.input_tokens, b.output_tokens)
    assert (a.requests, a.input_tokens) != (c.requests, c.input_tokens)


def test_scenario_parameters_can_be_overridden(tmp_path):
    base = simulate(str(tmp_path / "a.duckdb"), "tutoring", hours=24, seed=3, start_ns=FRI)
    more = simulate(str(tmp_path / "b.duckdb"), "tutoring", hours=24, seed=3, start_ns=FRI,
                    overrides={"users": 10_000, "instance": "g5.xlarge"})
    assert 1.8 < more.requests / base.requests < 2.2
    assert query(str(tmp_path / "b.duckdb"), "SELECT DISTINCT gpu_name FROM gpu_samples") == [("NVIDIA A10G",)]


def test_simulate_command_line(tmp_path, capsys):
    db = str(tmp_path / "cli.duckdb")
    assert main(["simulate", "batch-offline", "--db", db, "--hours", "2", "--seed", "5", "--start", "2025-03-07",
                 "--concurrency", "8"]) == 0
    out = capsys.readouterr().out
    assert "Fri 2025-03-07 00:00 -> Fri 2025-03-07 02:" in out and "next: infermeter recommend --db" in out
    assert query(db, "SELECT DISTINCT endpoint, tenant FROM requests") == [("/v1/batch/summarize", "etl-nightly")]
    # into a store that already has data: a clear error, nothing written twice
    assert main(["simulate", "batch-offline", "--db", db, "--hours", "1"]) == 1
    assert "already holds" in capsys.readouterr().err


def test_a_model_that_does_not_fit_is_refused_clearly(tmp_path, capsys):
    assert main(["simulate", "tutoring", "--db", str(tmp_path / "x.duckdb"), "--model-size", "70b", "--hours", "1"]) == 1
    err = capsys.readouterr().err
    assert "tutor-llama-3.1-70b" in err and "does not fit" in err
    with pytest.raises(SimulationError, match="no scenario"):
        simulate(str(tmp_path / "y.duckdb"), "nope")


def test_default_start_ends_the_run_on_the_last_saturday_midnight():
    now = SAT + 3 * 86400 * 10**9 + 5 * NS_H  # Tuesday 05:00
    assert default_start_ns(24, now) + 24 * NS_H == SAT
    assert default_start_ns(168, SAT) + 168 * NS_H == SAT  # on Saturday midnight itself

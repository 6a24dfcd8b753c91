"""Facts measured from a real store, stored history, the agent's recommender and its API view."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

import infermeter
from infermeter.agent.cli import main
from infermeter.records import CostSource, InferenceRecord, Source
from infermeter.rules import history
from infermeter.rules.facts import measure
from infermeter.sim import simulate
from infermeter.store import open_store

S = 10**9
T0 = 1_741_305_600 * S  # Friday 2025-03-07 00:00 UTC


def rec(start_s: float, dur_s: float, prompt_hash: int | None = None, endpoint: str = "/v1/chat") -> InferenceRecord:
    return InferenceRecord(start_time_ns=T0 + int(start_s * S), duration_s=dur_s, source=Source.SIMULATOR,
                           request_model="m-8b", input_tokens=100, output_tokens=10, endpoint=endpoint,
                           cost_source=CostSource.GPU_TIME, prompt_hash=prompt_hash)


def test_facts_measure_activity_islands_idle_gaps_and_repeats(db_path):
    store = open_store(db_path).start()
    # two bursts: [0, 30) s with two overlapping requests, and [3600, 3610) s; prompt 7 sent three times
    store.write_records([rec(0, 20, 7), rec(10, 20, 7), rec(3600, 10, 7), rec(3605, 2, 8)])
    store.submit("gpu_samples", [(T0 + k * 60 * S, "h", "GPU-0", 0, "NVIDIA L4", None, u, None, 20 * 2**30, 24 * 2**30,
                                  None, None, None, None, None) for k, u in enumerate([0.0, 50.0, 90.0, 0.0])])
    store.submit("server_samples", [(T0 + k * 60 * S, "h", "u", "vllm", "requests_running", v) for k, v in enumerate([2.0, 0.0, 1.0])])
    store.force_flush()
    f = measure(store.cursor(), T0, T0 + 7200 * S, keep_warm_s=300.0, busy_pct=5.0)
    store.shutdown()
    assert f.requests == 4 and f.input_tokens == 400
    assert f.busy_s == pytest.approx(30 + 10)  # the union of the requests, overlaps counted once
    assert f.busy_islands == 2 and f.cold_starts == 2  # the hour-long gap outlasts the 300 s keep-warm
    assert f.warm_s == pytest.approx(30 + 300 + 10 + 300)
    assert f.longest_idle_s == pytest.approx(7200 - 3610)  # the tail of the window
    assert (f.hashed_requests, f.repeat_requests) == (4, 2)
    assert f.load_max == pytest.approx(40 / 60)  # 40 request-seconds in the first minute
    assert (f.gpu_name, f.gpu_count, f.gpu_samples) == ("NVIDIA L4", 1, 4)
    assert f.gpu_mem_used_max_bytes == 20 * 2**30 and f.gpu_mem_total_bytes == 24 * 2**30
    assert f.gpu_util_busy_mean_pct == pytest.approx(70.0)  # samples at >= 5% only
    assert f.metric("requests_running", "max") == 2.0 and f.running_busy_mean == pytest.approx(1.5)
    assert f.hourly_usd is None  # no price row: the engine says so instead of guessing


def test_a_store_without_a_price_says_so(db_path, capsys):
    store = open_store(db_path).start()
    store.write_records([rec(k * 60, 5) for k in range(120)])
    store.force_flush()
    store.shutdown()
    assert main(["recommend", "--db", db_path]) == 0
    assert "no price for this deployment" in capsys.readouterr().out


@pytest.fixture
def simulated(db_path):
    simulate(db_path, "tutoring", hours=24, seed=2, start_ns=T0)
    return db_path


def test_recommend_save_keeps_a_history_of_runs(simulated, capsys):
    assert main(["recommend", "--db", simulated, "--save"]) == 0
    assert main(["recommend", "--db", simulated, "--save", "--history", "5"]) == 0
    out = capsys.readouterr().out
    assert out.count("together they save") >= 2 and "stored runs:" in out
    s = open_store(simulated, read_only=True)
    try:
        runs = history.runs(s.cursor(), 10)
        assert len(runs) == 2 and all(r["status"] == "ok" and r["recommendations"] >= 3 for r in runs)
        rows = history.run_recommendations(s.cursor(), runs[0]["run_id"])
    finally:
        s.shutdown()
    assert {r["action"] for r in rows} >= {"serverless", "quantize", "batch"}
    assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    assert rows[0]["evidence"]["queries"] and rows[0]["savings_usd_month"] > 0


def test_agent_serves_recommendations_and_stores_periodic_runs(simulated, capsys):
    agent = infermeter.configure(db=simulated, api="127.0.0.1:0", sampling=False, recommend_interval_s=0.05)
    rec = agent.recommender
    assert rec is not None and rec.wait_for_runs(2, timeout_s=30)
    agent.force_flush()
    with urllib.request.urlopen(agent.api_url + "/api/v1/recommendations?history=5") as resp:
        body = json.loads(resp.read())
    assert body["status"] == "ok" and body["source"].startswith("agent")
    assert {"serverless", "quantize", "batch"} <= {r["action"] for r in body["recommendations"]}
    assert len(body["history"]) >= 2 and body["history"][0]["status"] == "ok"
    recs = json.loads(_cli_json(capsys, "--agent", agent.api_url))
    assert {r["action"] for r in recs} == {r["action"] for r in body["recommendations"] if r["status"] == "recommended"}
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(agent.api_url + "/api/v1/recommendations?window=soon")
    assert e.value.code == 400
    infermeter.shutdown()


def _cli_json(capsys, *args: str) -> str:
    assert main(["recommend", *args, "--json"]) == 0
    return capsys.readouterr().out


def test_thresholds_are_listed_and_configurable(simulated, capsys, monkeypatch):
    assert main(["recommend", "--thresholds"]) == 0
    assert "serverless.max_warm_share" in capsys.readouterr().out
    monkeypatch.setenv("INFERMETER_RULES", "serverless.max_warm_share=0.3")
    recs = json.loads(_cli_json(capsys, "--db", simulated))
    assert "serverless" not in {r["action"] for r in recs}  # warm 63% of the day: above the stricter limit
    monkeypatch.setenv("INFERMETER_RULES", "serverless.bogus=1")
    assert main(["recommend", "--db", simulated]) == 1
    assert "serverless.bogus" in capsys.readouterr().err

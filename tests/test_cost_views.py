"""The costs view and the report's cost parts: through the agent API and offline on a file."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from decimal import Decimal

import pytest

import infermeter
from infermeter.agent.cli import main
from infermeter.config import Settings
from infermeter.cost.attribution import Attribution
from infermeter.cost.catalog import load_catalog
from infermeter.cost.pricing import PricingProcessor
from infermeter.cost.views import per, rates
from infermeter.records import InferenceRecord
from infermeter.store import open_store

S = 10**9


def _known_store(db_path, now_ns):
    """Two self-hosted models on a $3.60/h box for 4 windows, and one hosted call, ending at now."""
    t0 = now_ns - now_ns % S - 4 * S
    cat = load_catalog()
    store = open_store(db_path).start()
    clock = [t0]
    att = Attribution(store, Settings.load(environ={}, hourly_usd=3.6, region="us-east-1"), cat, host="h",
                      clock=lambda: clock[0])
    att.force_flush()
    store.submit("gpu_samples", [(t0 + k * S, "h", "GPU-0", 0, "L4", None, None, None, None, None, 72.0, None,
                                  100.0 + 72.0 * k, None, None) for k in range(5)])
    recs = PricingProcessor(cat)([
        InferenceRecord(start_time_ns=t0, duration_s=1.0, request_model="llama-3.1-8b-instruct", tenant="acme",
                        input_tokens=1000, output_tokens=1000),
        InferenceRecord(start_time_ns=t0 + S, duration_s=1.0, request_model="qwen2.5-7b-instruct", tenant="globex",
                        input_tokens=100, output_tokens=100),
        InferenceRecord(start_time_ns=t0 + 2 * S, duration_s=0.5, request_model="gpt-4o", provider="openai", tenant="acme",
                        input_tokens=1000, output_tokens=500),
        InferenceRecord(start_time_ns=t0 + 2 * S, duration_s=0.5, request_model="gpt-99", provider="openai", tenant="acme",
                        input_tokens=10, output_tokens=10),
    ])
    store.write_records(recs)
    att.consume(recs)
    clock[0] = t0 + 4 * S
    att.shutdown()
    store.shutdown()
    return t0


def test_report_json_adds_cost_keys_from_a_file(db_path, capsys):
    now = time.time_ns()
    _known_store(db_path, now)
    assert main(["report", "--db", db_path, "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    models = {m["model"]: m for m in rep["models"]}
    llama = models["llama-3.1-8b-instruct"]
    assert llama["cost_usd"] == 0.001  # its window of the $0.001/s box
    assert llama["cost_per_1k_requests_usd"] == 1.0 and llama["cost_per_1m_tokens_usd"] == 0.5
    assert llama["energy_j"] == 72.0  # counter delta of the window it filled
    assert models["gpt-4o"]["cost_usd"] == 0.0075 and models["gpt-4o"]["energy_j"] is None
    assert models["gpt-99"]["cost_usd"] is None and models["gpt-99"]["cost_per_1k_requests_usd"] is None
    assert rep["instance_cost_usd"] == 0.004
    assert rep["idle_cost_usd"] == 0.002  # windows 2 and 3: the hosted calls do not run on the box
    assert rep["unallocated_cost_usd"] == 0.002 and rep["idle_share"] == 0.5
    assert rep["cost_usd"] == pytest.approx(0.001 + 0.001 + 0.0075)
    assert "burn_rate_usd_per_hour" in rep and rep["unpriced_requests"] == 1


def test_report_text_shows_box_idle_and_rates(db_path, capsys):
    _known_store(db_path, time.time_ns())
    assert main(["report", "--db", db_path]) == 0
    out = capsys.readouterr().out
    assert "$/1k req" in out and "energy" in out and "72.0J" in out
    assert "box: $0.0040 for this window, idle $0.0020 (50% of it)" in out
    assert "burn rate now:" in out and "projected 30 days" in out


def test_costs_view_groups_and_rates_offline(db_path, capsys):
    now = time.time_ns()
    t0 = _known_store(db_path, now)
    assert main(["report", "--db", db_path, "--json"]) == 0  # (the file is free again)
    capsys.readouterr()
    from infermeter.agent.source import FileSource

    src = FileSource(db_path)
    try:
        by_tenant = src.view("costs", group_by="tenant", since="1h")
        by_model = src.view("costs", group_by="model")
        with pytest.raises(infermeter.InfermeterError, match="group_by"):
            src.view("costs", group_by="colour")
        cur = src.store.cursor()
        r = rates(cur, t0 + 4 * S)
        cur.close()
    finally:
        src.close()
    tenants = {g["tenant"]: g for g in by_tenant["groups"]}
    assert tenants["acme"]["cost_usd"] == Decimal("0.0085") and tenants["globex"]["cost_usd"] == Decimal("0.001")
    assert tenants["acme"]["cost_by_source_usd"] == {"catalog": Decimal("0.0075"), "gpu_time": Decimal("0.001")}
    assert tenants["acme"]["unpriced_requests"] == 1
    llama = next(g for g in by_model["groups"] if g["model"] == "llama-3.1-8b-instruct")
    assert llama["usage_cost_usd"] == Decimal("0.001") and llama["gpu_s"] == 1.0 and llama["gpu_s_per_request"] == 1.0
    assert llama["api_equivalent_usd"] == Decimal("0.00013")  # groq: 1000 x $0.05 + 1000 x $0.08 per 1M
    assert llama["co2e_g"] == pytest.approx(72 / 3.6e6 * 379.1 * 1.135)
    inst = by_model["instance"]
    assert inst["instance_cost_usd"] == Decimal("0.004") and inst["idle_share"] == 0.5
    assert inst["energy_j"] == 4 * 72.0 and inst["busy_share"] == 0.5
    # the box finalised a window just now, so it is running: its hourly price + hosted spend x 4
    assert r["burn_rate_usd_per_hour"] == Decimal("3.6") + Decimal("0.0075") * 4
    assert r["spend_today_usd"] <= Decimal("0.0115")  # all of it, unless midnight UTC fell inside the 4 s
    assert r["projected_30d_usd"] > 0 and r["projection_basis_h"] > 0


def test_costs_view_through_the_agent_api(db_path):
    agent = infermeter.configure(db=db_path, api="127.0.0.1:0", hourly_usd=7.2)
    f = infermeter.track(model="llama-3.1-8b", tenant="t1")(lambda: {"usage": {"prompt_tokens": 5, "completion_tokens": 5}})
    for _ in range(30):
        f()
    infermeter.force_flush()
    with urllib.request.urlopen(f"{agent.api_url}/api/v1/costs?since=1h&group_by=tenant", timeout=10) as resp:
        out = json.loads(resp.read())
    assert out["group_by"] == "tenant" and out["groups"][0]["tenant"] == "t1" and out["requests"] == 30
    assert out["pricing"]["pricing"]["by_source"]["gpu_time"] == 30
    assert out["running_boxes"][0]["hourly_usd"] == 7.2 and out["burn_rate_usd_per_hour"] == 7.2
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{agent.api_url}/api/v1/costs?since=soon", timeout=10)
    assert e.value.code == 400


def test_per_is_exact_and_none_when_unknown():
    assert per(Decimal("0.003"), 3, 1000) == Decimal("1")
    assert per(Decimal("1"), 3, 1) == Decimal("0.333333333")
    assert per(None, 3, 1000) is None and per(Decimal(1), 0, 1000) is None


@pytest.mark.parametrize("version", [2, 5])
def test_report_reads_a_store_from_before_costs_or_rollups(tmp_path, capsys, version):
    import duckdb

    from infermeter.store.migrations import all_migrations

    path = str(tmp_path / "old.duckdb")
    con = duckdb.connect(path)
    con.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, description VARCHAR, applied_at TIMESTAMP)")
    for m in all_migrations():
        if m.version <= version:
            for stmt in m.statements:
                con.execute(stmt)
            con.execute("INSERT INTO schema_version VALUES (?, ?, now())", [m.version, m.description])
    con.execute("INSERT INTO requests (start_time_ns, duration_s, operation, source, status, streaming, tokens_estimated, "
                "request_model, cost_usd, cost_source, request_id) VALUES (?, 0.5, 'chat', 'proxy', 'ok', false, false, "
                "'gpt-4o', 0.25, 'catalog', 1)", [time.time_ns() - S])
    con.close()
    assert main(["report", "--db", path, "--json"]) == 0  # opened read-only: not migrated, read as it is
    rep = json.loads(capsys.readouterr().out)
    assert rep["models"][0]["cost_usd"] == 0.25 and rep["requests"] == 1
    assert rep["models"][0]["latency_p50_s"] == pytest.approx(0.5, rel=0.03)
    if version < 3:
        assert rep["idle_cost_usd"] is None and rep["burn_rate_usd_per_hour"] is None

"""Fleet export: hive-partitioned Parquet per table, day, host and hour; idempotent; read back by
`infermeter report --from` (and by DuckDB / pyarrow as any engine would)."""

import json
import os
import time

import duckdb
import pyarrow.dataset as ds
import pytest

import infermeter
from infermeter.agent.cli import main
from infermeter.records import InferenceRecord
from tests.export_data import HOST, HOUR, T0, cost_db  # noqa: F401 - cost_db is a fixture


def files(d):
    return sorted(os.path.relpath(os.path.join(r, f), d) for r, _, fs in os.walk(d) for f in fs)


def report(capsys, *args):
    assert main(["report", "--json", *args]) == 0
    rep = json.loads(capsys.readouterr().out)
    return {m["model"]: m for m in rep["models"]}, rep


def test_layout_and_idempotence(cost_db, tmp_path, capsys):
    out = tmp_path / "fleet"
    assert main(["export", "--format", "parquet", "--db", cost_db, "--to", str(out), "--host", "web-1", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["rows"]["requests"] == 73 and first["rows"]["cost_windows"] == 120
    listing = files(out)
    assert "requests/date=2023-11-14/host=web-1/requests-22.parquet" in listing
    assert "requests/date=2023-11-14/host=web-1/requests-23.parquet" in listing
    assert f"cost_windows/date=2023-11-14/host={HOST}/cost_windows-23.parquet" in listing
    assert not [f for f in listing if ".tmp-" in f]
    contents = {f: (out / f).read_bytes() for f in listing}
    assert main(["export", "--format", "parquet", "--db", cost_db, "--to", str(out), "--host", "web-1"]) == 0
    capsys.readouterr()
    assert files(out) == listing  # the same hours rewrite the same files
    assert {f: (out / f).read_bytes() for f in listing} == contents
    # any engine reads it with hive partitioning: pyarrow and DuckDB here
    t = ds.dataset(str(out / "requests"), format="parquet", partitioning="hive").to_table()
    assert t.num_rows == 73 and set(t.column("host").to_pylist()) == {"web-1"}
    n = duckdb.connect().execute("SELECT count(*) FROM read_parquet($p, hive_partitioning = true)", {"p": f"{out}/request_costs/**/*.parquet"}).fetchone()[0]
    assert n == first["rows"]["request_costs"]


def test_report_from_parquet_matches_the_store_and_adds_up_hosts(cost_db, tmp_path, capsys):
    local, _ = report(capsys, "--db", cost_db)
    out = tmp_path / "fleet"
    for host in ("web-1", "web-2"):  # two hosts' exports in one place
        assert main(["export", "--format", "parquet", "--db", cost_db, "--to", str(out), "--host", host]) == 0
    capsys.readouterr()
    one, _ = report(capsys, "--from", str(out / "requests" / "**" / "host=web-1" / "*.parquet"))
    assert {m: (r["requests"], r["input_tokens"], r["cost_usd"]) for m, r in one.items()} == \
           {m: (r["requests"], r["input_tokens"], r["cost_usd"]) for m, r in local.items()}
    fleet, rep = report(capsys, "--from", f"{out}/**/*.parquet")
    assert fleet["gpt-4o"]["requests"] == 2 * local["gpt-4o"]["requests"]
    assert fleet["gpt-4o"]["cost_usd"] == pytest.approx(2 * local["gpt-4o"]["cost_usd"])
    assert fleet["mystery-model"]["unpriced_requests"] == 2
    assert "Parquet files" in rep["source"]


def test_export_through_a_running_agent(agent, tmp_path, capsys):
    hour_ago = (time.time_ns() // HOUR - 1) * HOUR
    for i in range(4):
        agent.pipeline.submit_record(InferenceRecord(start_time_ns=hour_ago + i * 10**9, duration_s=0.5, request_model="gpt-4o",
                                                     provider="openai", input_tokens=10, output_tokens=5))
    agent.pipeline.submit_record(InferenceRecord(start_time_ns=time.time_ns(), duration_s=0.5, request_model="this-hour"))
    assert infermeter.force_flush(10)
    out = tmp_path / "fleet"
    assert main(["export", "--format", "parquet", "--agent", agent.api_url, "--to", str(out), "--since", "3h", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"]["requests"] == 4  # whole hours only: this hour's request waits for the next run
    got, _ = report(capsys, "--from", f"{out}/**/*.parquet")
    assert got["gpt-4o"]["requests"] == 4 and "this-hour" not in got


def test_bad_inputs_are_clear_errors(cost_db, tmp_path, capsys):
    assert main(["report", "--from", str(tmp_path / "nothing" / "**" / "*.parquet")]) == 1
    assert "no infermeter fleet Parquet files match" in capsys.readouterr().err
    assert main(["export", "--format", "parquet", "--db", cost_db]) == 1
    assert "needs --to DIR" in capsys.readouterr().err

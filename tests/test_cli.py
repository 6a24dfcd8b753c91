import json
import subprocess
import sys
import time

import pytest

import infermeter
from infermeter.agent.cli import main
from tests.conftest import run_python

REQUIRED_MODEL_KEYS = {"model", "requests", "errors", "input_tokens", "output_tokens", "latency_p50_s",
                       "latency_p95_s", "ttft_p50_s", "cost_usd", "unpriced_requests"}


def _fill(db_path, n=5):
    agent = infermeter.configure(db=db_path, api="off")

    @infermeter.track(model="a")
    def a(i):
        return {"usage": {"prompt_tokens": 10, "completion_tokens": i}}

    @infermeter.track(model="b")
    def b():
        raise OSError("down")

    for i in range(n):
        a(i)
    with pytest.raises(OSError):
        b()
    infermeter.shutdown()
    return agent


def test_report_json_from_file(db_path, capsys):
    _fill(db_path)
    assert main(["report", "--db", db_path, "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    models = {m["model"]: m for m in rep["models"]}
    assert REQUIRED_MODEL_KEYS <= set(models["a"])
    assert (models["a"]["requests"], models["a"]["input_tokens"], models["a"]["output_tokens"]) == (5, 50, 10)
    assert models["a"]["cost_usd"] is None and models["a"]["unpriced_requests"] == 5
    assert (models["b"]["errors"], models["b"]["input_tokens"]) == (1, None)
    assert rep["source"].startswith("file ")


def test_report_text(db_path, capsys):
    _fill(db_path)
    assert main(["report", "--db", db_path, "--since", "1h"]) == 0
    out = capsys.readouterr().out
    assert "unpriced" in out and "a " in out
    assert main(["report", "--db", db_path, "--since", "soon"]) == 1
    assert "since" in capsys.readouterr().err


def test_report_reads_through_the_agent_that_holds_the_file(db_path):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, infermeter\n"
         "infermeter.configure(db=sys.argv[1], api='127.0.0.1:0')\n"
         "f = infermeter.track(model='held')(lambda: {'usage': {'prompt_tokens': 1, 'completion_tokens': 2}})\n"
         "for _ in range(3): f()\n"
         "infermeter.force_flush()\n"
         "print('ready', flush=True); sys.stdin.read()", db_path],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        r = subprocess.run([sys.executable, "-m", "infermeter.agent.cli", "report", "--db", db_path, "--json"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert f"held by agent pid {holder.pid}" in r.stderr
        rep = json.loads(r.stdout)
        assert rep["models"][0]["model"] == "held" and rep["models"][0]["requests"] == 3
        assert rep["source"].startswith("agent http://127.0.0.1:")
    finally:
        holder.stdin.close()
        holder.wait(30)


def test_report_missing_file_and_dead_agent(tmp_path, capsys):
    assert main(["report", "--db", str(tmp_path / "none.duckdb")]) == 1
    assert "no store at" in capsys.readouterr().err
    assert main(["report", "--agent", "http://127.0.0.1:9"]) == 1
    assert "no agent answering" in capsys.readouterr().err


def test_config_command_lists_every_setting(capsys):
    assert main(["config", "--markdown"]) == 0
    out = capsys.readouterr().out
    assert "`INFERMETER_DB`" in out and "`INFERMETER_API`" in out


def test_demo_runs_and_reports(tmp_path):
    db = str(tmp_path / "demo.duckdb")
    r = subprocess.run([sys.executable, "-m", "infermeter.agent.cli", "demo", "--db", db, "--duration", "1.5",
                        "--api", "127.0.0.1:0", "--json"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "SIMULATED" in r.stderr
    rep = json.loads(r.stdout)
    assert rep["requests"] > 10
    assert {m["model"] for m in rep["models"]} >= {"sim-llama-3.1-8b", "sim-qwen2.5-32b", "sim-bge-embed"}


def test_every_call_is_stored_when_the_process_exits_right_after(tmp_path):
    db = str(tmp_path / "exit.duckdb")
    r = run_python(
        "import infermeter\n"
        "f = infermeter.track(model='m')(lambda i: i)\n"
        "for i in range(20000): f(i)\n",
        env={"INFERMETER_DB": db, "INFERMETER_API": "off"},
    )
    assert r.returncode == 0, r.stderr
    import duckdb

    con = duckdb.connect(db, read_only=True)
    assert con.execute("SELECT count(*) FROM requests").fetchone()[0] == 20000
    con.close()


def test_a_command_builds_only_its_own_arguments():
    """`infermeter prices` must not import the simulator (simulate's arguments list its scenarios)."""
    out = run_python("import sys\nfrom infermeter.agent.cli import main\n"
                     "rc = main(['-v', 'prices', 'g6.xlarge'])\n"
                     "print(rc, 'infermeter.sim' in sys.modules)")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "0 False"
    out = run_python("import sys\nfrom infermeter.agent.cli import main\n"
                     "main(['simulate', 'tutoring', '--help'])")
    assert out.returncode == 0 and "tutoring" in out.stdout and "--hours" in out.stdout, out.stderr

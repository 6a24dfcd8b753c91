"""``infermeter proxy`` as a process: start, serve, stop on SIGTERM with everything stored; bad settings."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import duckdb
import openai
import pytest

from infermeter.agent.cli import main
from tests.proxy_helpers import upstream  # noqa: F401 - fixtures


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("INFERMETER_", "OTEL_"))}


def test_proxy_command_serves_and_flushes_on_sigterm(upstream, tmp_path):
    db = str(tmp_path / "side.duckdb")
    proc = subprocess.Popen([sys.executable, "-m", "infermeter.agent.cli", "proxy", "--upstream", upstream.url,
                             "--listen", "127.0.0.1:0", "--db", db, "--api", "off", "--hourly-usd", "3.6"],
                            stderr=subprocess.PIPE, text=True, env=_env())
    try:
        url = None
        for line in proc.stderr:
            m = re.search(r"proxy listening on (http://\S+)", line)
            if m:
                url = m.group(1)
                break
        assert url, "the proxy never said where it listens"
        c = openai.OpenAI(base_url=url + "/v1", api_key="sk-x", max_retries=0)
        for _ in range(3):
            c.chat.completions.create(model="cli-model", messages=[{"role": "user", "content": "a b"}])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    con = duckdb.connect(db, read_only=True)
    rows = con.execute("SELECT request_model, input_tokens, output_tokens, source FROM requests").fetchall()
    priced = con.execute("SELECT count(*) FROM requests WHERE cost_source = 'gpu_time' AND cost_usd > 0").fetchone()[0]
    hourly = con.execute("SELECT DISTINCT hourly_usd FROM instance_prices").fetchall()
    con.close()
    assert rows == [("cli-model", 2, 5, "proxy")] * 3
    # --hourly-usd prices the box; at shutdown the window in progress is billed, so all 3 have a cost
    assert priced == 3 and [float(h) for (h,) in hourly] == [3.6]


def test_proxy_command_needs_an_upstream(capsys):
    assert main(["proxy", "--api", "off"]) == 1
    assert "upstream" in capsys.readouterr().err


def test_bad_route_names_the_setting(capsys):
    assert main(["proxy", "--upstream", "http://127.0.0.1:9", "--route", "/x=grpc", "--api", "off"]) == 1
    err = capsys.readouterr().err
    assert "proxy_routes" in err and "grpc" in err


def test_bad_upstream_url(capsys):
    assert main(["proxy", "--upstream", "127.0.0.1:8000", "--api", "off"]) == 1
    assert "http(s) URL" in capsys.readouterr().err


def test_listen_address_taken_is_a_clear_error(upstream, tmp_path, capsys):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    try:
        port = s.getsockname()[1]
        rc = main(["proxy", "--upstream", upstream.url, "--listen", f"127.0.0.1:{port}", "--api", "off",
                   "--db", str(tmp_path / "x.duckdb")])
    finally:
        s.close()
    assert rc == 1
    assert "cannot listen" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["/a=openai,/b/*=tgi", " /a = OpenAI "])
def test_routes_setting_parses(value):
    from infermeter.config import Settings

    s = Settings.load(environ={"INFERMETER_PROXY_ROUTES": value})
    assert s.proxy_routes[0] == ("/a", "openai")


def test_routes_setting_rejects_junk():
    from infermeter.config import Settings
    from infermeter.errors import ConfigError

    with pytest.raises(ConfigError, match="INFERMETER_PROXY_ROUTES"):
        Settings.load(environ={"INFERMETER_PROXY_ROUTES": "no-equals-sign"})
    with pytest.raises(ConfigError, match="start with"):
        Settings.load(environ={"INFERMETER_PROXY_ROUTES": "x=openai"})



def test_serve_tunes_the_collector_and_the_gil_while_it_serves_and_restores_them(upstream, tmp_path):
    import gc
    import threading

    from infermeter.agent.proxy import serve
    from infermeter.config import Settings

    settings = Settings.load(environ={}, db=str(tmp_path / "gc.duckdb"), api="off", sampling=False,
                             upstream=upstream.url, listen="127.0.0.1:0")
    import sys

    before = gc.get_threshold()
    switch = sys.getswitchinterval()
    ready, stop, seen = threading.Event(), threading.Event(), {}
    t = threading.Thread(target=serve, args=(settings,), kwargs={"ready": ready, "stop": stop, "announce": False})
    t.start()
    try:
        assert ready.wait(30)
        seen["threshold"], seen["frozen"] = gc.get_threshold(), gc.get_freeze_count()
        seen["switch"] = sys.getswitchinterval()
    finally:
        stop.set()
        t.join(30)
    expected = (10_000, *before[1:]) if before[0] == 700 else before  # a threshold someone set is kept
    assert seen["threshold"] == expected and seen["frozen"] > 10_000  # start-up's objects are out of the way
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
    assert seen["switch"] == 0.001 and sys.getswitchinterval() == switch  # GIL hand-offs every 1 ms while serving

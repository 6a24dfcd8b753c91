"""infermeter top, driven by Textual's Pilot against a real agent API serving a fixed store."""

from __future__ import annotations

import os
import time

import pytest

import infermeter
from infermeter.agent.api import ApiServer
from infermeter.agent.source import AgentSource, FileSource
from infermeter.tui.app import TopApp
from infermeter.tui.gpus import GpuPanel, Spark, spark_line
from infermeter.tui.screens import DetailScreen, FilterScreen, HelpScreen
from infermeter.tui.tables import TablePanel
from tests.tui_data import (  # noqa: F401 - fixtures
    COSTS, GPU_UUIDS, RECOMMENDATIONS, T0_NS, filled, fixed_records, fixed_source, make_app, serve_fixed, utc,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


@pytest.fixture
def anyio_backend():
    return "asyncio"


def panel(app: TopApp, name: str) -> TablePanel:
    return app.screen_stack[0].query_one(f"#{name}", TablePanel)


def models(app: TopApp) -> list[str]:
    return [r["model"] for r in panel(app, "models").rows]


def cell(p: TablePanel, row: int, key: str) -> str:
    return p.table.get_cell_at((row, [c.key for c in p.columns].index(key))).plain


def text_of(app: TopApp, selector: str) -> str:
    return str(app.screen_stack[0].query_one(selector).render())


async def started(app: TopApp, pilot) -> None:
    """The first poll is on screen, and the recommendations (asked on their own thread) too."""
    await app.wait_until(lambda: app.polls >= 1 and not app.snapshot.get("recommendations").pending)
    await pilot.pause()


async def press_and_poll(app: TopApp, pilot, *keys: str) -> None:
    n = app.polls
    await pilot.press(*keys)
    await app.wait_until(lambda: app.polls > n)
    await pilot.pause()


# -- what the panels show --------------------------------------------------------------------------
async def test_models_table_rates_and_unit_costs(filled):
    filled.api.routes.pop(("GET", "/api/v1/costs"), None)  # the header falls back to the models' spend
    app = make_app(filled)
    async with app.run_test(size=(100, 30)) as pilot:
        await started(app, pilot)
        p = panel(app, "models")
        assert models(app) == ["qwen2.5-32b", "llama-3.1-8b", "bge-embed"]  # by cost, unpriced last
        qwen = p.rows[0]
        assert qwen["requests"] == 30
        # rates over the 1h window (the store has data from 20h before T0)
        assert qwen["requests_per_s"] == pytest.approx(30 / 3600)
        assert cell(p, 0, "usd_per_1k_requests") == "$3.10"
        assert cell(p, 0, "share_of_spend") == "89%"
        assert cell(p, 2, "usd_per_1k_requests") == "unpriced"
        assert cell(p, 2, "unpriced_requests") == "30"
        assert cell(p, 1, "latency_p50_s").endswith("ms")
        top = text_of(app, "#topbar")
        assert "window 1h" in top and "as of 15:06:40" in top and "agent http://127.0.0.1:9187" in top
        cost = text_of(app, "#costbar")
        assert "spend 1h $0.105 (30 unpriced)" in cost


async def test_header_from_the_cost_view(filled):
    serve_fixed(filled, "costs", COSTS)
    app = make_app(filled)
    async with app.run_test(size=(100, 30)) as pilot:
        await started(app, pilot)
        cost = text_of(app, "#costbar")
        assert "burn $3.20/h" in cost and "today $41.20" in cost and "30d ≈ $2,304" in cost and "idle 34%" in cost


async def test_tenants_and_tail(filled):
    app = make_app(filled)
    async with app.run_test(size=(100, 30)) as pilot:
        await started(app, pilot)
        tenants = {r["tenant"]: r for r in panel(app, "tenants").rows}
        assert set(tenants) == {"acme", "globex", "initech", "(none)"}
        assert sum(t["requests"] for t in tenants.values()) == 90
        tail = panel(app, "requests")
        assert [r["request_id"] for r in tail.rows[:3]] == [1000, 1001, 1002]  # newest first
        assert cell(tail, 0, "start_time_ns") == "15:06:38"
        assert cell(tail, 2, "cost_usd") == "unpriced"
        assert len(tail.rows) == 100


async def test_empty_store_explains_itself(agent, utc):
    app = make_app(agent)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(app, pilot)
        note = text_of(app, "#models .note")
        assert "No requests in the last 1h" in note and "@infermeter.track" in note
        assert not panel(app, "models").table.display
        assert "No requests recorded yet" in text_of(app, "#requests .note")


async def test_views_the_agent_lacks_or_fails_read_as_such(filled):
    serve_fixed(filled, "tenants", status=500)
    del filled.api.routes[("GET", "/api/v1/gpus")]  # an agent without the collectors' views
    app = make_app(filled)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(app, pilot)
        assert "gpus" not in app.poller.available
        assert "not available from this agent (it serves no 'gpus' view)" in text_of(app, "#gpus .note")
        assert "Could not load per-tenant figures" in text_of(app, "#tenants .note")
        assert "500" in text_of(app, "#tenants .note")
        assert panel(app, "models").rows  # the others still show


async def test_gpu_panel_sparklines_from_stored_samples(filled):
    app = make_app(filled)
    async with app.run_test(size=(100, 30)) as pilot:
        await started(app, pilot)
        await pilot.press("3")
        await pilot.pause()
        gp = app.screen_stack[0].query_one("#gpus", GpuPanel)
        assert [d.key for d in gp.devices] == list(GPU_UUIDS)
        card = gp.query_one(f"#gpu-{GPU_UUIDS[0]}")
        util, mem, power = card.query(Spark)
        assert util.values[-1] == 87.0 and min(util.values) == 20.0  # busy for the last half hour of the 1h window
        assert len(util.values) >= 30 and util.top == 100.0
        assert mem.values[-1] == pytest.approx(18 / 24 * 100)
        assert max(power.values) == 61.0 and power.top == 72.0
        line = str(util.render())
        assert len(line) == util.size.width and line.endswith("▇") and "▂" in line  # 87% and 20% of 100
        assert "18.0/24.0G" in str(card.query_one(".mem .metric-value").render())
        assert "87%" in str(card.query_one(".util .metric-value").render())
        assert "GPU 1 · NVIDIA L4" in str(gp.query_one(f"#gpu-{GPU_UUIDS[1]} .gpu-title").render())
        await press_and_poll(app, pilot, "W")  # 5m: only the busy part
        assert min(gp.devices[0].util_history) == 87.0


async def test_no_gpu_says_so(agent):
    app = TopApp(fixed_source(agent), interval_s=60)  # the live clock: "latest" comes from the sampler
    async with app.run_test(size=(80, 24)) as pilot:
        await started(app, pilot)
        await pilot.press("3")
        await pilot.pause()
        assert "No GPU seen on the agent's host" in text_of(app, "#gpus .note")


def test_spark_line_scale_and_buckets():
    assert spark_line((0.0, 50.0, 100.0), 100.0, 5) == "  ▁▅█"
    assert spark_line((12.0,) * 4, 100.0, 4) == "▂▂▂▂"  # flat and low reads low
    assert spark_line(tuple(float(i % 2) * 100 for i in range(8)), 100.0, 4) == "▅▅▅▅"  # averaged in pairs
    assert spark_line((), 100.0, 4) == "" and spark_line((5.0,), 0.0, 4) == ""


# -- keys ------------------------------------------------------------------------------------------
async def test_w_switches_window(filled):
    app = make_app(filled)
    async with app.run_test(size=(100, 30)) as pilot:
        await started(app, pilot)
        assert panel(app, "models").rows[0]["requests"] == 30
        await press_and_poll(app, pilot, "w")
        assert app.window == "24h"
        assert sum(r["requests"] for r in panel(app, "models").rows) == 100
        await press_and_poll(app, pilot, "w")
        assert app.window == "7d"
        await press_and_poll(app, pilot, "w")
        assert app.window == "5m"
        assert sum(r["requests"] for r in panel(app, "models").rows) == 60
        assert panel(app, "models").rows[0]["requests_per_s"] == pytest.approx(20 / 300)
        assert "window 5m" in text_of(app, "#topbar")
        await press_and_poll(app, pilot, "W")
        assert app.window == "7d"


async def test_s_sorts_and_S_reverses(filled):
    app = make_app(filled)
    async with app.run_test(size=(100, 30)) as pilot:
        await started(app, pilot)
        p = panel(app, "models")
        assert p.sort_label() == "cost ↓"
        await pilot.press("s")  # cost -> requests
        await pilot.press("s")  # -> errors
        await pilot.pause()
        assert p.sort_label() == "errors ↓"
        errors = [r["errors"] for r in p.rows]
        assert errors == sorted(errors, reverse=True)
        await pilot.press("s")  # wraps to model (text sorts A to Z)
        await pilot.pause()
        assert models(app) == ["bge-embed", "llama-3.1-8b", "qwen2.5-32b"]
        await pilot.press("S")
        await pilot.pause()
        assert models(app) == ["qwen2.5-32b", "llama-3.1-8b", "bge-embed"]
        assert p.border_subtitle == "sort: model ↓"


async def test_f_filters_by_model_and_tenant_and_x_clears(filled):
    app = make_app(filled)
    async with app.run_test(size=(100, 30)) as pilot:
        await started(app, pilot)
        await pilot.press("f")
        await pilot.pause()
        assert isinstance(app.screen, FilterScreen)
        await pilot.press(*"QWEN", "tab", *"acme")
        await press_and_poll(app, pilot, "enter")
        assert (app.model_filter, app.tenant_filter) == ("QWEN", "acme")
        assert models(app) == ["qwen2.5-32b"]
        assert {r["tenant"] for r in panel(app, "tenants").rows} == {"acme"}
        assert {(r["model"], r["tenant"]) for r in panel(app, "requests").rows} == {("qwen2.5-32b", "acme")}
        assert "filter model~'QWEN' tenant~'acme'" in text_of(app, "#topbar")
        await press_and_poll(app, pilot, "x")
        assert (app.model_filter, app.tenant_filter) == (None, None)
        assert len(models(app)) == 3


async def test_filter_that_matches_nothing_says_so(filled):
    app = make_app(filled)
    async with app.run_test(size=(100, 30)) as pilot:
        await started(app, pilot)
        await pilot.press("f")
        await pilot.pause()
        await pilot.press(*"mistral")
        await press_and_poll(app, pilot, "enter")
        assert "matching model ~ 'mistral'" in text_of(app, "#models .note") and "x to clear" in text_of(app, "#models .note")


async def test_escape_leaves_filters_alone(filled):
    app = make_app(filled)
    async with app.run_test(size=(100, 30)) as pilot:
        await started(app, pilot)
        await pilot.press("f", *"llama", "escape")
        await pilot.pause()
        assert not isinstance(app.screen, FilterScreen)
        assert app.model_filter is None


async def test_enter_on_a_model_or_tenant_filters_to_it(filled):
    app = make_app(filled)
    async with app.run_test(size=(100, 30)) as pilot:
        await started(app, pilot)
        await pilot.press("down")  # llama-3.1-8b, the second by cost
        await press_and_poll(app, pilot, "enter")
        assert app.model_filter == "llama-3.1-8b"
        assert models(app) == ["llama-3.1-8b"]
        await pilot.press("2")
        await pilot.pause()
        chosen = panel(app, "tenants").selected_row()["tenant"]  # the cursor stays on the tenant it was on
        assert chosen != "(none)"
        await press_and_poll(app, pilot, "enter")
        assert app.tenant_filter == chosen
        assert {r["tenant"] for r in panel(app, "requests").rows} == {chosen}


async def test_number_keys_and_tab_switch_panels(filled):
    app = make_app(filled)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(app, pilot)
        screen = app.screen_stack[0]
        for key, name in (("2", "tenants"), ("3", "gpus"), ("4", "recommendations"), ("5", "requests"), ("1", "models")):
            await pilot.press(key)
            await pilot.pause()
            assert app.current_panel == name
            visible = [p for p in ("models", "tenants", "gpus", "recommendations", "requests") if screen.query_one(f"#{p}").display]
            assert [p for p in visible if screen.query_one(f"#{p}").region.height] == [name]  # one at a time at 80x24
        await pilot.press("tab")
        await pilot.pause()
        assert app.current_panel == "tenants"
        await pilot.press("shift+tab", "shift+tab")
        await pilot.pause()
        assert app.current_panel == "requests"


async def test_large_terminal_shows_every_panel(filled):
    app = make_app(filled)
    async with app.run_test(size=(160, 48)) as pilot:
        await started(app, pilot)
        screen = app.screen_stack[0]
        regions = {p: screen.query_one(f"#{p}").region for p in ("models", "tenants", "gpus", "recommendations", "requests")}
        assert all(r.height >= 8 for r in regions.values())
        assert regions["models"].width == 160
        assert regions["tenants"].y == regions["gpus"].y and regions["tenants"].x < regions["gpus"].x


async def test_enter_opens_a_recommendation_with_its_evidence(filled):
    serve_fixed(filled, "recommendations", RECOMMENDATIONS)
    app = make_app(filled)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(app, pilot)
        await pilot.press("4")
        await pilot.pause()
        recs = panel(app, "recommendations")
        assert cell(recs, 0, "savings_usd_month") == "$612.50" and cell(recs, 0, "confidence") == "90%"
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, DetailScreen)
        body = app.screen.body.plain
        assert "Saves about $612.50 a month" in body and "Confidence: 90%" in body
        assert "gpu_1_mean_utilization_pct: 12.0" in body and "Move the bge-embed replicas" in body
        assert "- samples.gpu_history" in body and "- traffic stays as in the last 24h" in body
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, DetailScreen)
        await pilot.press("down", "enter")
        await pilot.pause()
        body = app.screen.body.plain
        assert "share_of_qwen_requests_under_200_tokens: 0.71" in body
        assert "Saves about $95.00 a month ($80.00 together with the others, counted once)" in body


async def test_recommendations_from_the_rules_engine_say_why_there_are_none(filled):
    app = make_app(filled)  # the real view: the fixed store's requests are long before the engine's "now"
    async with app.run_test(size=(80, 24)) as pilot:
        await started(app, pilot)
        assert "recommendations" in app.poller.available
        message = app.snapshot.get("recommendations").data["message"]
        assert message  # the engine says why it has nothing; the panel passes that on
        assert text_of(app, "#recommendations .note").startswith(f"No recommendations: {message.rstrip('.')}.")


async def test_enter_on_a_request_shows_its_fields(filled):
    app = make_app(filled)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(app, pilot)
        await pilot.press("5", "enter")
        await pilot.pause()
        assert isinstance(app.screen, DetailScreen)
        assert "request_id  1000" in app.screen.body.plain and "never stored" in app.screen.body.plain


async def test_help_quit_theme_and_refresh(filled):
    app = make_app(filled)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(app, pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)
        dark = app.current_theme.dark
        await pilot.press("t")
        await pilot.pause()
        assert app.current_theme.dark is not dark
        filled.store.write_records(fixed_records()[:1])
        assert filled.store.force_flush()
        await press_and_poll(app, pilot, "r")
        assert panel(app, "models").rows[0]["requests"] == 30  # llama +1 is still cheaper than qwen
        assert sum(r["requests"] for r in panel(app, "models").rows) == 91
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0


async def test_sort_on_the_gpu_panel_says_there_is_nothing_to_sort(filled):
    app = make_app(filled)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(app, pilot)
        await pilot.press("3", "s")
        await pilot.pause()
        assert any("Nothing to sort" in str(n.message) for n in app._notifications)


# -- losing the agent --------------------------------------------------------------------------------
async def test_lost_agent_banner_then_reconnect(filled):
    app = make_app(filled)
    host, port = filled.api.host, filled.api.port
    async with app.run_test(size=(80, 24)) as pilot:
        await started(app, pilot)
        assert not app.screen_stack[0].query_one("#banner").display
        filled.api.shutdown()
        lost = app.lost_polls
        await pilot.press("r")
        await app.wait_until(lambda: app.lost_polls > lost)
        await pilot.pause()
        banner = app.screen_stack[0].query_one("#banner")
        assert banner.display and "Lost contact with agent" in str(banner.render())
        assert "Connection refused. Showing data from 15:06:40; retrying" in str(banner.render())
        assert models(app) == ["qwen2.5-32b", "llama-3.1-8b", "bge-embed"]  # the last data stays
        again = ApiServer(host, port)  # the agent comes back on the same address
        filled._add_routes(again)
        again.start()
        filled.api = again
        try:
            n = app.polls
            app.refresh_data()
            await app.wait_until(lambda: app.polls > n)
            await pilot.pause()
            assert not banner.display and app.lost is None
            assert any("Reconnected" in str(n.message) for n in app._notifications)
        finally:
            again.shutdown()


async def test_no_agent_yet_waits_with_a_banner():
    with socket_on_port_zero() as port:
        pass  # a port nobody listens on now
    app = TopApp(AgentSource(f"127.0.0.1:{port}", timeout_s=1.0), interval_s=0.2)
    async with app.run_test(size=(80, 24)) as pilot:
        await app.wait_until(lambda: app.lost_polls >= 2)  # it keeps trying on its own timer
        await pilot.pause()
        assert "Waiting for agent" in text_of(app, "#models .note")
        assert "Lost contact" in text_of(app, "#banner")


# -- the other source and the command ----------------------------------------------------------------
async def test_reads_a_store_file(db_path, utc):
    a = infermeter.configure(db=db_path, api="off")
    a.store.write_records(fixed_records())
    assert a.store.force_flush()
    infermeter.shutdown()
    src = FileSource(db_path)
    app = TopApp(src, clock_ns=lambda: T0_NS, interval_s=60)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await started(app, pilot)
            assert models(app) == ["qwen2.5-32b", "llama-3.1-8b", "bge-embed"]
            assert "file " in text_of(app, "#topbar")
    finally:
        src.close()


async def test_self_hosted_cost_reads_pending_until_its_windows_are_final(db_path, utc):
    """A self-hosted request has no cost until attribution finalises its windows: the views say
    'pending', not 'unpriced'; once its windows are final and still gave it no cost (a box with
    no price), it is unpriced."""
    from infermeter.cost.windows import WindowPrice, window_row
    from infermeter.records import InferenceRecord
    from infermeter.store import open_store

    s = 10**9
    local = [InferenceRecord(start_time_ns=T0_NS - (10 + i) * s, duration_s=0.5, request_model="local-llm", provider="vllm",
                             cost_currency="USD", cost_source="gpu_time", input_tokens=10, output_tokens=5,
                             request_id=5000 + i) for i in range(5)]
    store = open_store(db_path).start()
    store.write_records(local + fixed_records())
    assert store.force_flush()
    store.shutdown()

    async def shown() -> tuple[str, str, int]:
        src = FileSource(db_path)
        app = TopApp(src, clock_ns=lambda: T0_NS, interval_s=60)
        try:
            async with app.run_test(size=(100, 30)) as pilot:
                await started(app, pilot)
                p = panel(app, "models")
                i = models(app).index("local-llm")
                return cell(p, i, "cost_usd"), cell(p, i, "unpriced_requests"), p.rows[i]["pending_requests"]
        finally:
            src.close()

    assert await shown() == ("pending", "0", 5)
    store = open_store(db_path).start()  # the windows are final; the box had no price
    store.submit("cost_windows", [window_row("box", T0_NS - 60 * s, T0_NS, WindowPrice(None, None, None, None), None,
                                             0, 0, "time", T0_NS)])
    assert store.force_flush()
    store.shutdown()
    assert await shown() == ("unpriced", "5", 0)


def test_spend_line_without_a_cost_view_says_what_is_pending():
    from infermeter.tui.fetch import Query, Snapshot, ViewResult
    from infermeter.tui.summary import cost_line

    def line(**models) -> str:
        snap = Snapshot(Query(), {"models": ViewResult(data=models)})
        return cost_line(snap).plain

    assert line(cost_usd=None, unpriced_requests=0, pending_requests=4).startswith("spend 1h - (4 pending)")
    assert "$0" not in line(cost_usd=None, unpriced_requests=0, pending_requests=4)
    assert line(cost_usd=None, unpriced_requests=2, pending_requests=0).startswith("spend 1h nothing priced (2 unpriced)")
    assert "(3 unpriced) (1 pending)" in line(cost_usd=1.5, unpriced_requests=3, pending_requests=1)


def test_top_needs_a_terminal(capsys):
    from infermeter.agent.cli import main

    assert main(["top", "--agent", "http://127.0.0.1:9"]) == 1
    assert "needs a terminal" in capsys.readouterr().err


def test_default_source_is_the_local_agent_when_one_answers(agent, monkeypatch):
    from infermeter.agent.commands.top import default_source

    monkeypatch.setenv("INFERMETER_API", f"{agent.api.host}:{agent.api.port}")
    src = default_source()
    assert isinstance(src, AgentSource) and src.url == agent.api_url


def test_default_source_falls_back_to_the_store_file(db_path, monkeypatch):
    from infermeter.agent.commands.top import default_source

    infermeter.configure(db=db_path, api="off")
    infermeter.shutdown()
    with socket_on_port_zero() as port:
        pass
    monkeypatch.setenv("INFERMETER_API", f"127.0.0.1:{port}")
    monkeypatch.setenv("INFERMETER_DB", db_path)
    src = default_source()
    try:
        assert isinstance(src, FileSource)
    finally:
        src.close()


def test_bad_window_is_refused(agent):
    with pytest.raises(ValueError, match="window must be one of"):
        TopApp(fixed_source(agent), window="2h")


def socket_on_port_zero():
    import socket

    class _Port:
        def __enter__(self):
            self.s = socket.socket()
            self.s.bind(("127.0.0.1", 0))
            return self.s.getsockname()[1]

        def __exit__(self, *exc):
            self.s.close()

    return _Port()


def test_demo_opens_the_tui_only_in_a_terminal(monkeypatch):
    import argparse

    from infermeter.agent.commands.demo import _want_tui

    def args(**kw):
        return argparse.Namespace(**{"tui": None, "json": False, **kw})

    assert _want_tui(args()) is False  # pytest captures the streams: not a terminal, so no TUI
    assert _want_tui(args(tui=False)) is False
    assert _want_tui(args(tui=True)) is True
    for stream in ("stdin", "stdout", "stderr"):
        monkeypatch.setattr(f"sys.{stream}.isatty", lambda: True, raising=False)
    assert _want_tui(args()) is True
    assert _want_tui(args(json=True)) is False


async def test_in_process_source_serves_the_demo_without_an_api(db_path, utc):
    from infermeter.tui.fetch import InProcessSource

    a = infermeter.configure(db=db_path, api="off")
    a.store.write_records(fixed_records())
    assert a.store.force_flush()
    app = TopApp(InProcessSource(a), clock_ns=lambda: T0_NS, interval_s=60)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(app, pilot)
        assert models(app) == ["qwen2.5-32b", "llama-3.1-8b", "bge-embed"]
        assert "in-process agent" in text_of(app, "#topbar")


def test_recommendations_are_asked_on_their_own_thread_at_most_every_30s(filled):
    import threading

    from infermeter.tui.fetch import Poller, Query

    asked = []
    src = fixed_source(filled)
    real_view = src.view

    def counting(name, **params):
        asked.append(name)
        return real_view(name, **params)

    src.view = counting
    now = [1000.0]
    landed = threading.Event()
    poller = Poller(src, clock=lambda: now[0], on_slow_answer=lambda name: landed.set())
    q = Query(until_ns=T0_NS)

    def fetch_and_wait(force: bool = False):
        landed.clear()
        snap = poller.fetch(q, force)
        assert landed.wait(30)
        return snap

    first = fetch_and_wait()
    assert first.get("recommendations").pending  # the poll did not wait for it
    second = poller.fetch(q)
    assert second.get("recommendations").data is not None
    now[0] += 29
    third = poller.fetch(q)
    assert asked.count("recommendations") == 1 and asked.count("models") == 3
    assert third.get("recommendations") is second.get("recommendations")
    now[0] += 2
    fetch_and_wait()  # 31 s later: asked again
    fetch_and_wait(force=True)
    assert asked.count("recommendations") == 3


async def test_header_from_cost_rows_in_the_store(agent, utc):
    """The real cost view over rows written into instance_prices and cost_windows (it reads the live clock)."""
    from decimal import Decimal

    now = time.time_ns()
    hour = Decimal("2.4")
    agent.store.submit("instance_prices", [("gpu-box", now - 7200 * 10**9, hour, "aws", "g6.xlarge", "on_demand", "L4", 1,
                                            None, None, None, "test price", now - 7200 * 10**9)])
    windows = []
    for k in range(10):  # ten finished minutes, each a quarter busy
        start = now - (10 - k) * 60 * 10**9 - 10 * 10**9
        cost = hour / 60
        windows.append(("gpu-box", start, start + 60 * 10**9, hour, cost, cost / 4, cost * 3 / 4, cost, Decimal(0),
                        None, None, None, 1, None, 15.0, 5, "time", now))
    agent.store.submit("cost_windows", windows)
    assert agent.store.force_flush()
    app = TopApp(fixed_source(agent), interval_s=60, window="1h")
    async with app.run_test(size=(100, 30)) as pilot:
        await started(app, pilot)
        cost = text_of(app, "#costbar")
        assert "burn $2.40/h" in cost and "idle 75%" in cost

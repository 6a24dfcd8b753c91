"""The sampler loop (driven by a manual clock, never by sleeping), its rows in a real DuckDB store, the agent's views, and the hw.* gauges."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

import infermeter
from infermeter.collectors import FakeNvml, GpuCollector, ManualClock, Nvml, Sampler, Snapshot
from infermeter.collectors.clock import next_tick_ns
from infermeter.collectors.nvml import set_default_nvml
from infermeter.collectors.readings import HostReading
from infermeter.collectors.semconv import HW_INSTRUMENTS, hw_observations, register_hw_instruments
from infermeter.store import open_store

S = 10**9
T0 = (time.time_ns() // S - 100) * S  # an aligned second, a little in the past


class Counting:
    """A collector that records the ticks it was asked for; raises on the ticks listed in ``fail_at``."""

    def __init__(self, name: str = "counting", fail_at: tuple[int, ...] = ()) -> None:
        self.name = name
        self.done = False
        self.fail_at = set(fail_at)
        self.seen: list[int] = []
        self.closed = False

    def collect(self, ts_ns: int):
        self.seen.append(ts_ns)
        if len(self.seen) in self.fail_at:
            raise RuntimeError(f"boom at tick {len(self.seen)}")
        return [HostReading(ts_ns, 50.0, 2, 1, 2)]

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def run_sampler():
    started = []

    def start(collectors, sink=None, *, interval_s=1.0, start_ns=T0 + S // 2):
        clock = ManualClock(start_ns)
        s = Sampler(collectors, sink, interval_s=interval_s, clock=clock, host="box").start()
        clock.wait_parked()
        started.append(s)
        return s, clock

    yield start
    for s in started:
        s.shutdown()


@pytest.fixture
def store(tmp_path):
    st = open_store(str(tmp_path / "samples.duckdb")).start()
    yield st
    st.shutdown()


# -- the loop ---------------------------------------------------------------------------------------------------


def test_ticks_fall_on_the_wall_clock_grid(run_sampler):
    c = Counting()
    s, clock = run_sampler([c])  # started half-way through a second
    clock.advance(0.4)
    assert c.seen == []  # not due yet
    clock.advance(0.1)
    assert c.seen == [T0 + S]
    for _ in range(5):
        clock.advance(1.0)
    assert c.seen == [T0 + k * S for k in range(1, 7)]
    assert s.ticks == 6 and s.ticks_missed == 0 and s.last_ts_ns == T0 + 6 * S


def test_fractional_interval_and_uneven_wakeups_neither_drift_nor_double(run_sampler):
    c = Counting()
    s, clock = run_sampler([c], interval_s=0.25, start_ns=T0 + 10**7)
    for step in (0.2, 0.07, 0.13, 0.24, 0.01, 0.24, 0.2, 0.16):  # the loop wakes at odd moments
        clock.advance(step)
    # 1.25 s after T0 + 10 ms: ticks at 250, 500, ..., 1250 ms, each once, none skipped
    assert c.seen == [T0 + k * 250_000_000 for k in range(1, 6)]
    assert s.ticks_missed == 0


def test_an_overdue_tick_is_skipped_and_counted_not_run_late_in_a_burst(run_sampler, caplog):
    c = Counting()
    s, clock = run_sampler([c])
    clock.advance(0.5)
    clock.advance(3.2)  # the machine slept (or a collector blocked) through three ticks
    assert c.seen == [T0 + S, T0 + 4 * S]
    assert s.ticks_missed == 2
    assert any("fell 2 tick(s) behind" in m for m in caplog.messages)
    clock.advance(0.8)
    assert c.seen[-1] == T0 + 5 * S


def test_a_wall_clock_stepped_back_realigns(run_sampler, caplog):
    c = Counting()
    s, clock = run_sampler([c])
    clock.advance(0.5)
    clock.set(T0 - 60 * S + S // 2)  # NTP stepped the clock back a minute
    clock.advance(0.5)
    assert c.seen == [T0 + S, T0 - 59 * S]
    assert s.clock_steps == 1
    assert any("went back" in m for m in caplog.messages)


def test_a_failing_collector_is_logged_once_and_never_stops_the_others(run_sampler, caplog):
    bad, good = Counting("bad", fail_at=(2, 3, 5)), Counting("good")
    s, clock = run_sampler([bad, good])
    clock.advance(0.5)
    for _ in range(5):
        clock.advance(1.0)
    assert good.seen == bad.seen and len(good.seen) == 6
    assert s.collector_errors == {"bad": 3}
    failed = [m for m in caplog.messages if "collector bad failed" in m]
    assert len(failed) == 2  # ticks 2-3 are one episode; tick 5 another after it recovered at 4
    assert len([m for m in caplog.messages if "collector bad works again" in m]) == 2
    assert s.latest().host is not None  # the good one's reading made it


def test_a_collector_with_nothing_to_read_is_dropped():
    no_gpu = GpuCollector(Nvml(FakeNvml([], init_error=12)))
    c = Counting()
    s = Sampler([no_gpu, c], host="box")
    s.tick(T0)
    s.tick(T0 + S)
    assert s.collectors == [c]
    assert s.stats()["collectors"] == ["counting"]


def test_shutdown_stops_the_loop_closes_collectors_and_is_idempotent(run_sampler):
    c = Counting()
    s, clock = run_sampler([c])
    s.shutdown()
    s.shutdown()
    assert c.closed and not s._thread.is_alive()
    assert c.seen == []


def test_next_tick():
    assert next_tick_ns(T0, S) == T0 + S
    assert next_tick_ns(T0 + 1, S) == T0 + S
    assert next_tick_ns(T0 - 1, S) == T0


def test_tick_cpu_is_measured():
    s = Sampler([Counting()], host="box")
    s.tick(T0)
    st = s.stats()
    assert st["ticks"] == 1 and st["tick_cpu_ms_mean"] > 0 and st["tick_cpu_ms_max"] >= st["tick_cpu_ms_mean"]


# -- rows in the store ------------------------------------------------------------------------------------------------


def test_gpu_rows_in_the_store_with_energy_deltas(store):
    fake = FakeNvml.standard()
    s = Sampler([GpuCollector(Nvml(fake))], store, host="box")
    s.tick(T0)
    fake.advance(1.0)
    s.tick(T0 + S)
    assert s.force_flush()
    cur = store.cursor()
    rows = cur.execute("SELECT ts_ns, gpu_uuid, gpu_index, parent_uuid, power_w, energy_j FROM gpu_samples "
                       "WHERE host = 'box' ORDER BY ts_ns, gpu_index, parent_uuid NULLS FIRST, gpu_uuid").fetchall()
    assert len(rows) == 10
    assert rows[0] == (T0, "GPU-11111111-1111-1111-1111-111111111111", 0, None, 512.25, 1_000_000.0)
    assert rows[1][4:] == (51.5, None)  # the P40: power yes, energy NULL (unsupported), never 0
    energy = dict(cur.execute(
        "SELECT gpu_uuid, max(energy_j) - min(energy_j) FROM gpu_samples WHERE energy_j IS NOT NULL GROUP BY 1").fetchall())
    assert energy == {"GPU-11111111-1111-1111-1111-111111111111": 512.25, "GPU-33333333-3333-3333-3333-333333333333": 180.0}
    procs = cur.execute("SELECT ts_ns, gpu_uuid, pid, used_mem_bytes FROM gpu_process_samples WHERE ts_ns = ? ORDER BY pid",
                        [T0 + S]).fetchall()
    assert [(p[2], p[3] is None) for p in procs] == [(4242, False), (5151, False), (6161, True)]


def test_a_full_store_counts_dropped_rows(tmp_path):
    st = open_store(str(tmp_path / "tiny.duckdb"))
    st.max_queued_rows = 2  # writer not started: the queue only fills
    try:
        s = Sampler([GpuCollector(Nvml(FakeNvml.standard()))], st, host="box")
        s.tick(T0)
        assert s.rows_dropped == 5 + 3  # five GPU rows and three process rows did not fit
    finally:
        st.shutdown()


# -- the agent ------------------------------------------------------------------------------------------------------------


@pytest.fixture
def fake_gpus():
    fake = FakeNvml.standard()
    prev = set_default_nvml(Nvml(fake))
    yield fake
    set_default_nvml(prev)


def get(agent, view: str, **params):
    q = "&".join(f"{k}={v}" for k, v in params.items())
    with urllib.request.urlopen(f"{agent.api_url}/api/v1/{view}" + (f"?{q}" if q else "")) as r:
        return json.loads(r.read())


def test_agent_runs_the_sampler_and_serves_live_and_stored_views(fake_gpus, db_path):
    # an hourly tick keeps the agent's own loop from ticking between the test's manual ticks
    agent = infermeter.configure(db=db_path, api="127.0.0.1:0", sample_interval_s=3600)
    assert agent.sampler in agent.components
    assert agent.sampler.latest() == Snapshot()
    agent.sampler.tick(T0)
    fake_gpus.advance(1.0)
    snap = agent.sampler.tick(T0 + S)
    assert agent.force_flush()
    assert [g.uuid for g in agent.sampler.latest().gpus] == [g.uuid for g in snap.gpus] and len(snap.gpus) == 5

    gpus = get(agent, "gpus", since="all")
    assert gpus["live"] is True and gpus["ts_ns"] == T0 + S
    h100 = gpus["gpus"][0]
    assert (h100["uuid"], h100["power_w"], h100["energy_j"]) == ("GPU-11111111-1111-1111-1111-111111111111", 512.25, 1_000_512.25)
    assert h100["processes"] == [{"pid": 4242, "used_mem_bytes": 30 * 1024**3 - 512 * 1024**2}]
    assert sum(p["samples"] for p in h100["history"]) == 2
    assert h100["history"][-1]["power_w"] == 512.25
    host = get(agent, "host", since="all")
    assert host["latest"]["ts_ns"] == T0 + S and host["latest"]["mem_total_bytes"] > 0
    assert host["sampler"]["ticks"] == 2

    # The same figures read from the file once the agent is gone (the CLI's offline path).
    infermeter.shutdown()
    from infermeter.agent.source import FileSource

    src = FileSource(db_path)
    try:
        stored = src.view("gpus", since="all")
        assert stored["live"] is False and stored["ts_ns"] == T0 + S
        assert [(g["uuid"], g["power_w"], g["energy_j"], g["processes"]) for g in stored["gpus"]] == \
               [(g["uuid"], g["power_w"], g["energy_j"], g["processes"]) for g in gpus["gpus"]]
        assert src.view("host", since="all")["latest"]["ts_ns"] == T0 + S
        assert src.view("servers", since="all")["servers"] == []
        early = src.view("gpus", since="all", until_ns=T0 + 1)  # "latest" before a given time
        assert early["ts_ns"] == T0 and early["gpus"][0]["energy_j"] == 1_000_000.0
    finally:
        src.close()


def test_agent_view_rejects_bad_parameters(agent):
    with pytest.raises(urllib.error.HTTPError) as e:
        get(agent, "gpus", since="soon")
    assert e.value.code == 400 and b"bad since=" in e.value.read()


def test_sampling_can_be_turned_off(db_path):
    agent = infermeter.configure(db=db_path, api="off", sampling=False)
    assert agent.sampler is None and not any(isinstance(c, Sampler) for c in agent.components)


# -- hw.* gauges ------------------------------------------------------------------------------------------------------------


def test_hw_observations_follow_the_hardware_conventions():
    snap = Sampler([GpuCollector(Nvml(FakeNvml.standard()))], host="box").tick(T0)
    pts = {(p.name, p.attributes["hw.id"]): p for p in hw_observations(snap)}
    h100 = "GPU-11111111-1111-1111-1111-111111111111"
    util = pts[("hw.gpu.utilization", h100)]
    assert util.value == pytest.approx(0.87)
    assert util.attributes == {"hw.id": h100, "hw.type": "gpu", "hw.vendor": "NVIDIA", "hw.name": "NVIDIA H100 80GB HBM3",
                               "hw.gpu.task": "general"}
    assert pts[("hw.power", h100)].value == 512.25 and pts[("hw.energy", h100)].value == 1_000_000.0
    assert pts[("hw.gpu.memory.limit", h100)].value == 80 * 1024**3
    p40 = "GPU-22222222-2222-2222-2222-222222222222"
    assert ("hw.energy", p40) not in pts and ("hw.power", p40) in pts  # unknown is absent, not 0
    mig = "MIG-44444444-4444-4444-4444-444444444444"
    assert pts[("hw.gpu.memory.usage", mig)].attributes["hw.parent"] == "GPU-33333333-3333-3333-3333-333333333333"
    assert ("hw.gpu.utilization", mig) not in pts


def test_hw_metric_names_and_units_are_the_conventions_own():
    from opentelemetry.semconv._incubating.metrics import hw_metrics

    for name in HW_INSTRUMENTS:
        assert getattr(hw_metrics, name.upper().replace(".", "_")) == name  # HW_GPU_UTILIZATION == "hw.gpu.utilization"
    snap = Sampler([GpuCollector(Nvml(FakeNvml.standard()))], host="box").tick(T0)
    assert {p.name for p in hw_observations(snap)} == set(HW_INSTRUMENTS)


def test_hw_instruments_on_an_otel_meter_read_the_latest_snapshot():
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    fake = FakeNvml.standard()
    sampler = Sampler([GpuCollector(Nvml(fake))], host="box")
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        register_hw_instruments(provider.get_meter("test"), sampler.latest)
        assert _points(reader) == {}  # no tick yet: no data, not zeros
        sampler.tick(T0)
        fake.advance(2.0)
        sampler.tick(T0 + S)
        got = _points(reader)
        assert set(got) == {"hw.gpu.utilization", "hw.gpu.memory.utilization", "hw.gpu.memory.usage",
                            "hw.gpu.memory.limit", "hw.power", "hw.energy"}
        assert got["hw.energy"]["GPU-11111111-1111-1111-1111-111111111111"] == 1_000_000.0 + 2 * 512.25
        assert "MIG-44444444-4444-4444-4444-444444444444" not in got["hw.power"]
        assert fake.calls["nvmlDeviceGetPowerUsage"] == 2 * 3 + 2  # collection read the snapshot, not NVML
    finally:
        provider.shutdown()


def _points(reader) -> dict[str, dict[str, float]]:
    data = reader.get_metrics_data()
    out: dict[str, dict[str, float]] = {}
    for rm in (data.resource_metrics if data else []):
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                for dp in m.data.data_points:
                    out.setdefault(m.name, {})[dp.attributes["hw.id"]] = dp.value
    return out


def test_collectors_public_api_is_what_all_says():
    import importlib

    import infermeter.collectors as pkg

    for mod in ["", ".build", ".clock", ".fake_nvml", ".gpu", ".host", ".nvml", ".readings", ".sampler", ".scrapers",
                ".semconv", ".views"]:
        m = importlib.import_module("infermeter.collectors" + mod)
        assert m.__all__ and all(hasattr(m, n) for n in m.__all__), mod
    assert {"Sampler", "GpuReading", "HostReading", "ServerReading", "Snapshot", "FakeNvml", "Nvml"} <= set(pkg.__all__)

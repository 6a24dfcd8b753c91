"""The NVML wrapper and the GPU collector, against the shipped FakeNvml (and the real pynvml, which finds no driver here)."""

from __future__ import annotations

import logging
import sys
import threading

import pytest

from infermeter.collectors import FakeDevice, FakeNvml, GpuCollector, Nvml
from infermeter.collectors.fake_nvml import GiB
from infermeter.collectors.nvml import ERROR_GPU_IS_LOST, ERROR_UNKNOWN, NvmlError
from tests.conftest import run_python

H100, P40, A100 = ("GPU-11111111-1111-1111-1111-111111111111", "GPU-22222222-2222-2222-2222-222222222222",
                   "GPU-33333333-3333-3333-3333-333333333333")
MIG1, MIG2 = "MIG-44444444-4444-4444-4444-444444444444", "MIG-55555555-5555-5555-5555-555555555555"


@pytest.fixture
def fake():
    return FakeNvml.standard()


def by_uuid(readings):
    return {r.uuid: r for r in readings}


def test_reads_every_value_of_every_device_in_real_units(fake):
    r = by_uuid(GpuCollector(Nvml(fake)).collect(123))
    assert list(r) == [H100, P40, A100, MIG1, MIG2]
    h = r[H100]
    assert (h.ts_ns, h.index, h.name, h.parent_uuid) == (123, 0, "NVIDIA H100 80GB HBM3", None)
    assert (h.utilization_pct, h.mem_utilization_pct) == (87.0, 41.0)
    assert (h.mem_used_bytes, h.mem_total_bytes) == (30 * GiB, 80 * GiB)
    assert (h.power_w, h.power_limit_w, h.energy_j) == (512.25, 700.0, 1_000_000.0)  # from mW and mJ
    assert (h.temperature_c, h.sm_clock_mhz) == (61.0, 1980)
    assert [(p.pid, p.used_mem_bytes) for p in h.processes] == [(4242, 30 * GiB - 512 * 1024**2)]


def test_gpu_without_energy_counter_reads_none_and_is_not_asked_again(fake):
    c = GpuCollector(Nvml(fake))
    for ts in (1, 2, 3):
        p40 = by_uuid(c.collect(ts))[P40]
        assert p40.energy_j is None
        assert p40.power_w == 51.5  # the rest of the device still reads
    # Two GPUs with a counter read it every tick; the P40 was asked once; MIG devices once each.
    assert fake.calls["nvmlDeviceGetTotalEnergyConsumption"] == 2 * 3 + 1 + 2
    assert fake.calls["nvmlDeviceGetPowerUsage"] == 3 * 3 + 2
    assert fake.calls["nvmlDeviceGetUUID"] == 5  # enumerated once, identified by UUID


def test_mig_devices_are_enumerated_under_their_parent(fake):
    r = by_uuid(GpuCollector(Nvml(fake)).collect(1))
    parent, m1, m2 = r[A100], r[MIG1], r[MIG2]
    assert parent.parent_uuid is None and parent.power_w == 180.0 and parent.energy_j == 5000.0
    assert parent.utilization_pct is None  # NVML reports no utilization for a MIG-enabled GPU
    assert parent.processes == ()  # listed on the MIG devices instead, never twice
    assert (m1.parent_uuid, m1.index, m1.name) == (A100, 2, "NVIDIA A100-SXM4-40GB MIG 3g.20gb")
    assert (m1.mem_used_bytes, m1.mem_total_bytes) == (10 * GiB, 20 * GiB)
    assert (m1.power_w, m1.energy_j, m1.utilization_pct) == (None, None, None)
    assert [(p.pid, p.used_mem_bytes) for p in m1.processes] == [(5151, 10 * GiB)]
    assert [(p.pid, p.used_mem_bytes) for p in m2.processes] == [(6161, None)]  # NVML could not say


def test_empty_mig_slots_are_normal_and_not_logged(fake, caplog):
    caplog.set_level(logging.INFO, logger="infermeter")
    Nvml(fake).devices()
    assert fake.calls["nvmlDeviceGetMigDeviceHandleByIndex"] == 7  # two used slots, five empty
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_gpu_that_starts_failing_is_skipped_logged_once_and_comes_back(fake, caplog):
    caplog.set_level(logging.INFO, logger="infermeter")
    c = GpuCollector(Nvml(fake))
    assert H100 in by_uuid(c.collect(1))
    fake.fail(0, ERROR_GPU_IS_LOST)
    for ts in (2, 3, 4):
        r = by_uuid(c.collect(ts))
        assert H100 not in r  # no invented values for a GPU that cannot be read
        assert set(r) == {P40, A100, MIG1, MIG2}
    lost = [m for m in caplog.messages if "cannot be read" in m]
    assert len(lost) == 1 and H100 in lost[0] and "GPU is lost" in lost[0]
    assert c.read_errors == 3
    fake.recover(0)
    assert by_uuid(c.collect(5))[H100].power_w == 512.25
    assert len([m for m in caplog.messages if "can be read again" in m]) == 1


def test_one_failing_value_is_none_and_logged_once(fake, caplog):
    class FlakyPower(FakeNvml):
        def nvmlDeviceGetPowerUsage(self, h):
            if h.uuid == H100:
                self._enter("nvmlDeviceGetPowerUsage", h)
                raise FakeNvml.NVMLError(ERROR_UNKNOWN)
            return super().nvmlDeviceGetPowerUsage(h)

    flaky = FlakyPower(fake.devices)
    c = GpuCollector(Nvml(flaky))
    for ts in (1, 2):
        h = by_uuid(c.collect(ts))[H100]
        assert h.power_w is None and h.energy_j == 1_000_000.0
    assert flaky.calls["nvmlDeviceGetPowerUsage"] == 3 * 2 + 2  # an error is not "unsupported": asked again
    assert len([m for m in caplog.messages if "nvmlDeviceGetPowerUsage" in m]) == 1


def test_a_gpu_lost_before_enumeration_is_left_out(fake, caplog):
    fake.fail(1)
    assert [d.uuid for d in Nvml(fake).devices()] == [H100, A100, MIG1, MIG2]
    assert any("GPU 1 skipped" in m for m in caplog.messages)


def test_processes_from_compute_and_graphics_lists_are_merged():
    d = FakeDevice("NVIDIA L4", "GPU-l4", 24 * GiB, processes=[(10, 1 * GiB), (11, None)],
                   graphics_processes=[(10, 2 * GiB), (12, 3 * GiB)])
    (r,) = GpuCollector(Nvml(FakeNvml([d]))).collect(1)
    assert sorted((p.pid, p.used_mem_bytes) for p in r.processes) == [(10, 2 * GiB), (11, None), (12, 3 * GiB)]


def test_missing_driver_is_one_log_line_and_no_collector(caplog):
    caplog.set_level(logging.INFO, logger="infermeter")
    lib = FakeNvml([], init_error=12)  # NVML_ERROR_LIBRARY_NOT_FOUND
    nvml = Nvml(lib)
    c = GpuCollector(nvml)
    assert c.collect(1) == [] and c.collect(2) == []
    assert c.done
    assert nvml.devices() == []
    lines = [r for r in caplog.records if r.name.startswith("infermeter.collectors")]
    assert len(lines) == 1
    assert "libnvidia-ml.so.1" in lines[0].getMessage() and "INFERMETER_GPU=false" in lines[0].getMessage()
    assert lib.calls["nvmlInit"] == 1


def test_real_pynvml_on_this_machine_finds_no_driver_and_says_so():
    nvml = Nvml()  # the real nvidia-ml-py; this machine has no NVIDIA driver
    if nvml.available():
        pytest.skip("an NVIDIA driver is present: see benchmarks/gpu_check.py")  # only on a GPU machine
    assert "libnvidia-ml" in nvml.unavailable_reason or "driver" in nvml.unavailable_reason
    assert GpuCollector(nvml).collect(1) == []


def test_missing_package_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    nvml = Nvml()
    assert not nvml.available()
    assert "nvidia-ml-py" in nvml.unavailable_reason


def test_init_is_lazy_once_and_thread_safe(fake):
    nvml = Nvml(fake)
    assert fake.calls["nvmlInit"] == 0
    barrier = threading.Barrier(8)
    results = []

    def go():
        barrier.wait()
        results.append(nvml.available())

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * 8
    assert fake.calls["nvmlInit"] == 1


def test_shutdown_is_idempotent_and_ends_the_session(fake):
    nvml = Nvml(fake)
    nvml.devices()
    nvml.shutdown()
    nvml.shutdown()
    assert fake.shutdowns == 1
    assert not nvml.available() and nvml.devices() == []


def test_nvml_is_shut_down_at_exit():
    r = run_python(
        "from infermeter.collectors import FakeNvml, Nvml\n"
        "class Loud(FakeNvml):\n"
        "    def nvmlShutdown(self):\n"
        "        super().nvmlShutdown(); print('nvmlShutdown', flush=True)\n"
        "n = Nvml(Loud.standard()); print(len(n.devices()))\n"
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["5", "nvmlShutdown"]


def test_timed_session_counts_what_each_call_cost(fake):
    nvml = Nvml(fake, timed=True)
    c = GpuCollector(nvml)
    c.collect(1)
    c.collect(2)
    s = nvml.stats["nvmlDeviceGetPowerUsage"]
    assert s.calls == 3 * 2 + 2 and s.errors == 2  # MIG devices: NotSupported once each
    assert s.total_ns > 0 and s.max_ns <= s.total_ns


def test_calls_before_init_fail_like_real_nvml(fake):
    with pytest.raises(NvmlError) as e:
        Nvml(fake).call("nvmlDeviceGetCount")
    assert e.value.code == 1  # Uninitialized


def test_old_pynvml_bytes_names_are_decoded():
    class OldBindings(FakeNvml):
        def nvmlDeviceGetName(self, h):
            return super().nvmlDeviceGetName(h).encode()

        def nvmlDeviceGetUUID(self, h):
            return super().nvmlDeviceGetUUID(h).encode()

    (d,) = Nvml(OldBindings([FakeDevice("Tesla T4", "GPU-t4", 16 * GiB)])).devices()
    assert (d.name, d.uuid) == ("Tesla T4", "GPU-t4")


def test_after_shutdown_at_exit_the_collector_reads_nothing_and_says_nothing(fake, caplog):
    nvml = Nvml(fake)
    c = GpuCollector(nvml)
    assert len(c.collect(1)) == 5
    nvml.shutdown()  # atexit runs before the agent's sampler has stopped
    assert c.collect(2) == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

"""A fake NVML for tests and benchmarks, shipped in the library like httpx's ``MockTransport``.

It speaks the subset of ``pynvml`` that :mod:`.nvml` calls, with the same names, arguments,
units (mW, mJ) and failure modes as real devices: calls before ``nvmlInit`` fail
``Uninitialized``; a pre-Volta GPU has no energy counter (``NotSupported``); a MIG-enabled GPU
lists MIG devices that read memory and processes but no utilization or power; a device can be
made to fail every call (``GPU is lost``) mid-run. Use it as ``Nvml(FakeNvml.standard())``.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

__all__ = ["FakeNvml", "FakeDevice", "FakeNVMLError"]

GiB = 1024**3

_MESSAGES = {1: "Uninitialized", 2: "Invalid Argument", 3: "Not Supported", 4: "Insufficient Permissions",
             6: "Not Found", 9: "Driver Not Loaded", 12: "NVML Shared Library Not Found", 13: "Function Not Found",
             15: "GPU is lost", 999: "Unknown Error"}


class FakeNVMLError(Exception):
    """Like ``pynvml.NVMLError``: the NVML return code is ``.value``."""

    def __init__(self, value: int) -> None:
        self.value = value
        super().__init__(_MESSAGES.get(value, f"NVML error {value}"))


@dataclass
class FakeDevice:
    """One fake GPU (or MIG device). ``None`` for a value means the device does not support it."""

    name: str
    uuid: str
    mem_total_bytes: int
    mem_used_bytes: int = 0
    utilization_pct: int | None = 0
    mem_utilization_pct: int | None = 0
    power_w: float | None = 60.0
    power_limit_w: float | None = 300.0
    energy_j: float | None = 0.0
    temperature_c: int | None = 35
    sm_clock_mhz: int | None = 1410
    processes: list[tuple[int, int | None]] = field(default_factory=list)
    graphics_processes: list[tuple[int, int | None]] = field(default_factory=list)
    mig_capable: bool = False
    mig: list["FakeDevice"] = field(default_factory=list)
    max_mig_devices: int = 7
    failing: int | None = None  # an NVML code every call on this device raises

    @classmethod
    def mig_slice(cls, parent_name: str, profile: str, uuid: str, mem_total_bytes: int, **kw: Any) -> "FakeDevice":
        return cls(f"{parent_name} MIG {profile}", uuid, mem_total_bytes, utilization_pct=None, mem_utilization_pct=None,
                   power_w=None, power_limit_w=None, energy_j=None, temperature_c=None, sm_clock_mhz=None, **kw)


class FakeNvml:
    """The fake library. ``calls`` counts every function called, by name."""

    NVMLError = FakeNVMLError

    def __init__(self, devices: list[FakeDevice], *, init_error: int | None = None) -> None:
        self.devices = devices
        self.init_error = init_error
        self.initialised = 0
        self.shutdowns = 0
        self.calls: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    # -- presets ----------------------------------------------------------------------------------
    @classmethod
    def standard(cls) -> "FakeNvml":
        """An H100 with a process, a Tesla P40 (no energy counter) and an A100 split into two MIG devices."""
        h100 = FakeDevice("NVIDIA H100 80GB HBM3", "GPU-11111111-1111-1111-1111-111111111111", 80 * GiB,
                          mem_used_bytes=30 * GiB, utilization_pct=87, mem_utilization_pct=41, power_w=512.25,
                          power_limit_w=700.0, energy_j=1_000_000.0, temperature_c=61, sm_clock_mhz=1980,
                          processes=[(4242, 30 * GiB - 512 * 1024**2)], mig_capable=True)
        p40 = FakeDevice("Tesla P40", "GPU-22222222-2222-2222-2222-222222222222", 24 * GiB, mem_used_bytes=2 * GiB,
                         utilization_pct=12, mem_utilization_pct=3, power_w=51.5, power_limit_w=250.0, energy_j=None,
                         temperature_c=38, sm_clock_mhz=1303)
        a100_name = "NVIDIA A100-SXM4-40GB"
        a100 = FakeDevice(a100_name, "GPU-33333333-3333-3333-3333-333333333333", 40 * GiB, mem_used_bytes=15 * GiB,
                          utilization_pct=None, mem_utilization_pct=None, power_w=180.0, power_limit_w=400.0,
                          energy_j=5_000.0, temperature_c=44, sm_clock_mhz=1410, mig_capable=True,
                          mig=[FakeDevice.mig_slice(a100_name, "3g.20gb", "MIG-44444444-4444-4444-4444-444444444444",
                                                    20 * GiB, mem_used_bytes=10 * GiB, processes=[(5151, 10 * GiB)]),
                               FakeDevice.mig_slice(a100_name, "2g.10gb", "MIG-55555555-5555-5555-5555-555555555555",
                                                    10 * GiB, mem_used_bytes=5 * GiB, processes=[(6161, None)])])
        return cls([h100, p40, a100])

    @classmethod
    def many(cls, n: int) -> "FakeNvml":
        """``n`` busy H100s, each with two processes (for benchmarks)."""
        return cls([FakeDevice("NVIDIA H100 80GB HBM3", f"GPU-{i:08d}-0000-0000-0000-000000000000", 80 * GiB,
                               mem_used_bytes=60 * GiB, utilization_pct=95, mem_utilization_pct=50, power_w=650.0,
                               power_limit_w=700.0, energy_j=0.0, temperature_c=70, sm_clock_mhz=1980,
                               processes=[(1000 + i, 30 * GiB), (2000 + i, 30 * GiB)]) for i in range(n)])

    # -- test controls --------------------------------------------------------------------------------
    def fail(self, index: int, code: int = 15) -> None:
        """From now on every call on GPU ``index`` raises ``code`` (default: GPU is lost)."""
        self.devices[index].failing = code

    def recover(self, index: int) -> None:
        self.devices[index].failing = None

    def advance(self, seconds: float) -> None:
        """Let time pass: each energy counter grows by power x time, as on real hardware."""
        for d in self.devices:
            if d.energy_j is not None and d.power_w is not None:
                d.energy_j += d.power_w * seconds

    # -- the pynvml surface -----------------------------------------------------------------------------
    def _enter(self, fn: str, handle: FakeDevice | None = None) -> None:
        with self._lock:
            self.calls[fn] += 1
        if self.initialised <= self.shutdowns:
            raise FakeNVMLError(1)
        if handle is not None and handle.failing is not None:
            raise FakeNVMLError(handle.failing)

    @staticmethod
    def _supported(v: Any) -> Any:
        if v is None:
            raise FakeNVMLError(3)
        return v

    def nvmlInit(self) -> None:
        with self._lock:
            self.calls["nvmlInit"] += 1
        if self.init_error is not None:
            raise FakeNVMLError(self.init_error)
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> FakeDevice:
        self._enter("nvmlDeviceGetHandleByIndex")
        if not 0 <= i < len(self.devices):
            raise FakeNVMLError(2)
        return self.devices[i]

    def nvmlDeviceGetUUID(self, h: FakeDevice) -> str:
        self._enter("nvmlDeviceGetUUID", h)
        return h.uuid

    def nvmlDeviceGetName(self, h: FakeDevice) -> str:
        self._enter("nvmlDeviceGetName", h)
        return h.name

    def nvmlDeviceGetUtilizationRates(self, h: FakeDevice) -> SimpleNamespace:
        self._enter("nvmlDeviceGetUtilizationRates", h)
        return SimpleNamespace(gpu=self._supported(h.utilization_pct), memory=self._supported(h.mem_utilization_pct))

    def nvmlDeviceGetMemoryInfo(self, h: FakeDevice) -> SimpleNamespace:
        self._enter("nvmlDeviceGetMemoryInfo", h)
        return SimpleNamespace(total=h.mem_total_bytes, used=h.mem_used_bytes, free=h.mem_total_bytes - h.mem_used_bytes)

    def nvmlDeviceGetPowerUsage(self, h: FakeDevice) -> int:
        self._enter("nvmlDeviceGetPowerUsage", h)
        return round(self._supported(h.power_w) * 1000)

    def nvmlDeviceGetEnforcedPowerLimit(self, h: FakeDevice) -> int:
        self._enter("nvmlDeviceGetEnforcedPowerLimit", h)
        return round(self._supported(h.power_limit_w) * 1000)

    def nvmlDeviceGetTotalEnergyConsumption(self, h: FakeDevice) -> int:
        self._enter("nvmlDeviceGetTotalEnergyConsumption", h)
        return round(self._supported(h.energy_j) * 1000)

    def nvmlDeviceGetTemperature(self, h: FakeDevice, sensor: int) -> int:
        self._enter("nvmlDeviceGetTemperature", h)
        if sensor != 0:
            raise FakeNVMLError(2)
        return self._supported(h.temperature_c)

    def nvmlDeviceGetClockInfo(self, h: FakeDevice, clock: int) -> int:
        self._enter("nvmlDeviceGetClockInfo", h)
        if clock != 1:
            raise FakeNVMLError(3)
        return self._supported(h.sm_clock_mhz)

    def nvmlDeviceGetComputeRunningProcesses(self, h: FakeDevice) -> list[SimpleNamespace]:
        self._enter("nvmlDeviceGetComputeRunningProcesses", h)
        return [SimpleNamespace(pid=pid, usedGpuMemory=mem) for pid, mem in h.processes]

    def nvmlDeviceGetGraphicsRunningProcesses(self, h: FakeDevice) -> list[SimpleNamespace]:
        self._enter("nvmlDeviceGetGraphicsRunningProcesses", h)
        return [SimpleNamespace(pid=pid, usedGpuMemory=mem) for pid, mem in h.graphics_processes]

    def nvmlDeviceGetMigMode(self, h: FakeDevice) -> list[int]:
        self._enter("nvmlDeviceGetMigMode", h)
        if not h.mig_capable:
            raise FakeNVMLError(3)
        on = 1 if h.mig else 0
        return [on, on]

    def nvmlDeviceGetMaxMigDeviceCount(self, h: FakeDevice) -> int:
        self._enter("nvmlDeviceGetMaxMigDeviceCount", h)
        if not h.mig_capable:
            raise FakeNVMLError(3)
        return h.max_mig_devices

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h: FakeDevice, j: int) -> FakeDevice:
        self._enter("nvmlDeviceGetMigDeviceHandleByIndex", h)
        if not h.mig or j >= h.max_mig_devices:
            raise FakeNVMLError(2)
        if j >= len(h.mig):
            raise FakeNVMLError(6)  # an empty slot
        return h.mig[j]

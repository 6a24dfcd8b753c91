"""The GPU collector: one :class:`GpuReading` per GPU and MIG device per tick, through :mod:`.nvml`.

Devices are enumerated once, on the first tick (on the sampler's thread, so a slow ``nvmlInit``
never delays the caller that started the agent), and identified by UUID. Each value is read once
per device per tick; a value the device cannot give is ``None``. A device whose every read
fails this tick (a lost GPU) yields no reading, and is logged once when it starts failing and
once when it recovers; a single failing value is ``None`` and logged once per device and call.
"""

from __future__ import annotations

import logging
from typing import Any

from .nvml import CLOCK_SM, TEMPERATURE_GPU, Nvml, NvmlDevice, NvmlError, default_nvml
from .readings import GpuProcess, GpuReading

__all__ = ["GpuCollector"]

logger = logging.getLogger(__name__)


class GpuCollector:
    name = "gpu"

    def __init__(self, nvml: Nvml | None = None) -> None:
        self.nvml = nvml if nvml is not None else default_nvml()
        self._devices: list[NvmlDevice] | None = None
        self._failing: set[str] = set()
        self._logged: set[tuple[str, str, Any]] = set()
        self.read_errors = 0
        self.done = False  # no NVML or no GPU: the sampler drops this collector

    def devices(self) -> list[NvmlDevice]:
        if self._devices is None:
            self._devices = self.nvml.devices()
            self.done = not self._devices
            if self.done and self.nvml.available():
                logger.info("infermeter: NVML is present but lists no GPU; GPU sampling off")
            elif self._devices:
                logger.info("infermeter: sampling %d GPU device(s): %s", len(self._devices),
                            ", ".join(f"{d.index}:{d.name}" for d in self._devices))
        return self._devices

    def collect(self, ts_ns: int) -> list[GpuReading]:
        if self.nvml.closed:  # NVML was shut down at exit before the sampler stopped: nothing to read
            return []
        out = []
        for dev in self.devices():
            r = self._read(dev, ts_ns)
            if r is not None:
                out.append(r)
        return out

    def close(self) -> None:
        """Nothing to release: the NVML session belongs to whoever made it and ends at exit."""

    # -- one device ----------------------------------------------------------------------------------
    def _read(self, dev: NvmlDevice, ts_ns: int) -> GpuReading | None:
        errors: list[NvmlError] = []
        tried = 0

        def get(fn: str, *args: Any) -> Any:
            nonlocal tried
            if fn in dev.unsupported:
                return None
            tried += 1
            try:
                return dev.read(fn, *args)
            except NvmlError as e:
                errors.append(e)
                return None

        util = get("nvmlDeviceGetUtilizationRates")
        mem = get("nvmlDeviceGetMemoryInfo")
        power_mw = get("nvmlDeviceGetPowerUsage")
        limit_mw = get("nvmlDeviceGetEnforcedPowerLimit")
        energy_mj = get("nvmlDeviceGetTotalEnergyConsumption")
        temp = get("nvmlDeviceGetTemperature", TEMPERATURE_GPU)
        clock = get("nvmlDeviceGetClockInfo", CLOCK_SM)
        procs: dict[int, GpuProcess] = {}
        if not dev.mig_enabled:  # a MIG-enabled GPU's processes are listed on its MIG devices
            for fn in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
                for p in get(fn) or ():
                    used = getattr(p, "usedGpuMemory", None)
                    prev = procs.get(p.pid)
                    if prev is None or (used or 0) > (prev.used_mem_bytes or 0):
                        procs[p.pid] = GpuProcess(int(p.pid), None if used is None else int(used))

        if errors and len(errors) == tried:
            self.read_errors += 1
            if dev.uuid not in self._failing:
                self._failing.add(dev.uuid)
                logger.warning("infermeter: GPU %d (%s) cannot be read, skipped until it answers again: %s",
                               dev.index, dev.uuid, errors[0])
            return None
        if dev.uuid in self._failing:
            self._failing.discard(dev.uuid)
            logger.warning("infermeter: GPU %d (%s) can be read again", dev.index, dev.uuid)
        for e in errors:
            key = (dev.uuid, e.fn, e.code)
            if key not in self._logged:
                self._logged.add(key)
                logger.warning("infermeter: GPU %d (%s): %s (value left empty)", dev.index, dev.uuid, e)

        return GpuReading(
            ts_ns=ts_ns,
            uuid=dev.uuid,
            index=dev.index,
            name=dev.name,
            parent_uuid=dev.parent_uuid,
            utilization_pct=_num(getattr(util, "gpu", None)),
            mem_utilization_pct=_num(getattr(util, "memory", None)),
            mem_used_bytes=_int(getattr(mem, "used", None)),
            mem_total_bytes=_int(getattr(mem, "total", None)),
            power_w=None if power_mw is None else power_mw / 1000.0,
            power_limit_w=None if limit_mw is None else limit_mw / 1000.0,
            energy_j=None if energy_mj is None else energy_mj / 1000.0,
            temperature_c=_num(temp),
            sm_clock_mhz=_int(clock),
            processes=tuple(procs.values()),
        )


def _num(v: Any) -> float | None:
    return None if v is None else float(v)


def _int(v: Any) -> int | None:
    return None if v is None else int(v)

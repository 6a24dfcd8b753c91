"""What the collectors read: frozen dataclasses, units in the names, ``None`` for "could not read".

Each reading knows its store table and its row (the column order of migration m0002), so the
sampler never has to know which collector made it. ``Snapshot`` is one tick's readings, kept as
the sampler's ``latest()`` for gauges and live views.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Union

__all__ = ["GpuProcess", "GpuReading", "HostReading", "ServerReading", "Reading", "Snapshot", "to_dict"]


@dataclass(frozen=True)
class GpuProcess:
    """A process holding memory on a GPU (or on a MIG slice)."""

    pid: int
    used_mem_bytes: int | None


@dataclass(frozen=True)
class GpuReading:
    """One GPU (or MIG device) at one tick.

    ``energy_j`` is NVML's cumulative counter (J since the driver loaded): energy over a window is
    the difference of two readings. A MIG device has ``parent_uuid`` set and usually reads no
    utilization, power or energy (NVML reports those for the physical GPU only).
    """

    TABLE: ClassVar[str] = "gpu_samples"

    ts_ns: int
    uuid: str
    index: int | None
    name: str | None
    parent_uuid: str | None = None
    utilization_pct: float | None = None
    mem_utilization_pct: float | None = None
    mem_used_bytes: int | None = None
    mem_total_bytes: int | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    energy_j: float | None = None
    temperature_c: float | None = None
    sm_clock_mhz: int | None = None
    processes: tuple[GpuProcess, ...] = ()

    def row(self, host: str) -> tuple[Any, ...]:
        return (self.ts_ns, host, self.uuid, self.index, self.name, self.parent_uuid, self.utilization_pct,
                self.mem_utilization_pct, self.mem_used_bytes, self.mem_total_bytes, self.power_w,
                self.power_limit_w, self.energy_j, self.temperature_c, self.sm_clock_mhz)

    def process_rows(self, host: str) -> list[tuple[Any, ...]]:
        return [(self.ts_ns, host, self.uuid, p.pid, p.used_mem_bytes) for p in self.processes]


@dataclass(frozen=True)
class HostReading:
    """The host and the target process tree (the model server) at one tick.

    ``cpu_pct`` is the whole machine, 0-100. ``target_cpu_pct`` follows ``top``: 100 is one core
    busy, so a tree using four cores reads 400. ``mem_used_bytes`` is total minus available.
    ``target_rss_bytes`` sums the tree's resident sets (shared pages count once per process).
    """

    TABLE: ClassVar[str] = "host_samples"

    ts_ns: int
    cpu_pct: float | None
    cpu_count: int | None
    mem_used_bytes: int | None
    mem_total_bytes: int | None
    target_pid: int | None = None
    target_procs: int | None = None
    target_cpu_pct: float | None = None
    target_rss_bytes: int | None = None

    def row(self, host: str) -> tuple[Any, ...]:
        return (self.ts_ns, host, self.cpu_pct, self.cpu_count, self.mem_used_bytes, self.mem_total_bytes,
                self.target_pid, self.target_procs, self.target_cpu_pct, self.target_rss_bytes)


@dataclass(frozen=True)
class ServerReading:
    """One normalised model-server metric (``requests_running``, ``kv_cache_usage``, ...) at one tick."""

    TABLE: ClassVar[str] = "server_samples"

    ts_ns: int
    url: str
    kind: str
    metric: str
    value: float | None

    def row(self, host: str) -> tuple[Any, ...]:
        return (self.ts_ns, host, self.url, self.kind, self.metric, self.value)


Reading = Union[GpuReading, HostReading, ServerReading]


@dataclass(frozen=True)
class Snapshot:
    """Everything one tick read. ``ts_ns`` is None before the first tick."""

    ts_ns: int | None = None
    gpus: tuple[GpuReading, ...] = ()
    host: HostReading | None = None
    servers: tuple[ServerReading, ...] = ()

    @classmethod
    def of(cls, ts_ns: int, readings: list[Reading]) -> "Snapshot":
        gpus = tuple(r for r in readings if isinstance(r, GpuReading))
        hosts = [r for r in readings if isinstance(r, HostReading)]
        servers = tuple(r for r in readings if isinstance(r, ServerReading))
        return cls(ts_ns, gpus, hosts[-1] if hosts else None, servers)


def to_dict(obj: Any) -> Any:
    """A reading or snapshot as plain JSON-ready data."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(x) for x in obj]
    return obj

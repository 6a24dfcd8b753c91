"""GPU readings as OpenTelemetry hardware metrics (``hw.*`` semantic conventions).

:func:`hw_observations` turns a :class:`~.readings.Snapshot` into data points;
:func:`register_hw_instruments` creates the observable instruments on a ``Meter`` with callbacks
that read the sampler's latest snapshot, so an exporter never re-reads NVML. Every point carries
``hw.id`` (the UUID), ``hw.name``, ``hw.type=gpu`` and ``hw.vendor``; a MIG device also carries
``hw.parent`` (the physical GPU's UUID). A value that could not be read yields no point, never 0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .readings import GpuReading, Snapshot

__all__ = ["HwObservation", "HW_INSTRUMENTS", "hw_observations", "register_hw_instruments"]


@dataclass(frozen=True)
class HwObservation:
    name: str
    value: float
    attributes: dict[str, str]


HW_INSTRUMENTS: dict[str, tuple[str, str, str]] = {
    # name: (instrument kind, unit, description), as in opentelemetry.semconv._incubating.metrics.hw_metrics
    "hw.gpu.utilization": ("gauge", "1", "Fraction of time spent in a specific task."),
    "hw.gpu.memory.utilization": ("gauge", "1", "Fraction of GPU memory used."),
    "hw.gpu.memory.usage": ("updowncounter", "By", "GPU memory used."),
    "hw.gpu.memory.limit": ("updowncounter", "By", "Size of the GPU memory."),
    "hw.power": ("gauge", "W", "Instantaneous power consumed by the component."),
    "hw.energy": ("counter", "J", "Energy consumed by the component."),
}


def _attrs(g: GpuReading) -> dict[str, str]:
    a = {"hw.id": g.uuid, "hw.type": "gpu", "hw.vendor": "NVIDIA"}
    if g.name:
        a["hw.name"] = g.name
    if g.parent_uuid:
        a["hw.parent"] = g.parent_uuid
    return a


def _gpu_points(g: GpuReading) -> Iterable[HwObservation]:
    a = _attrs(g)
    if g.utilization_pct is not None:
        yield HwObservation("hw.gpu.utilization", g.utilization_pct / 100.0, {**a, "hw.gpu.task": "general"})
    if g.mem_used_bytes is not None and g.mem_total_bytes:
        yield HwObservation("hw.gpu.memory.utilization", g.mem_used_bytes / g.mem_total_bytes, a)
    if g.mem_used_bytes is not None:
        yield HwObservation("hw.gpu.memory.usage", g.mem_used_bytes, a)
    if g.mem_total_bytes is not None:
        yield HwObservation("hw.gpu.memory.limit", g.mem_total_bytes, a)
    if g.power_w is not None:
        yield HwObservation("hw.power", g.power_w, a)
    if g.energy_j is not None:
        yield HwObservation("hw.energy", g.energy_j, a)


def hw_observations(snapshot: Snapshot) -> list[HwObservation]:
    return [p for g in snapshot.gpus for p in _gpu_points(g)]


def register_hw_instruments(meter: Any, latest: Callable[[], Snapshot]) -> list[Any]:
    """Create the ``hw.*`` observable instruments on ``meter``; callbacks read ``latest()``.

    Returns the instruments. ``latest`` is typically ``agent.sampler.latest``.
    """
    from opentelemetry.metrics import CallbackOptions, Observation

    memo: dict[str, Any] = {"snap": None, "by_name": {}}

    def points(name: str) -> list[HwObservation]:
        snap = latest()
        if snap is not memo["snap"]:
            by_name: dict[str, list[HwObservation]] = {}
            for p in hw_observations(snap):
                by_name.setdefault(p.name, []).append(p)
            memo["snap"], memo["by_name"] = snap, by_name
        return memo["by_name"].get(name, [])

    def callback_for(name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def cb(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(p.value, p.attributes) for p in points(name)]

        return cb

    make = {"gauge": meter.create_observable_gauge, "updowncounter": meter.create_observable_up_down_counter,
            "counter": meter.create_observable_counter}
    return [make[kind](name, callbacks=[callback_for(name)], unit=unit, description=desc)
            for name, (kind, unit, desc) in HW_INSTRUMENTS.items()]

"""Collectors: GPU (NVML), host and process (psutil), model-server /metrics, and the sampler loop.

    Sampler (sampler.py)         one wall-clock-aligned loop; latest() -> Snapshot
     ├── HostCollector (host.py)       machine CPU/memory, the model server's process tree
     ├── GpuCollector (gpu.py)         through Nvml (nvml.py), the one NVML wrapper
     └── ServerScraper (scrapers.py)   vLLM / TGI / llama.cpp /metrics pages

Readings are frozen dataclasses (readings.py). ``FakeNvml`` (fake_nvml.py) and ``ManualClock``
(clock.py) are the seams tests use. ``pynvml`` is imported only when NVML is first used.
"""

from __future__ import annotations

from .build import build_sampler
from .clock import Clock, ManualClock, SystemClock
from .fake_nvml import FakeDevice, FakeNvml
from .gpu import GpuCollector
from .host import HostCollector
from .nvml import Nvml, NvmlError
from .readings import GpuProcess, GpuReading, HostReading, ServerReading, Snapshot
from .sampler import Collector, Sampler
from .scrapers import ServerScraper, parse_metrics
from .semconv import hw_observations, register_hw_instruments

__all__ = [
    "Sampler", "Collector", "build_sampler",
    "HostCollector", "GpuCollector", "ServerScraper", "parse_metrics",
    "Nvml", "NvmlError", "FakeNvml", "FakeDevice",
    "Clock", "SystemClock", "ManualClock",
    "GpuProcess", "GpuReading", "HostReading", "ServerReading", "Snapshot",
    "hw_observations", "register_hw_instruments",
]

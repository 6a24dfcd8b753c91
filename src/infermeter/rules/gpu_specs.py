"""Datasheet facts about GPU types that prices do not carry: memory, bandwidth, compute capability.

Decode of a transformer is memory-bandwidth bound, so bandwidth is how rules compare what two GPUs
can serve. Compute capability says which quantization kernels vLLM has (FP8 natively from 8.9,
FP8 weight-only through Marlin from 8.0, INT8 W8A8 from 7.5). Figures are NVIDIA's datasheets.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GpuSpec", "spec", "GIB"]

GIB = 1024**3


@dataclass(frozen=True)
class GpuSpec:
    name: str
    mem_gib: int
    bandwidth_gbps: int  # memory bandwidth, GB/s
    compute_capability: float


_SPECS = {s.name.lower(): s for s in (
    GpuSpec("T4", 16, 320, 7.5),
    GpuSpec("V100", 16, 900, 7.0),
    GpuSpec("L4", 24, 300, 8.9),
    GpuSpec("A10G", 24, 600, 8.6),
    GpuSpec("A10", 24, 600, 8.6),
    GpuSpec("L40S", 48, 864, 8.9),
    GpuSpec("A100-40GB", 40, 1555, 8.0),
    GpuSpec("A100-80GB", 80, 2039, 8.0),
    GpuSpec("H100", 80, 3350, 9.0),
    GpuSpec("H100-NVL", 94, 3900, 9.0),
    GpuSpec("H200", 141, 4800, 9.0),
)}

_ALIASES = {"a100": "a100-40gb", "a100 sxm4 40gb": "a100-40gb", "a100 sxm4 80gb": "a100-80gb",
            "a100 80gb pcie": "a100-80gb", "h100 80gb hbm3": "h100", "h100 pcie": "h100", "h100 nvl": "h100-nvl",
            "a10g": "a10g", "l40s": "l40s", "tesla t4": "t4", "tesla v100": "v100"}


def spec(gpu: str | None) -> GpuSpec | None:
    """Specs by catalog or NVML name ("NVIDIA L4", "A100-SXM4-40GB", "l4"); None when unknown."""
    if not gpu:
        return None
    s = gpu.lower().replace("nvidia", "").replace("-sxm4-", " sxm4 ").strip()
    s = " ".join(s.split())
    if s in _SPECS:
        return _SPECS[s]
    s2 = _ALIASES.get(s) or _ALIASES.get(s.replace("-", " "))
    return _SPECS.get(s2) if s2 else None

"""GPU energy per window, from the sampler's rows, and its carbon.

The sampler writes one row per GPU per tick, on the tick boundaries that are also the cost
windows' boundaries. A window's energy per GPU is the difference of NVML's cumulative energy
counter between the samples on its two boundaries (integer millijoules, so consecutive windows
telescope to the counter's total exactly); where the counter is missing or went backwards (a
driver reload), mean power x window length. MIG devices are skipped: their energy is the
physical GPU's, counted once. No GPU data -> None, never 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["WindowEnergy", "window_energies", "co2e_g_per_mj"]

_MJ_PER_KWH = 3_600_000_000  # 3.6e6 J x 1000


@dataclass(frozen=True, slots=True)
class WindowEnergy:
    energy_mj: int
    source: str  # counter | power | mixed
    gpu_count: int


def window_energies(
    samples: Iterable[tuple[int, str, float | None, float | None]],
    start_ns: int,
    interval_ns: int,
    n_windows: int,
) -> list[WindowEnergy | None]:
    """Energy of windows ``[start + i*interval, start + (i+1)*interval)`` for i < n_windows.

    ``samples`` are ``(ts_ns, gpu_uuid, power_w, energy_j)`` of physical GPUs; each is snapped
    to the nearest boundary within half an interval (the closest sample wins).
    """
    half = interval_ns // 2
    snapped: dict[tuple[str, int], tuple[int, float | None, float | None]] = {}
    gpus: set[str] = set()
    for ts, gpu, power_w, energy_j in samples:
        k, off = divmod(ts - start_ns + half, interval_ns)
        if k < 0 or k > n_windows:
            continue
        dist = abs(off - half)
        prev = snapped.get((gpu, k))
        if prev is None or dist < prev[0]:
            snapped[(gpu, k)] = (dist, power_w, energy_j)
            gpus.add(gpu)
    length_s = interval_ns / 1e9
    out: list[WindowEnergy | None] = []
    for i in range(n_windows):
        total = 0
        used = set()
        n = 0
        for gpu in gpus:
            a = snapped.get((gpu, i))
            b = snapped.get((gpu, i + 1))
            ea = a[2] if a else None
            eb = b[2] if b else None
            if ea is not None and eb is not None and eb >= ea:
                total += round(eb * 1000) - round(ea * 1000)
                used.add("counter")
                n += 1
                continue
            powers = [p for p in (a[1] if a else None, b[1] if b else None) if p is not None]
            if powers:
                total += round(sum(powers) / len(powers) * length_s * 1000)
                used.add("power")
                n += 1
        out.append(WindowEnergy(total, used.pop() if len(used) == 1 else "mixed", n) if n else None)
    return out


def co2e_g_per_mj(gco2e_per_kwh: float | None, pue: float | None) -> float | None:
    """Grams CO2e per millijoule of GPU energy, facility overhead (PUE) included."""
    if gco2e_per_kwh is None:
        return None
    return gco2e_per_kwh * (pue or 1.0) / _MJ_PER_KWH

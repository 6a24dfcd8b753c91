"""GPU check: the real collector against real NVML for ``--duration`` seconds (default 30).

For a machine with an NVIDIA GPU and driver. Prints the devices found, what each tick read
(first and last reading per device, and how values moved), whether the energy counter agrees
with the power readings (energy delta vs. the integral of sampled power), what each NVML call
cost (count, mean, max, errors), which calls each device does not support, and the sampler's
CPU per tick. On a machine without a GPU or driver it says so and exits 0.

    .venv/bin/python benchmarks/gpu_check.py [--duration 30] [--interval 1] [--db PATH]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time

from infermeter.collectors import FakeNvml, GpuCollector, HostCollector, Nvml, Sampler
from infermeter.collectors.readings import GpuReading
from infermeter.store import open_store


class Keep:
    """Wraps the GPU collector to keep every reading, so the run can be summarised."""

    name = "gpu"

    def __init__(self, inner: GpuCollector) -> None:
        self.inner = inner
        self.readings: dict[str, list[GpuReading]] = {}

    @property
    def done(self) -> bool:
        return self.inner.done

    def collect(self, ts_ns: int):
        got = self.inner.collect(ts_ns)
        for r in got:
            self.readings.setdefault(r.uuid, []).append(r)
        return got

    def close(self) -> None:
        self.inner.close()


def fmt(v, unit: str = "") -> str:
    if v is None:
        return "-"
    return f"{v:,.1f}{unit}" if isinstance(v, float) else f"{v:,}{unit}"


def summarise(uuid: str, rs: list[GpuReading]) -> None:
    a, b = rs[0], rs[-1]
    kind = f"MIG of {a.parent_uuid}" if a.parent_uuid else "GPU"
    print(f"\n  [{a.index}] {a.name} ({kind})\n      {uuid}: {len(rs)} readings")
    for field, unit in (("utilization_pct", "%"), ("mem_utilization_pct", "%"), ("mem_used_bytes", " B"),
                        ("mem_total_bytes", " B"), ("power_w", " W"), ("power_limit_w", " W"), ("energy_j", " J"),
                        ("temperature_c", " C"), ("sm_clock_mhz", " MHz")):
        vals = [getattr(r, field) for r in rs if getattr(r, field) is not None]
        span = f"min {fmt(min(vals), unit)}  max {fmt(max(vals), unit)}" if vals else "not supported / not read"
        print(f"      {field:<20} first {fmt(getattr(a, field), unit):>22}  last {fmt(getattr(b, field), unit):>22}  {span}")
    print(f"      processes (last): {[(p.pid, p.used_mem_bytes) for p in b.processes] or 'none'}")
    pts = [(r.ts_ns, r.power_w, r.energy_j) for r in rs if r.power_w is not None and r.energy_j is not None]
    if len(pts) >= 2:
        integral = sum((t2 - t1) / 1e9 * (p1 + p2) / 2 for (t1, p1, _), (t2, p2, _) in zip(pts, pts[1:]))
        delta = pts[-1][2] - pts[0][2]
        ratio = delta / integral if integral else float("nan")
        print(f"      energy counter delta {delta:,.1f} J vs power integral {integral:,.1f} J (ratio {ratio:.3f}; "
              "1.0 means the counter and the power readings agree)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--db", default=None, help="store file to write the samples to (default: a temporary one)")
    ap.add_argument("--fake", action="store_true", help="read FakeNvml.standard() instead (to try the script without a GPU)")
    args = ap.parse_args()

    nvml = Nvml(FakeNvml.standard() if args.fake else None, timed=True)
    if not nvml.available():
        print(f"gpu_check: no NVIDIA GPU/driver on this machine ({nvml.unavailable_reason}); nothing to check.")
        return 0
    gpu = GpuCollector(nvml)
    devices = gpu.devices()
    print(f"gpu_check: NVML found {len(devices)} device(s):")
    for d in devices:
        print(f"  [{d.index}] {d.name}  {d.uuid}" + (f"  (MIG of {d.parent_uuid})" if d.parent_uuid else "")
              + ("  MIG enabled" if d.mig_enabled else ""))
    if not devices:
        return 0
    nvml.stats.clear()  # enumeration is not what a tick costs

    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(args.db or os.path.join(tmp, "gpu_check.duckdb")).start()
        keep = Keep(gpu)
        sampler = Sampler([HostCollector(), keep], store, interval_s=args.interval)
        print(f"\nsampling every {args.interval:g}s for {args.duration:g}s ...", flush=True)
        started = time.time_ns()
        sampler.start()
        threading.Event().wait(args.duration)  # real time passing is what this check is about
        sampler.shutdown()
        store.force_flush()
        counts = store.query("samples.counts")[0]
        store.shutdown()

    st = sampler.stats()
    expected = int((time.time_ns() - started) / 1e9 / args.interval)
    print(f"\nticks {st['ticks']} (about {expected} expected), missed {st['ticks_missed']}, collector errors "
          f"{st['collector_errors'] or 'none'}, rows stored {counts}")
    print(f"sampler CPU per tick: mean {st['tick_cpu_ms_mean']:.3f} ms, max {st['tick_cpu_ms_max']:.3f} ms (goal <= 1 ms)")
    print("\nwhat was read:")
    for uuid, rs in keep.readings.items():
        summarise(uuid, rs)
    print("\nNVML calls (per call):")
    print(f"  {'function':<42} {'calls':>7} {'mean us':>9} {'max us':>9} {'errors':>7}")
    for fn, s in sorted(nvml.stats.items(), key=lambda kv: -kv[1].total_ns):
        print(f"  {fn:<42} {s.calls:>7} {s.total_ns / max(s.calls, 1) / 1e3:>9.1f} {s.max_ns / 1e3:>9.1f} {s.errors:>7}")
    print("\nunsupported calls, per device (read once, then not asked again):")
    for d in devices:
        print(f"  [{d.index}] {d.uuid}: {', '.join(sorted(d.unsupported)) or 'none'}")
    if keep.inner.read_errors:
        print(f"\ndevices that could not be read at some tick: {keep.inner.read_errors} device-ticks (see the log)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Generate a scenario's requests and the samples a real agent would have taken meanwhile.

Everything is on a simulated clock starting at ``start_ns`` and seeded: the same scenario, hours and
seed give the same rows. Requests become :class:`~infermeter.records.InferenceRecord` rows with
``source="simulator"``; ticks become ``gpu_samples``, ``host_samples`` and vLLM-style
``server_samples`` rows (the normalised metric names the scraper writes).
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..records import CostSource, InferenceRecord, Operation, Source, Status
from .scenarios import Endpoint, Scenario
from .serving import ServingModel, serve_closed, serve_open

__all__ = ["Workload", "generate"]

NS = 1_000_000_000
_GIB = 1024**3
_TDP_W = {"t4": 70, "l4": 72, "a10g": 300, "a10": 150, "l40s": 350, "v100": 300, "a100-40gb": 400,
          "a100-80gb": 400, "h100": 700, "h100-nvl": 400, "h200": 700}


@dataclass
class Workload:
    """What :func:`generate` made: rows per table, and totals to report."""

    records: list[InferenceRecord] = field(default_factory=list)
    gpu_rows: list[tuple[Any, ...]] = field(default_factory=list)
    host_rows: list[tuple[Any, ...]] = field(default_factory=list)
    server_rows: list[tuple[Any, ...]] = field(default_factory=list)
    end_ns: int = 0  # the last tick (the samples cover every request's end)


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 50:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _lognormal(rng: random.Random, mean: float, sigma: float) -> int:
    return max(1, int(math.exp(rng.gauss(math.log(mean) - sigma * sigma / 2, sigma))))


def _minute_shape(sc: Scenario, t_s: float, start_ns: int) -> float:
    minute_abs = (start_ns // NS + int(t_s)) // 60
    weekday = (minute_abs // 1440 + 3) % 7  # 1970-01-01 was a Thursday
    return sc.shape(weekday, minute_abs % 1440)


def _arrivals(sc: Scenario, rng: random.Random, start_ns: int, hours: float) -> list[float]:
    norm = sum(sc.shape(0, m) for m in range(1440)) or 1.0  # a Monday's shape carries the daily volume
    per_unit = sc.requests_per_day / norm
    out: list[float] = []
    for minute in range(int(hours * 60)):
        lam = per_unit * _minute_shape(sc, minute * 60.0, start_ns)
        base = minute * 60.0
        out.extend(base + 60.0 * rng.random() for _ in range(_poisson(rng, lam)))
    out.sort()
    return out


def generate(sc: Scenario, m: ServingModel, *, start_ns: int, hours: float, seed: int, host: str,
             gpu_name: str, vcpus: int, interval_s: float) -> Workload:
    rng = random.Random(seed)
    horizon = hours * 3600.0
    popular = [rng.getrandbits(64) - (1 << 63) for _ in range(300)]
    weights = [e.share for e in sc.endpoints]

    def tokens() -> tuple[int, int]:
        return _lognormal(rng, sc.input_tokens_mean, sc.token_sigma), _lognormal(rng, sc.output_tokens_mean, sc.token_sigma)

    if sc.concurrency:
        peak = max(sc.shape(d, mm) for d in range(7) for mm in range(0, 1440, 15)) or 1.0
        served = serve_closed(lambda t: round(sc.concurrency * _minute_shape(sc, t, start_ns) / peak), horizon, tokens, m)
        arrivals = [s[0] for s in served]
        starts, ins, outs, ends, ttfts = arrivals, [s[1] for s in served], [s[2] for s in served], [s[3] for s in served], [s[4] for s in served]
    else:
        arrivals = _arrivals(sc, rng, start_ns, hours)
        pairs = [tokens() for _ in arrivals]
        ins, outs = [p[0] for p in pairs], [p[1] for p in pairs]
        starts, ends, ttfts = serve_open(arrivals, ins, outs, m)
    w = Workload()
    w.records = list(_records(sc, rng, start_ns, arrivals, ends, ttfts, ins, outs, weights, popular))
    last = max([horizon, *ends]) if ends else horizon
    ticks = int(math.ceil(last / interval_s)) + 1
    w.end_ns = start_ns + int((ticks - 1) * interval_s * NS)
    _samples(w, m, start_ns, arrivals, starts, ends, ins, outs, ticks, interval_s, host, gpu_name, vcpus)
    return w


def _records(sc: Scenario, rng: random.Random, start_ns: int, arrivals: list[float], ends: list[float],
             ttfts: list[float], ins: list[int], outs: list[int], weights: list[float],
             popular: list[int]) -> Iterator[InferenceRecord]:
    endpoints: list[Endpoint] = list(sc.endpoints)
    for ta, te, ttft, n_in, n_out in zip(arrivals, ends, ttfts, ins, outs):
        ep = rng.choices(endpoints, weights)[0] if len(endpoints) > 1 else endpoints[0]
        failed = rng.random() < sc.error_rate
        if rng.random() < sc.repeat_share:
            prompt_hash = popular[min(len(popular) - 1, int(len(popular) * rng.random() ** 3))]
        else:
            prompt_hash = rng.getrandbits(64) - (1 << 63)
        yield InferenceRecord(
            start_time_ns=start_ns + int(ta * NS), duration_s=te - ta, operation=Operation.CHAT,
            source=Source.SIMULATOR, status=Status.ERROR if failed else Status.OK,
            ttft_s=ttft if ep.streaming else None, request_model=sc.model, response_model=sc.model, provider="vllm",
            endpoint=ep.endpoint, server_address="10.0.0.5:8000", tenant=rng.choice(ep.tenants),
            error_type="timeout" if failed else None, finish_reason=None if failed else "stop", streaming=ep.streaming,
            input_tokens=n_in, output_tokens=n_out, cost_source=CostSource.GPU_TIME,
            prompt_hash=prompt_hash, request_id=rng.getrandbits(63),
        )


def _samples(w: Workload, m: ServingModel, start_ns: int, arrivals: list[float], starts: list[float],
             ends: list[float], ins: list[int], outs: list[int], ticks: int, interval_s: float, host: str,
             gpu_name: str, vcpus: int) -> None:
    """One row per tick and table: what a sampler and a /metrics scraper would have read."""
    s_sorted, e_sorted = sorted(starts), sorted(ends)
    kv_start = sorted(zip(starts, (i + o / 2 for i, o in zip(ins, outs))))
    kv_end = sorted(zip(ends, (i + o / 2 for i, o in zip(ins, outs))))
    kv_start_ts, kv_end_ts = [t for t, _ in kv_start], [t for t, _ in kv_end]
    kv_start_cum, kv_end_cum = _cumsum(x for _, x in kv_start), _cumsum(x for _, x in kv_end)
    busy = [0.0] * ticks  # request-seconds being served in (tick - 1, tick]
    for ts, te in zip(starts, ends):
        k0, k1 = int(ts // interval_s), int(te // interval_s)
        for k in range(k0, min(k1, ticks - 2) + 1):
            lo, hi = max(ts, k * interval_s), min(te, (k + 1) * interval_s)
            if hi > lo:
                busy[k + 1] += hi - lo
    key = gpu_name.lower().replace("nvidia ", "")
    tdp = _TDP_W.get(key, 300)
    idle_w = 0.22 * tdp
    uuids = [f"GPU-sim-{host}-{i}" for i in range(m.gpus)]
    energy = [1.0e6] * m.gpus
    mem_used = int(m.mem_total_bytes * 0.9) + int(0.4 * _GIB)
    mem_host = vcpus * 4 * _GIB
    url = "http://10.0.0.5:8000/metrics"
    for k in range(ticks):
        t = k * interval_s
        ts_ns = start_ns + int(t * NS)
        started = bisect.bisect_right(s_sorted, t)
        finished = bisect.bisect_right(e_sorted, t)
        running = started - finished
        waiting = bisect.bisect_right(arrivals, t) - started
        kv_tokens = kv_start_cum[bisect.bisect_right(kv_start_ts, t)] - kv_end_cum[bisect.bisect_right(kv_end_ts, t)]
        mean_running = busy[k] / interval_s
        util = 0.0 if mean_running <= 0 else min(99.0, 100 * min(1.0, mean_running) * (0.25 + 0.75 * (1 - math.exp(-mean_running / 24))))
        power = idle_w + (tdp - idle_w) * util / 100
        for i, uuid in enumerate(uuids):
            energy[i] += power * interval_s
            w.gpu_rows.append((ts_ns, host, uuid, i, gpu_name, None, round(util, 1), round(util * 0.8, 1), mem_used,
                               m.mem_total_bytes, round(power, 1), float(tdp), round(energy[i], 1),
                               round(35 + 40 * util / 100, 1), 1500))
        w.host_rows.append((ts_ns, host, round(3 + 12 * util / 100, 1), vcpus, int(mem_host * 0.3), mem_host,
                            4242, 3, round(40 + 60 * util / 100, 1), 6 * _GIB))
        for metric, value in (("requests_running", float(running)), ("requests_waiting", float(max(0, waiting))),
                              ("kv_cache_usage", min(1.0, kv_tokens / m.kv_capacity_tokens))):
            w.server_rows.append((ts_ns, host, url, "vllm", metric, round(value, 4)))


def _cumsum(xs: Iterator[float]) -> list[float]:
    out = [0.0]
    for x in xs:
        out.append(out[-1] + x)
    return out

"""Run a scenario into a store: requests, samples and the box's price, then the cost attribution.

The clock is simulated: by default the run ends at the most recent Saturday 00:00 UTC, so its last
day is a weekday (a school day for ``tutoring``) and ``infermeter recommend``'s default 24-hour
window has something to judge. Rows go through ``Store.submit`` a day at a time; the cost
attribution (:class:`infermeter.cost.attribution.Attribution`, on the same simulated clock)
finalises each day's windows as the day closes, as the agent would have.
"""

from __future__ import annotations

import logging
import time
from bisect import bisect_left
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ..config import Settings
from ..errors import InfermeterError
from ..rules.facts import model_size
from ..rules.gpu_specs import GIB, spec
from ..store import open_store, queries
from .scenarios import SCENARIOS, Scenario
from .serving import ServingModel
from .workload import NS, generate

__all__ = ["simulate", "SimulationResult", "default_start_ns", "SimulationError"]

logger = logging.getLogger(__name__)

DAY_NS = 86400 * NS
_GPU_NAMES = {"a100-40gb": "NVIDIA A100-SXM4-40GB", "a100-80gb": "NVIDIA A100-SXM4-80GB", "h100": "NVIDIA H100 80GB HBM3"}


class SimulationError(InfermeterError):
    """A scenario cannot be simulated as asked (unknown scenario or instance, a model that does not fit)."""


@dataclass(frozen=True)
class SimulationResult:
    scenario: Scenario
    db: str
    start_ns: int
    end_ns: int
    host: str
    requests: int
    input_tokens: int
    output_tokens: int
    gpu_samples: int
    instance: str
    hourly_usd: Decimal | None
    instance_cost_usd: Decimal | None
    idle_cost_usd: Decimal | None
    unpriced_requests: int
    wall_s: float


def default_start_ns(hours: float, now_ns: int | None = None) -> int:
    """``hours`` before the most recent Saturday 00:00 UTC (at or before now)."""
    now = now_ns or time.time_ns()
    midnight = now - now % DAY_NS
    days_since_saturday = (midnight // DAY_NS + 3 - 5) % 7  # epoch day 0 was a Thursday (3); Saturday is 5
    return midnight - days_since_saturday * DAY_NS - int(hours * 3600 * NS)


def serving_model(sc: Scenario, catalog: Any) -> tuple[ServingModel, Any, str]:
    inst = catalog.instance(sc.instance)
    if inst is None:
        raise SimulationError(f"instance {sc.instance!r} is not in the price catalog (see `infermeter prices`)")
    gpu = spec(inst.gpu_type)
    params, bits = model_size(sc.model)
    if gpu is None:
        raise SimulationError(f"no datasheet figures for GPU {inst.gpu_type!r} of {sc.instance}")
    if params is None:
        raise SimulationError(f"cannot tell the size of model {sc.model!r} from its name; put it in (e.g. 'my-model-8b')")
    m = ServingModel(params, bits, gpu.bandwidth_gbps, (inst.gpu_memory_gib or gpu.mem_gib) * GIB, inst.gpu_count,
                     sc.max_num_seqs)
    if m.weights_bytes > 0.85 * m.mem_total_bytes * m.gpus:
        raise SimulationError(f"{sc.model} ({m.weights_bytes / GIB:.0f} GiB of weights at {bits}-bit) does not fit "
                              f"{inst.gpu_count} x {inst.gpu_type} ({m.mem_total_bytes / GIB:.0f} GiB each) of {inst.instance_type}")
    name = _GPU_NAMES.get(inst.gpu_type.lower(), f"NVIDIA {inst.gpu_type}")
    return m, inst, name


def simulate(db: str, scenario: str | Scenario, *, hours: float = 168.0, seed: int = 1, start_ns: int | None = None,
             interval_s: float = 60.0, overrides: dict[str, Any] | None = None) -> SimulationResult:
    """Write ``hours`` of ``scenario`` into the store ``db`` (a new or empty one) and attribute its cost."""
    from ..cost.attribution import Attribution
    from ..cost.catalog import cached_catalog

    t0 = time.perf_counter()
    if isinstance(scenario, str):
        if scenario not in SCENARIOS:
            raise SimulationError(f"no scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
        scenario = SCENARIOS[scenario]
    sc = scenario.with_overrides(**(overrides or {}))
    if hours <= 0 or interval_s <= 0:
        raise SimulationError("--hours and --sample-interval must be positive")
    catalog = cached_catalog()
    m, inst, gpu_name = serving_model(sc, catalog)
    interval_ns = int(interval_s * NS)
    start = default_start_ns(hours) if start_ns is None else start_ns
    start -= start % interval_ns
    host = f"sim-{sc.name}"
    store = open_store(db)
    try:
        existing = queries.run_one(store.cursor(), "requests.count")["n"]
        if existing:
            raise SimulationError(f"{db} already holds {existing:,} requests; simulate into a new file")
        store.start()
        w = generate(sc, m, start_ns=start, hours=hours, seed=seed, host=host, gpu_name=gpu_name,
                     vcpus=inst.vcpus or 8, interval_s=interval_s)
        region = sc.region if sc.region and catalog.carbon(sc.region) else None
        settings = Settings(instance=inst.instance_type, pricing=sc.pricing, region=region,
                            sample_interval_s=interval_s, attribution_delay_s=0.0)
        clock = [start]
        att = Attribution(store, settings, catalog, host=host, clock=lambda: clock[0])
        att.force_flush()  # begins at the simulated start: records the box's price from then on
        _write_by_day(store, att, clock, w, start)
        store.force_flush()
        cur = store.cursor()
        totals = cur.execute(
            "SELECT count(*), coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0), "
            "count(*) FILTER (WHERE cost_usd IS NULL) FROM requests").fetchone()
        cost = cur.execute("SELECT sum(instance_cost_usd), sum(idle_cost_usd) FROM cost_windows").fetchone()
        cur.close()
    finally:
        store.shutdown()
    return SimulationResult(sc, db, start, w.end_ns, host, totals[0], int(totals[1]), int(totals[2]), len(w.gpu_rows),
                            inst.instance_type, inst.hourly_usd(sc.pricing), cost[0], cost[1], totals[3],
                            time.perf_counter() - t0)


def _write_by_day(store: Any, att: Any, clock: list[int], w: Any, start: int) -> None:
    """Submit each simulated day's rows, then let the attribution close that day's windows."""
    rec_ts = [r.start_time_ns for r in w.records]
    tables = [("gpu_samples", w.gpu_rows), ("host_samples", w.host_rows), ("server_samples", w.server_rows)]
    sample_ts = {name: [row[0] for row in rows] for name, rows in tables}
    day = start
    while day <= w.end_ns:
        nxt = min(day + DAY_NS, w.end_ns + 1)
        for name, rows in tables:
            ts = sample_ts[name]
            store.submit(name, rows[bisect_left(ts, day):bisect_left(ts, nxt)])
        chunk = w.records[bisect_left(rec_ts, day):bisect_left(rec_ts, nxt)]
        store.write_records(chunk)
        att.consume(chunk)
        store.force_flush(60.0)
        clock[0] = min(nxt, w.end_ns)
        att.force_flush(60.0)
        day = nxt

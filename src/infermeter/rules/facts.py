"""Measured facts over a window: the only input rules get, every number from a named query.

:func:`measure` runs the ``rules.*`` queries of :mod:`infermeter.store.queries.rules` (and the
cost tables when present) over ``[since_ns, until_ns)`` and returns one frozen
:class:`WorkloadFacts`. Unknown stays ``None``: no GPU samples means no GPU facts, not zeros.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ..store import queries

__all__ = ["WorkloadFacts", "measure", "model_size", "latest_data_ns"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkloadFacts:
    since_ns: int
    until_ns: int
    # requests
    requests: int = 0
    ok: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    mean_input_tokens: float | None = None
    mean_output_tokens: float | None = None
    request_s: float = 0.0  # sum of request durations
    latency_p50_s: float | None = None
    latency_p95_s: float | None = None
    ttft_p50_s: float | None = None
    streaming: int = 0
    first_request_ns: int | None = None
    last_request_ns: int | None = None
    model: str | None = None  # the model most requests went to
    models: tuple[tuple[str, int], ...] = ()
    endpoints: tuple[dict[str, Any], ...] = ()
    # activity (union of request intervals) and serverless islands
    busy_s: float = 0.0
    busy_islands: int = 0
    keep_warm_s: float = 0.0
    warm_s: float = 0.0  # container-up time if scaled to zero after keep_warm_s of idleness
    cold_starts: int = 0
    longest_idle_s: float = 0.0
    active_minutes: int = 0
    load_mean: float | None = None  # mean concurrency in active minutes
    load_p95: float | None = None
    load_max: float | None = None
    load_histogram: tuple[tuple[float, int], ...] = ()  # (concurrency, minutes at it)
    replicas: int = 1  # model-server replicas seen (GPU hosts or server addresses)
    # GPUs (physical devices; MIG slices are not counted)
    gpu_name: str | None = None
    gpu_count: int = 0
    gpu_samples: int = 0
    gpu_mem_total_bytes: int | None = None  # per GPU
    gpu_mem_used_max_bytes: int | None = None  # the most any GPU held
    gpu_util_mean_pct: float | None = None
    gpu_util_p95_pct: float | None = None
    gpu_util_busy_mean_pct: float | None = None
    gpu_first_ns: int | None = None
    gpu_last_ns: int | None = None
    # model server (vLLM/TGI normalised metrics): {metric: {"mean", "p95", "max", "samples"}}
    server: dict[str, dict[str, float | None]] = field(default_factory=dict)
    running_busy_mean: float | None = None  # mean running batch while requests ran
    kv_cache_busy_mean: float | None = None
    # prompt repeats
    hashed_requests: int = 0
    repeat_requests: int = 0
    repeat_request_s: float = 0.0
    hashed_request_s: float = 0.0
    # the instance and its cost (from the cost tables)
    host: str | None = None
    instance_type: str | None = None
    cloud: str | None = None
    pricing: str | None = None
    hourly_usd: Decimal | None = None
    instance_gpu_type: str | None = None
    instance_gpu_count: int | None = None
    region: str | None = None
    window_instance_cost_usd: Decimal | None = None
    window_idle_cost_usd: Decimal | None = None
    window_usage_cost_usd: Decimal | None = None
    cost_windows_s: float = 0.0

    @property
    def window_s(self) -> float:
        return (self.until_ns - self.since_ns) / 1e9

    @property
    def observed_s(self) -> float:
        """The span the facts speak for: from the first request or sample in the window to its end."""
        firsts = [x for x in (self.first_request_ns, self.gpu_first_ns) if x is not None]
        return (self.until_ns - min(firsts)) / 1e9 if firsts else 0.0

    @property
    def duty_cycle(self) -> float:
        """Share of the observed time with at least one request in flight."""
        return self.busy_s / self.observed_s if self.observed_s > 0 else 0.0

    @property
    def repeat_share(self) -> float:
        return self.repeat_requests / self.hashed_requests if self.hashed_requests else 0.0

    def metric(self, name: str, stat: str = "mean") -> float | None:
        m = self.server.get(name)
        return None if m is None else m.get(stat)

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        d = asdict(self)
        d.update(window_s=self.window_s, observed_s=self.observed_s, duty_cycle=self.duty_cycle)
        return d


_SIZE = re.compile(r"(?:(\d+)x)?(\d+(?:\.\d+)?)b(?![a-z0-9])")
_BITS = (
    (re.compile(r"(int4|awq|gptq|q4|4bit|w4a16|nf4)"), 4),
    (re.compile(r"(fp8|int8|w8a8|w8a16|q8|8bit)"), 8),
)


def model_size(model: str | None) -> tuple[float | None, int]:
    """Billions of parameters and weight bits, read from a model name ("llama-3.1-8b-instruct-awq")."""
    if not model:
        return None, 16
    name = model.lower().rsplit("/", 1)[-1]
    m = _SIZE.search(name)
    params = None
    if m:
        params = float(m.group(2)) * (int(m.group(1)) if m.group(1) else 1)
    bits = next((b for rx, b in _BITS if rx.search(name)), 16)
    return params, bits


def latest_data_ns(con: Any) -> tuple[int | None, int | None]:
    """(earliest, latest) wall-clock ns of any request or sample in the store."""
    row = queries.run_one(con, "rules.latest_ns") or {}
    return row.get("earliest_ns"), row.get("latest_ns")


def _has_table(con: Any, name: str) -> bool:
    row = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]).fetchone()
    return bool(row and row[0])


def measure(con: Any, since_ns: int, until_ns: int, *, keep_warm_s: float = 300.0, busy_pct: float = 5.0) -> WorkloadFacts:
    """Every fact the rules use, over ``[since_ns, until_ns)``."""
    w = {"since_ns": since_ns, "until_ns": until_ns}
    f: dict[str, Any] = dict(w)
    r = queries.run_one(con, "rules.requests", **w) or {}
    f.update(
        requests=r.get("requests") or 0, ok=r.get("ok") or 0,
        input_tokens=int(r.get("input_tokens") or 0), output_tokens=int(r.get("output_tokens") or 0),
        mean_input_tokens=r.get("mean_input_tokens"), mean_output_tokens=r.get("mean_output_tokens"),
        request_s=float(r.get("request_s") or 0.0), latency_p50_s=r.get("latency_p50_s"),
        latency_p95_s=r.get("latency_p95_s"), ttft_p50_s=r.get("ttft_p50_s"), streaming=r.get("streaming") or 0,
        first_request_ns=r.get("first_ns"), last_request_ns=r.get("last_ns"),
    )
    models = queries.run(con, "rules.models", **w)
    f["models"] = tuple((m["model"], m["requests"]) for m in models)
    f["model"] = models[0]["model"] if models else None
    f["endpoints"] = tuple(queries.run(con, "rules.endpoints", **w))
    if f["requests"]:
        busy = queries.run_one(con, "rules.islands", gap_ns=0, **w) or {}
        warm = queries.run_one(con, "rules.islands", gap_ns=int(keep_warm_s * 1e9), **w) or {}
        f.update(busy_s=float(busy["active_s"]), busy_islands=busy["islands"], keep_warm_s=keep_warm_s,
                 cold_starts=warm["islands"])
        # each warm period stays up keep_warm_s after its last request (not past the window's end)
        tail = min(keep_warm_s, max(0.0, (until_ns - warm["last_ns"]) / 1e9))
        f["warm_s"] = float(warm["active_s"]) + keep_warm_s * (warm["islands"] - 1) + tail
        edges = [(busy["first_ns"] - since_ns) / 1e9, (until_ns - busy["last_ns"]) / 1e9]
        f["longest_idle_s"] = max([float(busy["longest_inner_gap_s"]), *edges])
        c = queries.run_one(con, "rules.concurrency", **w) or {}
        f.update(active_minutes=c.get("active_minutes") or 0, load_mean=c.get("load_mean"),
                 load_p95=c.get("load_p95"), load_max=c.get("load_max"))
        f["load_histogram"] = tuple((float(h["load"]), h["minutes"]) for h in queries.run(con, "rules.load_histogram", **w))
        p = queries.run_one(con, "rules.prompt_repeats", **w) or {}
        f.update(hashed_requests=p.get("hashed") or 0, repeat_requests=p.get("repeats") or 0,
                 repeat_request_s=float(p.get("repeat_request_s") or 0.0),
                 hashed_request_s=float(p.get("hashed_request_s") or 0.0))
    f.update(_gpu_facts(queries.run(con, "rules.gpus", busy_pct=busy_pct, **w)))
    rep = queries.run_one(con, "rules.replicas", **w) or {}
    f["replicas"] = max(1, rep.get("gpu_hosts") or 0, rep.get("servers") or 0)
    server = {m["metric"]: {k: m[k] for k in ("mean", "p95", "max", "samples")}
              for m in queries.run(con, "rules.server_metrics", **w)}
    f["server"] = server
    if "requests_running" in server:
        f["running_busy_mean"] = (queries.run_one(con, "rules.server_metric_busy", metric="requests_running", **w) or {}).get("mean")
        if "kv_cache_usage" in server:
            f["kv_cache_busy_mean"] = (queries.run_one(con, "rules.server_metric_busy", metric="kv_cache_usage", **w) or {}).get("mean")
    if _has_table(con, "instance_prices"):
        f.update(_cost_facts(con, w))
    return WorkloadFacts(**f)


def _gpu_facts(gpus: list[dict[str, Any]]) -> dict[str, Any]:
    if not gpus:
        return {}
    samples = sum(g["samples"] for g in gpus)

    def wavg(key: str, weight: str = "samples") -> float | None:
        pairs = [(g[key], g[weight]) for g in gpus if g[key] is not None and g[weight]]
        n = sum(wt for _, wt in pairs)
        return sum(v * wt for v, wt in pairs) / n if n else None

    totals = [g["mem_total_bytes"] for g in gpus if g["mem_total_bytes"]]
    used = [g["mem_used_max_bytes"] for g in gpus if g["mem_used_max_bytes"] is not None]
    p95s = [g["util_p95_pct"] for g in gpus if g["util_p95_pct"] is not None]
    return {
        "gpu_name": gpus[0]["gpu_name"], "gpu_count": len(gpus), "gpu_samples": samples,
        "gpu_mem_total_bytes": min(totals) if totals else None,
        "gpu_mem_used_max_bytes": max(used) if used else None,
        "gpu_util_mean_pct": wavg("util_mean_pct"), "gpu_util_p95_pct": max(p95s) if p95s else None,
        "gpu_util_busy_mean_pct": wavg("util_busy_mean_pct", "busy_samples"),
        "gpu_first_ns": min(g["first_ns"] for g in gpus), "gpu_last_ns": max(g["last_ns"] for g in gpus),
    }


def _cost_facts(con: Any, w: dict[str, int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    inst = queries.run_one(con, "rules.instance", until_ns=w["until_ns"])
    if inst:
        out.update(host=inst["host"], instance_type=inst["instance_type"], cloud=inst["cloud"], pricing=inst["pricing"],
                   hourly_usd=inst["hourly_usd"], instance_gpu_type=inst["gpu_type"],
                   instance_gpu_count=inst["gpu_count"], region=inst["region"])
    c = queries.run_one(con, "rules.cost_windows", **w) or {}
    out.update(window_instance_cost_usd=c.get("instance_cost_usd"), window_idle_cost_usd=c.get("idle_cost_usd"),
               window_usage_cost_usd=c.get("usage_cost_usd"), cost_windows_s=float(c.get("covered_s") or 0.0))
    return out

"""Views of the sampled hardware, for the API, the TUI (``infermeter top``) and the CLI.

``gpus``: each GPU's latest reading with its processes and a ``history`` of bucketed averages;
``host``: the host's ``latest`` reading and ``history``; ``servers``: each scraped model server's
latest normalised metrics and the history of its load gauges. "Latest" is live from the agent's
sampler when there is one, else the last tick stored; the shapes are the same either way.

Parameters: ``since`` (window of the history, a duration or ``all``; default ``15m``), ``step``
(bucket; default a sixtieth of the window, at least 1s), ``until_ns`` (end of the window; given,
"latest" means the last tick before it, read from the store).
"""

from __future__ import annotations

import time
from typing import Any

from ..agent.views import ViewContext, view
from ..config import parse_duration
from ..store import queries
from .readings import to_dict

__all__ = ["gpus_view", "host_view", "servers_view"]

BUCKETS = 60


def _window(ctx: ViewContext, params: dict[str, str]) -> dict[str, int]:
    """since_ns/until_ns/step_ns for the history queries, from the view's parameters."""
    try:
        until = int(params["until_ns"]) if params.get("until_ns") else time.time_ns() + 1
    except ValueError as e:
        raise ValueError(f"bad until_ns={params['until_ns']!r}: not an integer") from e
    since_raw = params.get("since") or "15m"
    if since_raw == "all":
        first = queries.run_one(ctx.con, "samples.first_ts")
        since = (first or {}).get("ts_ns") or until
    else:
        since = until - int(_seconds(since_raw, "since") * 1e9)
    step_ns = int(_seconds(params["step"], "step") * 1e9) if params.get("step") else max(10**9, (until - since) // BUCKETS)
    return {"since_ns": since, "until_ns": until, "step_ns": step_ns}


def _seconds(raw: str, key: str) -> float:
    try:
        v = parse_duration(raw)
    except ValueError as e:
        raise ValueError(f"bad {key}={raw!r}: {e}") from e
    if v <= 0:
        raise ValueError(f"bad {key}={raw!r}: must be positive")
    return v


def _live(ctx: ViewContext, params: dict[str, str]) -> Any:
    """The agent's sampler snapshot, when the caller asked for "now" and there is one."""
    sampler = getattr(ctx.agent, "sampler", None)
    if sampler is None or params.get("until_ns"):
        return None
    snap = sampler.latest()
    return snap if snap.ts_ns is not None else None


def _meta(ctx: ViewContext, w: dict[str, int], live: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"live": live, "since_ns": w["since_ns"], "until_ns": w["until_ns"], "step_s": w["step_ns"] / 1e9}
    sampler = getattr(ctx.agent, "sampler", None)
    if sampler is not None:
        out["sampler"] = sampler.stats()
    return out


@view("gpus")
def gpus_view(ctx: ViewContext, params: dict[str, str]) -> dict[str, Any]:
    w = _window(ctx, params)
    snap = _live(ctx, params)
    if snap is not None:
        gpus, ts = to_dict(snap.gpus), snap.ts_ns
    else:
        gpus = queries.run(ctx.con, "samples.gpu_latest", until_ns=w["until_ns"])
        ts = gpus[0]["ts_ns"] if gpus else None
        procs: dict[str, list[dict[str, Any]]] = {}
        if gpus:
            for p in queries.run(ctx.con, "samples.gpu_processes_at", ts_ns=ts):
                procs.setdefault(p.pop("uuid"), []).append(p)
        for g in gpus:
            g["processes"] = procs.get(g["uuid"], [])
    for g in gpus:
        g.pop("ts_ns", None)
    history: dict[str, list[dict[str, Any]]] = {}
    for r in queries.run(ctx.con, "samples.gpu_history", **w):
        r.pop("name", None)
        history.setdefault(r.pop("uuid"), []).append(r)
    for g in gpus:
        g["history"] = history.get(g["uuid"], [])
    return {"ts_ns": ts, "gpus": gpus, **_meta(ctx, w, snap is not None)}


@view("host")
def host_view(ctx: ViewContext, params: dict[str, str]) -> dict[str, Any]:
    w = _window(ctx, params)
    snap = _live(ctx, params)
    latest = to_dict(snap.host) if snap is not None else queries.run_one(ctx.con, "samples.host_latest", until_ns=w["until_ns"])
    return {"latest": latest, "history": queries.run(ctx.con, "samples.host_history", **w), **_meta(ctx, w, snap is not None)}


@view("servers")
def servers_view(ctx: ViewContext, params: dict[str, str]) -> dict[str, Any]:
    w = _window(ctx, params)
    snap = _live(ctx, params)
    rows = ([to_dict(r) for r in snap.servers] if snap is not None
            else queries.run(ctx.con, "samples.server_latest", until_ns=w["until_ns"]))
    servers: dict[str, dict[str, Any]] = {}
    for r in rows:
        s = servers.setdefault(r["url"], {"url": r["url"], "kind": r["kind"], "ts_ns": r["ts_ns"], "metrics": {}, "history": {}})
        s["metrics"][r["metric"]] = r["value"]
    for r in queries.run(ctx.con, "samples.server_history", **w):
        s = servers.get(r["url"])
        if s is not None:
            s["history"].setdefault(r["metric"], []).append({"bucket_ns": r["bucket_ns"], "value": r["value"]})
    return {"servers": list(servers.values()), **_meta(ctx, w, snap is not None)}

"""A fixed store and fixed extra views for the TUI tests: known records at known times before a fixed clock."""

from __future__ import annotations

import os
import time
from decimal import Decimal
from typing import Any

import pytest

from infermeter.agent.api import Request, Response, json_response
from infermeter.agent.source import AgentSource
from infermeter.records import InferenceRecord

T0_NS = 1_750_000_000 * 10**9  # 2025-06-15 15:06:40 UTC: the clock every TUI test shows
S = 10**9

MODELS = ("llama-3.1-8b", "qwen2.5-32b", "bge-embed")
TENANTS = ("acme", "globex", "initech")

GIB = 2**30


def fixed_records() -> list[InferenceRecord]:
    """60 requests in the last 5 minutes, 30 more within the hour, 10 about a day ago.

    Per model (i % 3): llama is $0.0004 a request, qwen $0.0031, bge-embed has no price.
    Tenants cycle acme, globex, initech, (none); every 17th request (i % 17 == 5) failed.
    """
    recs = []
    for i in range(100):
        if i < 60:
            age_s = 2 + i * 4  # 2 s .. 238 s ago
        elif i < 90:
            age_s = 400 + (i - 60) * 100  # ~7 .. 55 minutes ago
        else:
            age_s = 20 * 3600 + (i - 90) * 60  # 20 hours ago
        model = MODELS[i % 3]
        priced = model != "bge-embed"
        recs.append(InferenceRecord(
            start_time_ns=T0_NS - age_s * S,
            duration_s=1.0 + (i % 7) * 0.25 if model == "qwen2.5-32b" else 0.05 + (i % 10) * 0.1,
            ttft_s=None if model == "bge-embed" else 0.02 + (i % 5) * 0.01,
            request_model=model,
            operation="embeddings" if model == "bge-embed" else "chat",
            provider="vllm",
            endpoint="/v1/embeddings" if model == "bge-embed" else "/v1/chat/completions",
            tenant=TENANTS[i % 4] if i % 4 < 3 else None,
            status="error" if i % 17 == 5 else "ok",
            error_type="TimeoutError" if i % 17 == 5 else None,
            input_tokens=100 + i,
            output_tokens=None if model == "bge-embed" else 20 + i % 13,
            cost_usd=(Decimal("0.0004") if model == "llama-3.1-8b" else Decimal("0.0031")) if priced else None,
            cost_source="catalog" if priced else None,
            request_id=1000 + i,
        ))
    return recs


# Fixed answers for the views other parts own, so the screens do not change when their figures do.
COSTS = {"burn_rate_usd_per_hour": 3.2, "spend_today_usd": 41.2, "projected_30d_usd": 2304.0, "instance": {"idle_share": 0.34}}

GPU_UUIDS = ("GPU-0f1e", "GPU-7a2b")


def gpu_sample_rows() -> list[tuple]:
    """Two L4 GPUs sampled every 30 s for the 2 hours before T0, in gpu_samples column order.

    GPU 0 was at 20% / 6 GiB / 25 W until 30 minutes before T0, then 87% / 18 GiB / 61 W;
    GPU 1 sat at 12% / 3 GiB / 24 W throughout.
    """
    rows = []
    for j in range(240):
        ts = T0_NS - (240 - j) * 30 * S
        busy = ts >= T0_NS - 1800 * S
        for k, (util, mem_gib, power) in enumerate(((87.0, 18, 61.0) if busy else (20.0, 6, 25.0), (12.0, 3, 24.0))):
            rows.append((ts, "gpu-box", GPU_UUIDS[k], k, "NVIDIA L4", None, util, None, mem_gib * GIB, 24 * GIB,
                         power, 72.0, 1000.0 * j, 50.0 + k, 1800))
    return rows


RECOMMENDATIONS = {  # the shape of the rules engine's view (infermeter.rules.views)
    "status": "ok", "message": None, "notes": [],
    "recommendations": [
        {"action": "consolidate_gpus", "title": "GPU 1 is idle 88% of the time: consolidate onto GPU 0",
         "savings_usd_month": 612.5, "combined_savings_usd_month": 612.5, "confidence": 0.9, "status": "recommended",
         "note": None, "how_to": "Move the bge-embed replicas to GPU 0 and release GPU 1.",
         "evidence": {"gpu_1_mean_utilization_pct": 12.0, "idle_cost_usd_per_day": 20.4,
                      "queries": ["samples.gpu_history"], "assumptions": ["traffic stays as in the last 24h"]}},
        {"action": "route_small_prompts", "title": "qwen2.5-32b answers short prompts llama-3.1-8b could take",
         "savings_usd_month": 95.0, "combined_savings_usd_month": 80.0, "confidence": 0.6, "status": "recommended",
         "note": None, "how_to": "Route prompts under 200 tokens to llama-3.1-8b.",
         "evidence": {"share_of_qwen_requests_under_200_tokens": 0.71}},
    ],
}


def serve_fixed(agent: Any, name: str, payload: dict[str, Any] | None = None, status: int = 200) -> None:
    """Make the agent's API answer ``/api/v1/<name>`` with a fixed payload (or an error status)."""

    def handler(req: Request) -> Response:
        if status != 200:
            return json_response({"error": f"{name} exploded"}, status)
        return json_response(payload)

    agent.api.route("GET", f"/api/v1/{name}", handler)


def fixed_source(agent: Any) -> AgentSource:
    """A source on the agent whose description (shown on screen) does not carry the ephemeral port."""
    src = AgentSource(agent.api_url, timeout_s=5.0)
    src.description = "agent http://127.0.0.1:9187"
    return src


@pytest.fixture(autouse=False)
def utc():
    """Clock times on screen in UTC, whatever the machine's zone."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


@pytest.fixture
def filled(agent, utc):
    """The conftest agent (real store, real API on an ephemeral port) holding the fixed records."""
    agent.store.write_records(fixed_records())
    agent.store.submit("gpu_samples", gpu_sample_rows())
    assert agent.store.force_flush()
    assert agent.store.written_rows >= 100 + 480
    return agent


def make_app(agent: Any, **kw: Any) -> Any:
    """The app on the agent, with the fixed clock; polls come from the keys under test, not the timer."""
    from infermeter.tui.app import TopApp

    kw.setdefault("interval_s", 60.0)
    return TopApp(fixed_source(agent), clock_ns=lambda: T0_NS, **kw)


async def first_poll(pilot: Any) -> None:
    """The first poll is on screen, and the recommendations (asked on their own thread) too."""
    app = pilot.app
    await app.wait_until(lambda: app.polls >= 1 and not app.snapshot.get("recommendations").pending)
    await pilot.pause()

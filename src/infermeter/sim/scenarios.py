"""Workload scenarios: who sends what, when, to which model on which box.

A scenario is data: a traffic shape (relative intensity per minute of the week, UTC taken as the
users' local time), a volume, token sizes, the serving setup (model, instance, the server's
concurrency limit) and the endpoints and tenants requests carry. ``closed_loop`` scenarios are
batch workers that keep a number of requests in flight instead of users arriving at random.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Scenario", "SCENARIOS", "Endpoint"]


@dataclass(frozen=True)
class Endpoint:
    """Where a share of the requests go: the route, who calls it, and how."""

    endpoint: str
    tenants: tuple[str, ...]
    share: float
    streaming: bool = True


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    model: str
    instance: str  # catalog instance type (its GPU, memory and price)
    shape: Callable[[int, int], float]  # (weekday 0=Monday, minute of day) -> relative intensity
    users: int = 0
    requests_per_user_day: float = 0.0  # on a day whose shape sums to the weekday norm
    rate_per_s: float | None = None  # average requests/s over a full weekday; wins over users x requests
    concurrency: int = 0  # closed loop: requests kept in flight at full shape (batch workers)
    max_num_seqs: int = 256  # the server's running-batch limit
    input_tokens_mean: float = 800.0
    output_tokens_mean: float = 150.0
    token_sigma: float = 0.6  # lognormal spread of token counts
    repeat_share: float = 0.0  # share of requests that resend a popular prompt
    endpoints: tuple[Endpoint, ...] = (Endpoint("/v1/chat/completions", ("app",), 1.0),)
    error_rate: float = 0.002
    pricing: str = "on_demand"
    region: str | None = "us-east-1"

    @property
    def requests_per_day(self) -> float:
        if self.rate_per_s is not None:
            return self.rate_per_s * 86400
        return self.users * self.requests_per_user_day

    def with_overrides(self, **changes: object) -> "Scenario":
        """A copy with the given fields changed (``None`` values are ignored)."""
        given = {k: v for k, v in changes.items() if v is not None}
        unknown = set(given) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"unknown scenario parameters: {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **given)


# -- traffic shapes ------------------------------------------------------------------------------


def _school_day(weekday: int, minute: int) -> float:
    """Tutoring: class periods 08:00-15:00 (a rush when an exercise starts), homework 16:00-21:00,
    nothing at night or at weekends."""
    if weekday >= 5:
        return 0.0
    h, m = divmod(minute, 60)
    if h == 7:
        return 0.15
    if 8 <= h < 15:
        if h == 12:
            return 0.25  # lunch
        return 0.3 if m < 5 else 1.3 if m < 25 else 0.9 if m < 50 else 0.5
    if h == 15:
        return 0.3
    if 16 <= h < 21:
        return 0.45 if h < 18 else 0.55 if h < 20 else 0.3
    if h == 21:
        return 0.1
    return 0.0


def _flat(weekday: int, minute: int) -> float:
    """Steady: around the clock, a gentle daily swing of +-10%."""
    return 1.0 + 0.1 * math.sin(2 * math.pi * (minute - 360) / 1440)


def _bursts(weekday: int, minute: int) -> float:
    """Bursty: a trickle in waking hours and short campaigns (two a day, 40 min) at 25x the trickle."""
    h = minute // 60
    if h < 7:
        return 0.0
    burst = any(start <= minute < start + 40 for start in (10 * 60 + 15 * (weekday % 3), 17 * 60 + 30 + 10 * weekday))
    return 25.0 if burst else 1.0


def _backlog(weekday: int, minute: int) -> float:
    """Batch-offline: workers drain a document backlog around the clock, harder at night."""
    h = minute // 60
    return 1.0 if h < 7 or h >= 20 else 0.6


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario(
        name="tutoring",
        description="a tutoring app for ~5,000 students on one always-on L4 (a fine-tuned Llama 3.1 8B, FP16): "
                    "school-day curve with a rush at the start of each class exercise, homework evenings, idle "
                    "nights and weekends; vLLM runs with --max-num-seqs 8",
        model="tutor-llama-3.1-8b", instance="g6.xlarge", shape=_school_day,
        users=5000, requests_per_user_day=4.0, max_num_seqs=8,
        input_tokens_mean=900, output_tokens_mean=120, repeat_share=0.04,
        endpoints=(Endpoint("/v1/chat/completions", ("school-a", "school-b", "school-c", "school-d"), 0.9),
                   Endpoint("/v1/hints", ("school-a", "school-b", "school-c", "school-d"), 0.1, streaming=False)),
    ),
    Scenario(
        name="steady",
        description="a support assistant at high, flat volume around the clock: Llama 3.1 70B (AWQ INT4) on one "
                    "always-on L40S, ~1 request/s",
        model="llama-3.1-70b-instruct-awq", instance="g6e.xlarge", shape=_flat,
        rate_per_s=1.0, max_num_seqs=64, input_tokens_mean=700, output_tokens_mean=200, repeat_share=0.05,
        endpoints=(Endpoint("/v1/chat/completions", ("support",), 1.0),),
    ),
    Scenario(
        name="bursty",
        description="a consumer app with a small daytime trickle and two 40-minute campaign bursts a day, "
                    "Llama 3.1 8B (FP16) on an always-on L40S",
        model="llama-3.1-8b-instruct", instance="g6e.xlarge", shape=_bursts,
        rate_per_s=0.12, max_num_seqs=32, input_tokens_mean=500, output_tokens_mean=160, repeat_share=0.12,
        endpoints=(Endpoint("/v1/chat/completions", ("app",), 1.0),),
    ),
    Scenario(
        name="batch-offline",
        description="document summarisation jobs: batch workers keep ~24 requests in flight around the clock "
                    "(tagged /v1/batch/summarize, tenant etl-nightly), Llama 3.1 70B (AWQ INT4) on an L40S",
        model="llama-3.1-70b-instruct-awq", instance="g6e.xlarge", shape=_backlog,
        concurrency=24, max_num_seqs=64, input_tokens_mean=2000, output_tokens_mean=300, token_sigma=0.4,
        endpoints=(Endpoint("/v1/batch/summarize", ("etl-nightly",), 1.0, streaming=False),),
        error_rate=0.001,
    ),
)}

"""How long a request takes on the simulated server: a small, explicit serving model.

Decode is memory-bandwidth bound: one step reads the weights once, so a step takes
``weights / (bandwidth x 0.85)`` and grows slowly with the running batch (attention and KV reads);
each running request gets one token per step. Prefill is compute-bound and much faster per token.
The server runs at most ``max_num_seqs`` requests at once; the rest wait, first come first served
(:func:`serve_open`). Batch workers keep a number of requests in flight (:func:`serve_closed`).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["ServingModel", "serve_open", "serve_closed"]


@dataclass(frozen=True)
class ServingModel:
    params_b: float
    bits: int
    bandwidth_gbps: float  # per GPU
    mem_total_bytes: int  # per GPU
    gpus: int
    max_num_seqs: int

    @property
    def weights_bytes(self) -> int:
        return int(self.params_b * 1e9 * self.bits / 8)

    @property
    def step0_s(self) -> float:
        """One decode step at batch 1 (the weights split over the GPUs, read in parallel)."""
        return self.weights_bytes / self.gpus / (self.bandwidth_gbps * 1e9 * 0.85)

    def step_s(self, batch: int) -> float:
        return self.step0_s * (1 + batch / 48)

    def prefill_s(self, tokens: int) -> float:
        tps = 3000.0 * (self.bandwidth_gbps * self.gpus / 300) * (8 / self.params_b)
        return tokens / tps

    @property
    def kv_bytes_per_token(self) -> int:
        return int(128 * 1024 * math.sqrt(self.params_b / 8))

    @property
    def kv_capacity_tokens(self) -> int:
        """KV cache tokens in what vLLM preallocates (--gpu-memory-utilization 0.9) after the weights."""
        pool = max(0, int(self.mem_total_bytes * 0.9) * self.gpus - self.weights_bytes)
        return max(1, pool // self.kv_bytes_per_token)


def serve_open(arrivals: Sequence[float], inputs: Sequence[int], outputs: Sequence[int],
               m: ServingModel) -> tuple[list[float], list[float], list[float]]:
    """Start, end and time-to-first-token of each arrival (seconds), first come first served.

    A request's decode speed is set by the running batch when it is admitted.
    """
    running: list[float] = []  # end times
    starts, ends, ttfts = [], [], []
    cap = m.max_num_seqs
    for ta, n_in, n_out in zip(arrivals, inputs, outputs):
        while running and running[0] <= ta:
            heapq.heappop(running)
        ts = ta if len(running) < cap else max(ta, heapq.heappop(running))
        step = m.step_s(len(running) + 1)
        pre = m.prefill_s(n_in)
        te = ts + pre + n_out * step
        heapq.heappush(running, te)
        starts.append(ts)
        ends.append(te)
        ttfts.append(ts - ta + pre + step)
    return starts, ends, ttfts


def serve_closed(workers_at: Callable[[float], int], horizon_s: float, next_request: Callable[[], tuple[int, int]],
                 m: ServingModel, gap_s: float = 0.05) -> list[tuple[float, int, int, float, float]]:
    """Batch workers sending back-to-back requests while ``workers_at(t)`` says they are on.

    Returns (start, input tokens, output tokens, end, ttft) per request, in start order.
    """
    out: list[tuple[float, int, int, float, float]] = []
    most = max(workers_at(t * 60.0) for t in range(int(horizon_s // 60) + 1))
    for k in range(most):
        t = k * 0.5  # workers start staggered
        while t < horizon_s:
            active = workers_at(t)
            if k >= active:
                t = (math.floor(t / 60) + 1) * 60.0  # off this minute: look again at the next
                continue
            n_in, n_out = next_request()
            step = m.step_s(min(active, m.max_num_seqs))
            pre = m.prefill_s(n_in)
            te = t + pre + n_out * step
            out.append((t, n_in, n_out, te, pre + step))
            t = te + gap_s
    out.sort()
    return out

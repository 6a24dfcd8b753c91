"""A store with two hours of real attribution (self-hosted, idle, two tenants) and hosted-API calls,
made by the cost package's own Attribution on a controlled clock, for the FOCUS and Parquet tests."""

from __future__ import annotations

import pytest

from infermeter.config import Settings
from infermeter.cost.attribution import Attribution
from infermeter.cost.catalog import cached_catalog
from infermeter.cost.pricing import PricingProcessor
from infermeter.records import InferenceRecord
from infermeter.store import open_store

S = 10**9
HOUR = 3600 * S
T0 = 1_700_000_000 * S // HOUR * HOUR  # an hour boundary (2023-11-14T22:00Z)
HOST = "gpu-box-1"


class Clock:
    def __init__(self, t: int) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


def records() -> list[InferenceRecord]:
    out = [InferenceRecord(start_time_ns=T0 + i * 97 * S, duration_s=20.0 + i % 7, request_model=("llama-3.1-8b", "qwen2.5-7b")[i % 2],
                           provider="vllm", tenant=("acme", "globex", None)[i % 3], input_tokens=100 + i, output_tokens=50)
           for i in range(60)]
    out += [InferenceRecord(start_time_ns=T0 + i * 300 * S, duration_s=1.2, request_model="gpt-4o", provider="openai", tenant="acme",
                            input_tokens=1000, output_tokens=200) for i in range(12)]
    out.append(InferenceRecord(start_time_ns=T0 + 5 * S, duration_s=1.0, request_model="mystery-model", provider="openai",
                               input_tokens=1, output_tokens=1))
    return out


def make_cost_store(path: str) -> None:
    """Write the store at ``path`` (closed afterwards): 2 hours of 60 s windows at $3.60/h."""
    store = open_store(path).start()
    catalog = cached_catalog()
    clock = Clock(T0)
    att = Attribution(store, Settings.load(environ={}, hourly_usd=3.6, sample_interval_s=60), catalog, host=HOST, clock=clock)
    att.force_flush()
    priced = PricingProcessor(catalog)(records())
    store.write_records(priced)
    att.consume(priced)
    clock.t = T0 + 2 * HOUR + 30 * S
    att.force_flush()
    assert store.force_flush()
    store.shutdown()


@pytest.fixture
def cost_db(tmp_path):
    """The path of a closed store made by :func:`make_cost_store`."""
    path = str(tmp_path / "costs.duckdb")
    make_cost_store(path)
    return path

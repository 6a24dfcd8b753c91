"""The records that flow through infermeter, named after the OpenTelemetry GenAI conventions.

Units are in field names; unknown is ``None`` (never 0, never a sentinel string).
"""

from __future__ import annotations

import os
import random
from decimal import Decimal
from typing import NamedTuple

__all__ = [
    "InferenceRecord",
    "Operation",
    "Source",
    "Status",
    "CostSource",
    "SELF_HOSTED_PROVIDERS",
    "RECORD_FIELDS",
    "new_request_id",
    "random_bits",
]


_rng = random.Random()  # seeded from os.urandom; reseeded in forked children
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_rng.seed)


def new_request_id() -> int:
    """A random 63-bit id: the key that ties a request to its cost rows."""
    return _rng.getrandbits(63)


random_bits = _rng.getrandbits
"""``random_bits(63)`` is :func:`new_request_id` without its frame, for the decorator's hot path."""


class Operation:
    """``gen_ai.operation.name`` values."""

    CHAT = "chat"
    TEXT_COMPLETION = "text_completion"
    EMBEDDINGS = "embeddings"
    GENERATE_CONTENT = "generate_content"
    RESPONSES = "responses"
    INFERENCE = "inference"  # a model call of no GenAI kind (KServe/Triton, plain HTTP)
    OTHER = "other"


class Source:
    """Where a record came from."""

    DECORATOR = "decorator"
    PROXY = "proxy"
    OTLP = "otlp"
    SIMULATOR = "simulator"


class Status:
    OK = "ok"
    ERROR = "error"
    CANCELLED = "cancelled"


class CostSource:
    """Provenance of ``cost_usd``: ``gen_ai.usage.cost.source``."""

    PROVIDER = "provider"  # reported by the API in its response
    CATALOG = "catalog"  # token prices from the catalog
    GPU_TIME = "gpu_time"  # share of a self-hosted instance's price
    UNPRICED = "unpriced"  # no price known: never shown as $0


SELF_HOSTED_PROVIDERS = frozenset({
    "vllm", "tgi", "huggingface_tgi", "ollama", "llamacpp", "llama_cpp", "llama.cpp", "sglang", "triton",
    "kserve", "tensorrt_llm", "lmstudio", "localai", "local", "simulated",
})
"""gen_ai.provider.name values of model servers people run themselves: a call to one is priced by
GPU time (``CostSource.GPU_TIME``), whatever its model or address (see :mod:`infermeter.cost.pricing`)."""


class InferenceRecord(NamedTuple):
    """One inference call: a decorated function call, a proxied request or a received span.

    Immutable. A NamedTuple rather than a frozen dataclass: it is built once per request on the
    pipeline thread and *is* the store row (fields in column order), which makes it 3x cheaper
    to build and free to write (measured: 1.4 µs vs 4.6 µs for a frozen slots dataclass).
    Change fields with ``rec.replace(cost_usd=...)``.

    Prompt and response text are never part of a record; ``prompt_hash`` (a 64-bit hash of the
    prompt, only when hashing is enabled) is enough to detect repeats for cache recommendations.
    """

    start_time_ns: int  # wall clock, time.time_ns() at the start
    duration_s: float
    operation: str = Operation.CHAT  # gen_ai.operation.name
    source: str = Source.DECORATOR
    status: str = Status.OK
    trace_id: int | None = None  # 128-bit, as in OTel
    span_id: int | None = None  # 64-bit
    ttft_s: float | None = None  # gen_ai.server.time_to_first_token (first content event)
    request_model: str | None = None  # gen_ai.request.model
    response_model: str | None = None  # gen_ai.response.model
    provider: str | None = None  # gen_ai.provider.name (openai, vllm, ollama, ...)
    endpoint: str | None = None  # function name, or the HTTP route
    server_address: str | None = None  # server.address[:port] of the model server
    tenant: str | None = None
    error_type: str | None = None  # error.type
    finish_reason: str | None = None  # gen_ai.response.finish_reasons[0]
    streaming: bool = False
    input_tokens: int | None = None  # gen_ai.usage.input_tokens
    output_tokens: int | None = None  # gen_ai.usage.output_tokens
    cached_tokens: int | None = None  # gen_ai.usage.cache_read.input_tokens
    tokens_estimated: bool = False  # counts were estimated, not reported
    request_bytes: int | None = None
    response_bytes: int | None = None
    http_status: int | None = None
    cost_usd: Decimal | None = None  # gen_ai.usage.cost.amount
    cost_currency: str | None = None  # gen_ai.usage.cost.currency
    cost_source: str | None = None  # gen_ai.usage.cost.source (CostSource)
    prompt_hash: int | None = None  # signed 64-bit hash of the prompt, opt-in
    request_id: int | None = None  # random 63-bit key (new_request_id()); the store fills it if None
    parent_span_id: int | None = None  # 64-bit: the caller's span (the current span, or a W3C traceparent)

    @property
    def model(self) -> str | None:
        """The model a report groups by: the requested one if known (stable across versions), else the response model."""
        return self.request_model or self.response_model

    @property
    def end_time_ns(self) -> int:
        return self.start_time_ns + int(self.duration_s * 1e9)

    def replace(self, **changes: object) -> "InferenceRecord":
        """A copy with some fields changed (the record itself never changes)."""
        return self._replace(**changes)

    def with_cost(self, cost_usd: Decimal | None, currency: str | None, source: str | None) -> "InferenceRecord":
        """A copy with the three cost fields set (and an id if it had none): the pricing step's
        per-record operation, ~10x cheaper than ``replace()`` (which rebuilds all fields by name)."""
        rid = self[_ID_AT]
        return tuple.__new__(InferenceRecord, self[:_COST_AT] + (cost_usd, currency, source, self[_HASH_AT],
                                                                  rid if rid is not None else new_request_id())
                             + self[_ID_AT + 1 :])


RECORD_FIELDS: tuple[str, ...] = InferenceRecord._fields
_COST_AT = RECORD_FIELDS.index("cost_usd")
_ID_AT = RECORD_FIELDS.index("request_id")
_HASH_AT = RECORD_FIELDS.index("prompt_hash")
assert RECORD_FIELDS[_COST_AT : _ID_AT + 1] == ("cost_usd", "cost_currency", "cost_source", "prompt_hash", "request_id")

"""Pricing at ingest: a pipeline processor that gives every record its cost provenance.

Order of precedence:

1. ``provider`` -- a cost the API reported (set upstream, e.g. by the proxy): kept untouched.
2. ``catalog``  -- a hosted-API call whose model and tokens the catalog can price.
3. ``unpriced`` -- a hosted-API call we cannot price (unknown model, unknown tokens): counted,
   ``cost_usd`` stays None, never $0.
4. ``gpu_time`` -- a self-hosted call: ``cost_usd`` stays None until attribution splits the
   box's price over the windows it ran in (see :mod:`infermeter.cost.attribution`).

A call is hosted when its provider names a hosted API (``openai``, ``anthropic``, ...) and its
server address is not local, or when no provider is known and the model is a closed model the
catalog prices (``gpt-4o``). Everything else -- a decorated local model, a proxy in front of
vLLM on 127.0.0.1 (even though it speaks the OpenAI protocol) -- is self-hosted.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import ipaddress
import logging
import operator
from collections.abc import Callable
from decimal import Context, Decimal
from typing import Any

from ..records import SELF_HOSTED_PROVIDERS, CostSource, InferenceRecord, Operation, Source, new_request_id
from .catalog import Catalog, ModelPrice

TokenPricer = Callable[[int, int, "int | None"], "Decimal | None"]
"""``(input_tokens, output_tokens, cached_tokens) -> cost``: see :meth:`PricingProcessor.at_source`."""

__all__ = ["PricingProcessor", "is_local_address", "SELF_HOSTED_PROVIDERS", "HOSTED_PROVIDERS"]

logger = logging.getLogger(__name__)

HOSTED_PROVIDERS = {
    # OpenTelemetry GenAI provider names (and common spellings) -> catalog provider (None: the
    # model's first-party price, e.g. Bedrock or Azure reselling Anthropic / OpenAI models).
    "openai": "openai", "anthropic": "anthropic", "gcp.gemini": "google", "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google", "google": "google", "gemini": "google", "mistral_ai": "mistral", "mistral": "mistral",
    "deepseek": "deepseek", "groq": "groq", "together": "together", "together_ai": "together",
    "fireworks": "fireworks", "fireworks_ai": "fireworks", "azure.ai.openai": None, "azure.ai.inference": None,
    "aws.bedrock": None, "cohere": None, "x_ai": None, "perplexity": None, "ibm.watsonx.ai": None, "openrouter": None,
}

_LOCAL_SUFFIXES = (".local", ".internal", ".svc", ".cluster.local", ".lan", ".home.arpa", ".localdomain")


def is_local_address(address: str | None) -> bool | None:
    """True for loopback/private/link-local IPs and cluster-internal names; None when unknown."""
    if not address:
        return None
    host = address.strip()
    if "://" in host:
        host = host.split("://", 1)[1]
    host = host.split("/", 1)[0]
    if host.startswith("["):
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    host = host.lower().rstrip(".")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost" or "." not in host or host.endswith(_LOCAL_SUFFIXES)
    return ip.is_loopback or ip.is_private or ip.is_link_local


class PricingProcessor:
    """``batch -> batch``: sets ``cost_usd``/``cost_currency``/``cost_source`` on every record."""

    def __init__(self, catalog: Catalog, max_cached_names: int = 10_000) -> None:
        self.catalog = catalog
        self.counts: collections.Counter[str] = collections.Counter()
        self.unpriced_models: collections.Counter[str] = collections.Counter()
        self._cache: dict[tuple[Any, ...], tuple[str, ModelPrice | None, tuple[int, int, int] | None]] = {}
        self._max_cached = max_cached_names

    def __call__(self, batch: list[InferenceRecord]) -> list[InferenceRecord]:
        """:meth:`price` for a batch, with the common cases inlined and counted once per batch.

        A record the decorator priced where it was made (``source`` decorator, ``cost_source``
        set: by this process's pricing, see ``agent/decorator.py``) is kept as is and counted.
        A hosted call the catalog prices in whole nano-dollars (every shipped price) is priced
        here without a call per record; anything else goes through :meth:`price`.
        """
        cache = self._cache
        out: list[InferenceRecord] = []
        append = out.append
        n_self = n_catalog = 0
        at_source: list[str] = []
        for r in batch:
            if r.__class__ is InferenceRecord:
                src = r[_SOURCE_AT]
                if src is not None and r[_ORIGIN_AT] == _DECORATOR and r[_ID_AT] is not None:
                    at_source.append(src)
                    if src == CostSource.UNPRICED:
                        self._note_unpriced(r)
                    append(r)
                    continue
                if src != CostSource.PROVIDER:
                    hit = cache.get(_CLASSIFY_KEY(r))
                    if hit is not None:
                        if hit[0] == "self":
                            n_self += 1
                            append(r.with_cost(None, "USD", CostSource.GPU_TIME))
                            continue
                        ints = hit[2]
                        inp, outp, cached = _TOKENS(r)
                        if ints is not None and inp is not None and outp is not None and r[_ID_AT] is not None:
                            cost = _nano_cost(ints, inp, outp, cached)
                            if cost is not None:
                                n_catalog += 1
                                append(_tuple_new(InferenceRecord, r[:_COST_AT] + (cost, "USD", _CATALOG) + r[_HASH_AT:]))
                                continue
            append(self.price(r))
        if n_self:
            self.counts[CostSource.GPU_TIME] += n_self
        if n_catalog:
            self.counts[_CATALOG] += n_catalog
        if at_source:
            self.counts.update(at_source)
        return out

    def price(self, rec: InferenceRecord) -> InferenceRecord:
        """``rec`` with its cost provenance set; counted in :meth:`stats`."""
        priced = self.quote(rec)
        source = priced.cost_source
        self.counts[source] += 1
        if source == CostSource.UNPRICED:
            self._note_unpriced(rec)
        return priced

    def _note_unpriced(self, rec: InferenceRecord) -> None:
        if len(self.unpriced_models) < 1000 or rec.model in self.unpriced_models:
            self.unpriced_models[rec.model or "(unknown)"] += 1

    def quote(self, rec: InferenceRecord) -> InferenceRecord:
        """:meth:`price` without counting: the decorator prices a recorded call's record where it
        is made (its span carries the cost); the pipeline keeps that record and counts it once."""
        if rec.cost_source == CostSource.PROVIDER and rec.cost_usd is not None:
            return rec
        kind, price, ints = self._classify(rec)
        if kind == "self":
            return _with_cost(rec, None, "USD", CostSource.GPU_TIME)
        cost = None
        if price is not None and rec.input_tokens is not None:
            out = rec.output_tokens
            if out is None and rec.operation == Operation.EMBEDDINGS:
                out = 0
            if out is not None:
                cost = _cost_usd(price, rec.input_tokens, out, rec.cached_tokens, ints)
        if cost is None:
            return _with_cost(rec, None, None, CostSource.UNPRICED)
        return _with_cost(rec, cost, "USD", CostSource.CATALOG)

    def at_source(self, provider: str | None, server_address: str | None, response_model: str | None,
                  request_model: str | None) -> tuple[str | None, str | None, TokenPricer | None]:
        """How a producer that makes records (the decorator) prices calls with these names as it
        makes them: ``(currency, cost source, token pricer)``.

        - ``("USD", "gpu_time", None)``: a self-hosted call, whatever its tokens (its cost comes
          from attribution);
        - ``(None, "unpriced", None)``: a hosted call of a model the catalog has no price for;
        - ``(None, None, pricer)``: a hosted call the catalog prices in whole nano-dollars;
          ``pricer(input_tokens, output_tokens, cached_tokens)`` is its cost (None for negative
          counts), to be set with source ``catalog``;
        - ``(None, None, None)``: anything else, left to :meth:`price`.

        The pipeline keeps a decorator's record priced this way and counts it (see ``__call__``)."""
        hit = self._classify(InferenceRecord(0, 0.0, provider=provider, server_address=server_address,
                                             response_model=response_model, request_model=request_model))
        if hit[0] == "self":
            return "USD", CostSource.GPU_TIME, None
        if hit[1] is None:
            return None, CostSource.UNPRICED, None
        return None, None, None if hit[2] is None else functools.partial(_nano_cost, hit[2])

    def _classify(self, rec: InferenceRecord) -> tuple[str, ModelPrice | None, tuple[int, int, int] | None]:
        """("self" | "hosted", the catalog's price or None, that price in nano-dollars or None)."""
        key = _CLASSIFY_KEY(rec)
        hit = self._cache.get(key)
        if hit is None:
            kind, price = self._classify_uncached(rec)
            hit = (kind, price, None if price is None else _nano_prices(price))
            if len(self._cache) >= self._max_cached:
                self._cache.clear()
            self._cache[key] = hit
        return hit

    def _classify_uncached(self, rec: InferenceRecord) -> tuple[str, ModelPrice | None]:
        provider = (rec.provider or "").strip().lower() or None
        local = is_local_address(rec.server_address)
        names = [n for n in (rec.response_model, rec.request_model) if n]
        if local or provider in SELF_HOSTED_PROVIDERS:
            return "self", None
        if provider is not None and provider in HOSTED_PROVIDERS:
            cat_provider = HOSTED_PROVIDERS[provider]
            return "hosted", next((p for n in names if (p := self.catalog.model(n, cat_provider)) is not None), None)
        first_party = next((p for n in names if (p := self.catalog.model(n)) is not None and not p.open_weights), None)
        if first_party is not None:
            return "hosted", first_party
        if local is False:  # a public server we have no price for: a hosted API, unpriced
            return "hosted", None
        return "self", None

    def stats(self) -> dict[str, Any]:
        return {"by_source": dict(self.counts), "unpriced_models": dict(self.unpriced_models.most_common(20))}


_F = InferenceRecord._fields.index
_CLASSIFY_KEY = operator.attrgetter("provider", "server_address", "response_model", "request_model")
_SOURCE_AT = _F("cost_source")
_ID_AT = _F("request_id")
_ORIGIN_AT = _F("source")
_DECORATOR = Source.DECORATOR
_TOKENS = operator.itemgetter(_F("input_tokens"), _F("output_tokens"), _F("cached_tokens"))
_COST_AT = _F("cost_usd")
_HASH_AT = _F("prompt_hash")
_CATALOG = CostSource.CATALOG
_tuple_new = tuple.__new__
_NANO_PER_USD = 10**9
_ONE_NANO = Decimal("1E-9")
_times_one_nano = Context(prec=60).multiply


def _cost_usd(price: ModelPrice, input_tokens: int, output_tokens: int, cached_tokens: int | None,
              ints: tuple[int, int, int] | None = None) -> Decimal:
    """``price.cost_usd(...)``, in integer nano-dollars when the price allows (exact, ~5x faster):
    ``ints`` is ``_nano_prices(price)``, computed here when not given."""
    if ints is None:
        ints = _nano_prices(price)
    cost = None if ints is None else _nano_cost(ints, input_tokens, output_tokens, cached_tokens)
    return price.cost_usd(input_tokens, output_tokens, cached_tokens) if cost is None else cost


def _nano_cost(ints: tuple[int, int, int], input_tokens: int, output_tokens: int, cached_tokens: int | None) -> Decimal | None:
    """The cost of these tokens at nano-dollar prices ``ints`` (input, cached input, output per 1M),
    rounded half to even to 1e-9 as ``ModelPrice.cost_usd`` does; None for negative counts."""
    if input_tokens < 0 or output_tokens < 0:
        return None
    p_in, p_cached, p_out = ints
    if cached_tokens is not None and cached_tokens > 0:
        cached = cached_tokens if cached_tokens < input_tokens else input_tokens
        nano_x1m = (input_tokens - cached) * p_in + cached * p_cached + output_tokens * p_out
    else:
        nano_x1m = input_tokens * p_in + output_tokens * p_out
    q, r = divmod(nano_x1m, 1_000_000)
    if r > 500_000 or (r == 500_000 and q & 1):
        q += 1
    return _times_one_nano(Decimal(q), _ONE_NANO)  # exact in any thread's decimal context


def _nano_prices(price: ModelPrice) -> tuple[int, int, int] | None:
    """The price per 1M tokens in whole nano-dollars (input, cached input, output), or None when
    a price has finer digits (then only the Decimal computation is exact)."""
    cached = price.input_usd_per_1m if price.cached_input_usd_per_1m is None else price.cached_input_usd_per_1m
    vals = [Decimal(v) * _NANO_PER_USD for v in (price.input_usd_per_1m, cached, price.output_usd_per_1m)]
    if any(v != v.to_integral_value() for v in vals):
        return None
    return int(vals[0]), int(vals[1]), int(vals[2])


def _with_cost(rec: Any, cost: Any, currency: str | None, source: str) -> Any:
    if rec.__class__ is InferenceRecord:
        return rec.with_cost(cost, currency, source)
    return dataclasses.replace(rec, cost_usd=cost, cost_currency=currency, cost_source=source,
                               request_id=rec.request_id if rec.request_id is not None else new_request_id())

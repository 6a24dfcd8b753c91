"""``@track``: one GenAI record (and, when traces are exported, one span) per inference call.

Works on sync and async functions, generators and async generators. The hot path makes one
small :class:`Call`, and at the end of the call reads the usage, builds the record (a plain tuple:
no reference to the user's result survives) and appends it to the pipeline's queue; pricing, the
store, metrics and attribution run on the pipeline's threads. A span is only started when an SDK (recording) tracer provider is
installed; then it is current inside the call, also across ``await`` and ``yield``, so the user's
own spans nest under it. The user's exceptions propagate unchanged; infermeter's never do.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar, overload

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import ProxyTracerProvider, SpanKind, StatusCode

from ..records import CostSource, InferenceRecord, Operation, Source, Status
from ..records import random_bits as _new_id
from . import runtime
from .live_span import LiveSpan, fast_tracer
from .usage import Usage, extract_usage

__all__ = ["track", "measure", "current_call", "Call"]

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

_perf = time.perf_counter_ns
_now = time.time_ns
_CURRENT: contextvars.ContextVar["Call | None"] = contextvars.ContextVar("infermeter_call", default=None)

# -- tracer: a real one only when a recording provider is installed ------------------------------
# trace.get_tracer_provider() looks up os.environ on every call (~1 µs); the API's global is read
# directly instead, with the public function as the fallback should that private name go away.
_NO_PROVIDER = object()
_tracer_cache: tuple[Any, Any, Any] = (_NO_PROVIDER, None, None)  # provider, tracer, FastTracer | None
_HAS_GLOBAL = hasattr(trace, "_TRACER_PROVIDER")


def _tracers() -> tuple[Any, Any]:
    """(tracer of the global provider when it records, else None; FastTracer or None), cached per
    provider: see :mod:`.live_span` for when the fast path is taken."""
    global _tracer_cache
    provider = trace._TRACER_PROVIDER if _HAS_GLOBAL else trace.get_tracer_provider()
    cached_provider, tracer, fast = _tracer_cache
    if provider is cached_provider:
        if fast is not None and not fast.still_safe():
            fast = _set_cache(provider, tracer)
        return tracer, fast
    if provider is None:  # nothing set in code: the environment may still name a provider
        provider = trace.get_tracer_provider()
        if isinstance(provider, (ProxyTracerProvider, trace.NoOpTracerProvider)):
            _tracer_cache = (None, None, None)
            return None, None
    if isinstance(provider, (ProxyTracerProvider, trace.NoOpTracerProvider)):
        tracer = None
    else:
        from .. import __version__

        tracer = provider.get_tracer("infermeter", __version__)
    return tracer, _set_cache(provider, tracer)


def _set_cache(provider: Any, tracer: Any) -> Any:
    global _tracer_cache
    fast = None
    if tracer is not None:
        try:
            fast = fast_tracer(tracer)
        except Exception as e:  # noqa: BLE001 - an SDK we do not know: its own path
            _warn_once("inspecting the tracer", e)
    _tracer_cache = (provider, tracer, fast)
    return fast


def _warn_once(what: str, e: BaseException, _seen: set = set()) -> None:  # noqa: B006 - deliberate
    key = f"{what}:{type(e).__name__}"
    if key not in _seen:
        _seen.add(key)
        logger.warning("infermeter: %s failed: %r (telemetry only; the call is unaffected)", what, e)


class _Spec:
    """What a decorated function declares: fixed for all its calls."""

    __slots__ = ("model", "provider", "operation", "tenant", "endpoint", "usage_fn", "span_name", "attrs", "streaming",
                 "priced")

    def __init__(self, model, provider, operation, tenant, endpoint, usage_fn, streaming=False) -> None:
        self.model = model
        self.provider = provider
        self.operation = operation or Operation.CHAT
        self.tenant = tenant
        self.endpoint = endpoint
        self.usage_fn = usage_fn
        self.streaming = streaming
        self.priced: tuple | None = None  # how its calls are priced as their records are made, see _record
        self.span_name = f"{self.operation} {model}" if model else self.operation
        attrs = {"gen_ai.operation.name": self.operation}
        if model:
            attrs["gen_ai.request.model"] = model
        if provider:
            attrs["gen_ai.provider.name"] = provider
        if endpoint:
            attrs["code.function.name"] = endpoint
        self.attrs = attrs


class Call:
    """One tracked call. Inside the call, ``infermeter.current_call()`` returns it, so code can
    report what the result does not say (``call.set_usage(input_tokens=..., output_tokens=...)``)."""

    # Class-level defaults: a call only stores what differs, which keeps __init__ to four
    # assignments on the hot path (no __slots__ on purpose: slots cannot have class defaults).
    duration_ns = 0
    ttft_ns: int | None = None
    status = Status.OK
    error_type: str | None = None
    result: Any = None
    usage: Usage | None = None
    response_model: str | None = None
    tenant: str | None = None
    finish_reason: str | None = None
    chunks = 0
    span: Any = None
    trace_id: int | None = None
    span_id: int | None = None
    parent_span_id: int | None = None
    _token: Any = None
    _ctx_token: Any = None

    def __init__(self, spec: _Spec) -> None:
        self.spec = spec
        self.start_ns = _now()
        self.t0 = _perf()

    # -- the handle API ---------------------------------------------------------------------------
    def set_usage(self, input_tokens: int | None = None, output_tokens: int | None = None, cached_tokens: int | None = None) -> None:
        """Report token counts the result does not carry."""
        self.usage = Usage(input_tokens, output_tokens, cached_tokens)

    def set_response_model(self, model: str) -> None:
        self.response_model = model

    def set_tenant(self, tenant: str) -> None:
        self.tenant = tenant

    def set_finish_reason(self, reason: str) -> None:
        self.finish_reason = reason

    def first_token(self) -> None:
        """Mark time to first token now (streams mark it on the first yield by themselves)."""
        if self.ttft_ns is None:
            self.ttft_ns = _perf() - self.t0


def current_call() -> Call | None:
    """The innermost tracked call running in this context, or None."""
    return _CURRENT.get()


# -- begin / end --------------------------------------------------------------------------------------

def _start(spec: _Spec) -> Call:
    """A new call, current from now on (and its span, when traces are recorded)."""
    call = Call(spec)
    tracer, fast = _tracers()
    if tracer is not None:
        try:
            if fast is not None:
                span = fast.start(spec.span_name, spec.attrs)
            else:
                span = tracer.start_span(spec.span_name, kind=SpanKind.CLIENT, attributes=spec.attrs)
            if span is not None:
                call.span = span
                ctx = span.get_span_context()
                call.trace_id, call.span_id = ctx.trace_id, ctx.span_id
                parent = getattr(span, "parent", None)
                if parent is not None:
                    call.parent_span_id = parent.span_id
        except Exception as e:  # noqa: BLE001
            _warn_once("starting a span", e)
    _enter(call)
    return call


def _enter(call: Call) -> None:
    call._token = _CURRENT.set(call)
    if call.span is not None:
        call._ctx_token = otel_context.attach(trace.set_span_in_context(call.span))


def _exit(call: Call) -> None:
    if call._ctx_token is not None:
        otel_context.detach(call._ctx_token)
        call._ctx_token = None
    _CURRENT.reset(call._token)


def _finish(call: Call, result: Any = None, error: BaseException | None = None, cancelled: bool = False) -> None:
    """End the call: fix its duration, end the span, queue its record. Never raises.

    The record is built here, not on the pipeline thread: then nothing but plain values is
    queued (no reference to the user's result survives the call), and the call object dies at
    once, which keeps the garbage collector's work flat however deep the queue gets.
    """
    duration_ns = _perf() - call.t0
    try:
        if error is not None:
            call.status = Status.ERROR
            call.error_type = type(error).__qualname__
        elif cancelled:
            call.status = Status.CANCELLED
        spec = call.spec
        usage = call.usage
        if usage is None:
            if spec.usage_fn is not None and error is None:
                try:
                    u = spec.usage_fn(result)
                    if u is not None:
                        usage = u if isinstance(u, Usage) else Usage(*u) if isinstance(u, tuple) else Usage(**u)
                except Exception as e:  # noqa: BLE001
                    _warn_once("the usage= callable", e)
            elif result is not None:
                usage = extract_usage(result)
        p = runtime.pipeline()
        # A call is priced as its record is made when the pipeline has pricing: a hosted call from
        # the catalog, a self-hosted one as GPU time (the span carries the cost, and the pipeline
        # keeps the record).
        pricing = None if p is None else p.pricing
        rec = _record(call, duration_ns, usage, pricing)
        if call.span is not None and pricing is not None and rec.cost_source is None:
            # Not priced as made (no tokens, an embedding's missing output...): priced in full now,
            # since a recorded span carries the outcome. Self-hosted GPU time is only known when its
            # window closes: those records were made with source gpu_time, and their spans carry no cost.
            try:
                rec = pricing.quote(rec)
            except Exception as e:  # noqa: BLE001 - left unpriced: the pipeline prices it
                _warn_once("pricing a call", e)
        if call.span is not None:
            _end_span(call, usage, error, rec, duration_ns)
        if p is not None:
            p.submit_record(rec)
    except Exception as e:  # noqa: BLE001 - a telemetry edge
        _warn_once("recording a call", e)


def _end_span(call: Call, u: Usage | None, error: BaseException | None, rec: InferenceRecord, duration_ns: int) -> None:
    span = call.span
    attrs: dict[str, Any] = {}
    if u is not None:
        if u.input_tokens is not None:
            attrs["gen_ai.usage.input_tokens"] = u.input_tokens
        if u.output_tokens is not None:
            attrs["gen_ai.usage.output_tokens"] = u.output_tokens
        if u.cached_tokens is not None:
            attrs["gen_ai.usage.cache_read.input_tokens"] = u.cached_tokens
        if u.response_model:
            attrs["gen_ai.response.model"] = u.response_model
        if u.finish_reason:
            attrs["gen_ai.response.finish_reasons"] = (u.finish_reason,)
    elif call.chunks and call.spec.streaming:
        attrs["gen_ai.usage.output_tokens"] = call.chunks
    if call.ttft_ns is not None:
        attrs["gen_ai.server.time_to_first_token"] = call.ttft_ns / 1e9
    if rec.cost_usd is not None:
        attrs["gen_ai.usage.cost"] = float(rec.cost_usd)
        attrs["gen_ai.usage.cost.amount"] = float(rec.cost_usd)
        attrs["gen_ai.usage.cost.currency"] = rec.cost_currency or "USD"
        attrs["gen_ai.usage.cost.source"] = rec.cost_source
    elif rec.cost_source == "unpriced":
        attrs["gen_ai.usage.cost.source"] = "unpriced"
    if error is not None:
        attrs["error.type"] = call.error_type
    if span.__class__ is LiveSpan:
        span.finish(call.start_ns, call.start_ns + duration_ns, attrs, None if error is None else str(error)[:200])
        return
    if error is not None:
        span.set_status(StatusCode.ERROR, str(error)[:200])
    if attrs:
        span.set_attributes(attrs)
    span.end()


def _record(call: Call, duration_ns: int, u: Usage | None, pricing: Any = None) -> InferenceRecord:
    """The call's record, priced by ``pricing`` (the pipeline's) when it can be: see
    ``PricingProcessor.at_source``; the answer is kept on the spec per response model."""
    spec = call.spec
    estimated = False
    inp = out = cached = None
    resp_model = call.response_model
    finish = call.finish_reason
    if u is not None:
        inp, out, cached = u.input_tokens, u.output_tokens, u.cached_tokens
        resp_model = resp_model or u.response_model
        finish = finish or u.finish_reason
    if out is None and spec.streaming and call.chunks:
        out, estimated = call.chunks, True  # one streamed chunk ~ one token: flagged as an estimate
    cost = currency = source = None
    if pricing is not None:
        try:
            priced = spec.priced  # (pricing, response model, currency, cost source, token pricer), per spec
            if priced is None or priced[0] is not pricing or priced[1] != resp_model:
                priced = spec.priced = (pricing, resp_model, *pricing.at_source(spec.provider, None, resp_model, spec.model))
            currency, source, pricer = priced[2], priced[3], priced[4]
            if pricer is not None and inp is not None and out is not None:
                cost = pricer(inp, out, cached)
                if cost is not None:
                    currency, source = "USD", _CATALOG
        except Exception as e:  # noqa: BLE001 - left unpriced: the pipeline prices it
            _warn_once("pricing a call", e)
    ttft = call.ttft_ns
    # tuple.__new__ on the fields in order: the NamedTuple's generated __new__ is a Python frame
    # that costs ~0.6 µs a call with 30 arguments (test_decorator checks the order against it)
    return _tuple_new(InferenceRecord, (
        call.start_ns, duration_ns / 1e9, spec.operation, _DECORATOR, call.status, call.trace_id,
        call.span_id, None if ttft is None else ttft / 1e9, spec.model, resp_model,
        spec.provider, spec.endpoint, None, call.tenant or spec.tenant, call.error_type, finish,
        spec.streaming, inp, out, cached, estimated, None, None, None, cost, currency, source, None,
        _new_id(63),
        call.parent_span_id,
    ))


_tuple_new = tuple.__new__
_DECORATOR = Source.DECORATOR
_CATALOG = CostSource.CATALOG


# -- wrappers ---------------------------------------------------------------------------------------

def _wrap_function(fn: Callable, spec: _Spec) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not runtime.ENABLED:
            return fn(*args, **kwargs)
        call = _start(spec)
        try:
            result = fn(*args, **kwargs)
        except BaseException as e:
            _exit(call)
            _finish(call, error=e)
            raise
        _exit(call)
        _finish(call, result)
        return result

    return wrapper


def _wrap_coroutine(fn: Callable, spec: _Spec) -> Callable:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not runtime.ENABLED:
            return await fn(*args, **kwargs)
        call = _start(spec)
        try:
            result = await fn(*args, **kwargs)
        except BaseException as e:
            _exit(call)
            _finish(call, error=e)
            raise
        _exit(call)
        _finish(call, result)
        return result

    return wrapper


def _wrap_generator(fn: Callable, spec: _Spec) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not runtime.ENABLED:
            return (yield from fn(*args, **kwargs))
        call = _start(spec)
        try:
            gen = fn(*args, **kwargs)
        except BaseException as e:
            _exit(call)
            _finish(call, error=e)
            raise
        _exit(call)
        last = None
        to_send: Any = None
        to_throw: BaseException | None = None
        while True:
            _enter(call)
            try:
                if to_throw is not None:
                    exc, to_throw = to_throw, None
                    item = gen.throw(exc)
                else:
                    item = gen.send(to_send)
            except StopIteration as stop:
                _exit(call)
                _finish(call, last)
                return stop.value
            except BaseException as e:
                _exit(call)
                _finish(call, last, error=e)
                raise
            _exit(call)
            if call.ttft_ns is None:
                call.ttft_ns = _perf() - call.t0
            call.chunks += 1
            last = item
            try:
                to_send = yield item
            except GeneratorExit:
                try:
                    gen.close()
                finally:
                    _finish(call, last, cancelled=True)
                raise
            except BaseException as e:
                to_throw = e

    return wrapper


def _wrap_async_generator(fn: Callable, spec: _Spec) -> Callable:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not runtime.ENABLED:
            async for item in fn(*args, **kwargs):
                yield item
            return
        call = _start(spec)
        try:
            agen = fn(*args, **kwargs)
        except BaseException as e:
            _exit(call)
            _finish(call, error=e)
            raise
        _exit(call)
        last = None
        to_send: Any = None
        to_throw: BaseException | None = None
        while True:
            _enter(call)
            try:
                if to_throw is not None:
                    exc, to_throw = to_throw, None
                    item = await agen.athrow(exc)
                else:
                    item = await agen.asend(to_send)
            except StopAsyncIteration:
                _exit(call)
                _finish(call, last)
                return
            except BaseException as e:
                _exit(call)
                _finish(call, last, error=e)
                raise
            _exit(call)
            if call.ttft_ns is None:
                call.ttft_ns = _perf() - call.t0
            call.chunks += 1
            last = item
            try:
                to_send = yield item
            except GeneratorExit:
                try:
                    await agen.aclose()
                finally:
                    _finish(call, last, cancelled=True)
                raise
            except BaseException as e:
                to_throw = e

    return wrapper


@overload
def track(fn: F) -> F: ...
@overload
def track(
    fn: None = None, *, model: str | None = None, provider: str | None = None, operation: str | None = None,
    tenant: str | None = None, endpoint: str | None = None, usage: Callable[[Any], Any] | None = None,
) -> Callable[[F], F]: ...


def track(fn=None, *, model=None, provider=None, operation=None, tenant=None, endpoint=None, usage=None):
    """Track an inference function: ``@track`` or ``@track(model="llama-3-8b", provider="vllm")``.

    ``usage`` is an optional callable ``result -> Usage | (input, output[, cached]) | dict`` for
    results infermeter cannot read by itself. ``endpoint`` defaults to the function's qualified name.
    """

    def decorate(f: F) -> F:
        ep = endpoint or f"{f.__module__}.{f.__qualname__}"
        if inspect.isasyncgenfunction(f):
            return _wrap_async_generator(f, _Spec(model, provider, operation, tenant, ep, usage, True))  # type: ignore[return-value]
        if inspect.isgeneratorfunction(f):
            return _wrap_generator(f, _Spec(model, provider, operation, tenant, ep, usage, True))  # type: ignore[return-value]
        if inspect.iscoroutinefunction(f):
            return _wrap_coroutine(f, _Spec(model, provider, operation, tenant, ep, usage))  # type: ignore[return-value]
        return _wrap_function(f, _Spec(model, provider, operation, tenant, ep, usage))  # type: ignore[return-value]

    if fn is not None:
        if not callable(fn):
            raise TypeError("@track takes keyword arguments: @track(model=...)")
        return decorate(fn)
    return decorate


class measure:
    """Context-manager form for code that is not one function::

        with infermeter.measure(model="llama-3-8b") as call:
            out = engine.generate(prompt)
            call.set_usage(input_tokens=len(prompt_ids), output_tokens=len(out.token_ids))

    Each ``with`` makes a fresh :class:`Call`, so one ``measure`` object may be reused and nested.
    Works with ``async with`` too.
    """

    __slots__ = ("_spec",)

    def __init__(self, *, model: str | None = None, provider: str | None = None, operation: str | None = None,
                 tenant: str | None = None, endpoint: str | None = None, streaming: bool = False) -> None:
        self._spec = _Spec(model, provider, operation, tenant, endpoint, None, streaming)

    def __enter__(self) -> Call:
        call = _start(self._spec)
        return call

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        call = _CURRENT.get()  # ours: with-blocks nest, and each context has its own
        if call is None:
            return False
        _exit(call)
        _finish(call, error=exc)
        return False

    async def __aenter__(self) -> Call:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        return self.__exit__(exc_type, exc, tb)

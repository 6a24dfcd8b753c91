"""A tracked call's span, made without the SDK's per-span machinery when that is safe.

With an SDK ``TracerProvider`` installed, ``@track`` records a span per call. Through the SDK's
``Tracer.start_span`` that span costs the caller as much as the inference bookkeeping itself:
every attribute is validated one by one (~1.2 µs apiece, about ten per call), and the span
takes a lock per change. Here, when the tracer's span processors are only the SDK's own Batch
and Simple processors (whose ``on_start`` does nothing), the call instead:

- decides sampling and draws ids exactly as ``Tracer.start_span`` does (the tracer's sampler
  and id generator, the parent from the current context);
- makes a :class:`LiveSpan` current: a recording span that keeps what user code sets on it
  (attributes, events, status, links) in plain containers;
- at the end, builds the finished ``ReadableSpan`` in one go from values infermeter produced
  itself (valid by construction; the user's attributes are validated) and hands it to the span
  processor's ``on_end``, as the SDK's ``Span.end`` would.

Anything else (a custom span processor, a disabled tracer, the SDK's own internal metrics
turned on) keeps the plain SDK path: see :func:`fast_tracer`.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.status import Status, StatusCode

__all__ = ["FastTracer", "LiveSpan", "fast_tracer"]

_UNSET = Status(StatusCode.UNSET)
_RANDOM_FLAG = getattr(TraceFlags, "RANDOM_TRACE_ID", 0)  # W3C trace context level 2; SDKs before ~1.40 lack it


class FastTracer:
    """The parts of an SDK ``Tracer`` a tracked call needs, resolved once per tracer."""

    __slots__ = ("sampler", "ids", "processor", "resource", "scope", "random_ids", "_enabled", "_checked")

    def __init__(self, tracer: Any, processors: Any) -> None:
        self._checked = processors  # the processor tuple found safe; a provider replaces it on add
        self.sampler = tracer.sampler
        self.ids = tracer.id_generator
        self.processor = tracer.span_processor
        self.resource = tracer.resource
        self.scope = tracer._instrumentation_scope
        self.random_ids = bool(getattr(self.ids, "is_trace_id_random", lambda: False)())
        self._enabled = getattr(tracer, "_is_enabled", None)

    def still_safe(self) -> bool:
        """False once a processor was added to the provider since (then the SDK path is taken)."""
        return getattr(self.processor, "_span_processors", None) is self._checked

    def start(self, name: str, attributes: Mapping[str, Any]) -> Any:
        """A current-able span for a call starting now: a LiveSpan when sampled, else non-recording;
        None when the tracer is disabled."""
        if self._enabled is not None and not self._enabled():
            return None
        ctx = None  # the current context, as Tracer.start_span(context=None) reads it
        parent = trace.get_current_span(ctx).get_span_context()
        if parent.is_valid:
            trace_id = parent.trace_id
            random_id = getattr(parent.trace_flags, "random_trace_id", False)
        else:
            parent = None
            trace_id = self.ids.generate_trace_id()
            random_id = self.random_ids
        result = self.sampler.should_sample(ctx, trace_id, name, SpanKind.CLIENT, attributes, ())
        flags = TraceFlags.SAMPLED if result.decision.is_sampled() else TraceFlags.DEFAULT
        if random_id:
            flags |= _RANDOM_FLAG
        sc = SpanContext(trace_id, self.ids.generate_span_id(), is_remote=False, trace_flags=TraceFlags(flags),
                         trace_state=result.trace_state)
        if not result.decision.is_recording():
            return NonRecordingSpan(sc)
        return LiveSpan(self, sc, name, parent, result.attributes)


class LiveSpan(trace.Span):
    """The recording span user code sees inside a tracked call; exported when the call ends."""

    __slots__ = ("_tracer", "_context", "_name", "_parent", "_attributes", "_user", "_events", "_links", "_status", "_ended")

    def __init__(self, tracer: FastTracer, context: SpanContext, name: str, parent: SpanContext | None,
                 attributes: Mapping[str, Any] | None) -> None:
        self._tracer = tracer
        self._context = context
        self._name = name
        self._parent = parent
        self._attributes = attributes
        self._user: dict[str, Any] | None = None
        self._events: list[Any] | None = None
        self._links: list[Any] | None = None
        self._status: Status | None = None
        self._ended = False

    # -- the Span API, for user code inside the call -----------------------------------------
    def get_span_context(self) -> SpanContext:
        return self._context

    @property
    def parent(self) -> SpanContext | None:
        """The parent's context, as on an SDK span."""
        return self._parent

    def is_recording(self) -> bool:
        return not self._ended

    def set_attribute(self, key: str, value: Any) -> None:
        if not self._ended:
            if self._user is None:
                self._user = {}
            self._user[key] = value

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        for k, v in attributes.items():
            self.set_attribute(k, v)

    def add_event(self, name: str, attributes: Any = None, timestamp: int | None = None) -> None:
        if not self._ended:
            from opentelemetry.sdk.trace import Event

            if self._events is None:
                self._events = []
            self._events.append(Event(name, _clean(attributes), timestamp or time.time_ns()))

    def add_link(self, context: SpanContext, attributes: Any = None) -> None:
        if not self._ended and context is not None and context.is_valid:
            if self._links is None:
                self._links = []
            self._links.append(trace.Link(context, _clean(attributes)))

    def update_name(self, name: str) -> None:
        if not self._ended:
            self._name = name

    def set_status(self, status: Any, description: str | None = None) -> None:
        if self._ended:
            return
        if isinstance(status, Status):
            self._status = status
        else:
            self._status = Status(status, description)

    def record_exception(self, exception: BaseException, attributes: Any = None, timestamp: int | None = None,
                         escaped: bool = False) -> None:
        module, qualname = type(exception).__module__, type(exception).__qualname__
        attrs = {
            "exception.type": f"{module}.{qualname}" if module and module != "builtins" else qualname,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        if attributes:
            attrs.update(attributes)
        self.add_event("exception", attrs, timestamp)

    def end(self, end_time: int | None = None) -> None:
        """The tracked call ends its span itself (with its usage and cost); this does nothing."""

    # -- the decorator's end --------------------------------------------------------------------
    def finish(self, start_ns: int, end_ns: int, attributes: Mapping[str, Any], error: str | None) -> None:
        """Export the finished span: sampler + start attributes, then the user's, then ``attributes``."""
        from opentelemetry.sdk.trace import ReadableSpan

        self._ended = True
        attrs = dict(self._attributes) if self._attributes else {}
        if self._user:
            attrs.update(_clean(self._user))
        attrs.update(attributes)
        if error is not None:
            status = Status(StatusCode.ERROR, error)
        else:
            status = self._status or _UNSET
        t = self._tracer
        t.processor.on_end(ReadableSpan(
            name=self._name, context=self._context, parent=self._parent, resource=t.resource, attributes=attrs,
            events=tuple(self._events or ()), links=tuple(self._links or ()), kind=SpanKind.CLIENT, status=status,
            start_time=start_ns, end_time=end_ns, instrumentation_scope=t.scope,
        ))


def _clean(attributes: Any) -> Any:
    """User attributes, validated as the SDK validates them (an invalid value becomes what the SDK
    makes of it, None, with its warning). The provider's span limits are not applied to them."""
    if not attributes:
        return attributes
    from opentelemetry.attributes import BoundedAttributes

    return dict(BoundedAttributes(attributes=attributes, immutable=False))


def fast_tracer(tracer: Any) -> FastTracer | None:
    """A FastTracer for an SDK tracer whose processors ignore ``on_start``; None keeps the SDK path."""
    try:
        from opentelemetry.sdk.trace import Tracer
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError:
        return None
    if type(tracer) is not Tracer:
        return None
    if os.environ.get("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "").strip().lower() == "true":
        return None  # the SDK's own span metrics count spans its Tracer starts
    processors: Sequence[Any] | None = getattr(tracer.span_processor, "_span_processors", None)
    if processors is None or not all(type(p) in (BatchSpanProcessor, SimpleSpanProcessor) for p in processors):
        return None
    if not all(hasattr(tracer, a) for a in ("sampler", "id_generator", "resource", "_instrumentation_scope")):
        return None
    return FastTracer(tracer, processors)

"""The pipeline: the hot path appends to a bounded deque; one daemon thread does the rest.

A caller pays one ``len()`` and one ``deque.append``. The worker wakes every
``flush_interval_s`` (or early when a batch is ready), turns queued items into
:class:`~infermeter.records.InferenceRecord` objects, runs the processors (pricing, ...), and
hands each batch to every sink (the store, metrics). A full queue drops and counts; a failing
processor or sink is logged once and counted, never raised to the caller.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ..records import InferenceRecord

__all__ = ["Pipeline", "Sink", "Processor"]

logger = logging.getLogger(__name__)


class Sink(Protocol):
    """Receives finished records in batches, on the pipeline's thread."""

    def consume(self, records: Sequence[InferenceRecord]) -> None: ...


Processor = Callable[[list[InferenceRecord]], list[InferenceRecord]]
"""Turns a batch into a batch (e.g. fills in cost); runs before the sinks."""


_RECORDS_ONLY = {InferenceRecord}


class _Flush:
    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = threading.Event()


class Pipeline:
    def __init__(
        self,
        sinks: Sequence[Sink] = (),
        processors: Sequence[Processor] = (),
        *,
        queue_size: int = 100_000,
        batch_size: int = 8192,
        flush_interval_s: float = 0.5,
    ) -> None:
        self.sinks: list[Sink] = list(sinks)
        self.processors: list[Processor] = list(processors)
        # The pricing processor among them, if any: a producer may price a record where it makes
        # it (the decorator does, for a hosted call the catalog knows); the processor keeps it.
        self.pricing: Any = None
        self.queue_size = queue_size
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.dropped = 0
        self.processed = 0
        self.errors = 0
        self._queue: collections.deque = collections.deque()
        self._wake = threading.Event()
        self._drop_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._pid = os.getpid()
        self._error_kinds: set[str] = set()

    # -- hot path -----------------------------------------------------------------------------
    def submit(self, build: Callable[[Any], InferenceRecord | None], payload: Any) -> bool:
        """Queue ``payload``; the worker calls ``build(payload)`` to make its record."""
        return self.submit_record((build, payload))  # type: ignore[arg-type]

    def submit_record(self, record: InferenceRecord) -> bool:
        """Queue a finished record (the cheapest item: nothing left to build). False when dropped."""
        q = self._queue
        n = len(q)
        if n >= self.queue_size or self._stopping:
            with self._drop_lock:
                self.dropped += 1
            return False
        q.append(record)
        if n == self.batch_size:
            self._wake.set()
        return True

    @property
    def queued(self) -> int:
        return len(self._queue)

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> "Pipeline":
        if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
            self._pid = os.getpid()
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="infermeter-pipeline", daemon=True)
            self._thread.start()
        return self

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        """Process everything queued before this call and flush the sinks. True when done in time."""
        if self._thread is None or not self._thread.is_alive():
            self._drain()
            return self._flush_sinks(timeout_s)
        marker = _Flush()
        self._queue.append(marker)
        self._wake.set()
        if not marker.event.wait(timeout_s):
            return False
        return self._flush_sinks(timeout_s)

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Process what is queued, flush the sinks, stop the worker. Idempotent."""
        if self._stopping:
            return
        self.force_flush(timeout_s)
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _flush_sinks(self, timeout_s: float) -> bool:
        ok = True
        for sink in self.sinks:
            flush = getattr(sink, "force_flush", None)
            if flush is not None:
                try:
                    ok = bool(flush(timeout_s)) and ok
                except Exception as e:  # noqa: BLE001
                    self._note_error("flush", e)
                    ok = False
        return ok

    # -- worker ---------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            self._drain()
        self._drain()

    def _drain(self) -> None:
        q = self._queue
        popleft = q.popleft
        while q:
            items = [popleft() for _ in range(min(len(q), self.batch_size))]
            if set(map(type, items)) == _RECORDS_ONLY:  # the common batch: finished records only
                self._deliver(items)
                continue
            batch: list[InferenceRecord] = []
            for item in items:
                cls = item.__class__
                if cls is InferenceRecord:
                    batch.append(item)
                    continue
                if cls is _Flush:  # everything queued before the marker is delivered first
                    if batch:
                        self._deliver(batch)
                        batch = []
                    item.event.set()
                    continue
                build, payload = item
                try:
                    rec = build(payload)
                except Exception as e:  # noqa: BLE001 - a bad payload costs one record
                    self._note_error("build", e)
                    continue
                if rec is not None:
                    batch.append(rec)
            if batch:
                self._deliver(batch)

    def _deliver(self, batch: list[InferenceRecord]) -> None:
        for proc in self.processors:
            try:
                batch = proc(batch)
            except Exception as e:  # noqa: BLE001
                self._note_error(f"processor {getattr(proc, '__qualname__', proc)}", e)
        for sink in self.sinks:
            try:
                sink.consume(batch)
            except Exception as e:  # noqa: BLE001
                self._note_error(f"sink {type(sink).__name__}", e)
        self.processed += len(batch)

    def _note_error(self, where: str, e: BaseException) -> None:
        self.errors += 1
        key = f"{where}:{type(e).__name__}"
        if key not in self._error_kinds:
            self._error_kinds.add(key)
            logger.warning("infermeter pipeline: %s failed: %r (further %s errors are counted, not logged)", where, e, key)

    def stats(self) -> dict[str, int]:
        return {"queued": len(self._queue), "processed": self.processed, "dropped": self.dropped, "errors": self.errors}


class StoreSink:
    """Writes records to a :class:`~infermeter.store.Store` (on the store's writer thread)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def consume(self, records: Sequence[InferenceRecord]) -> None:
        self.store.write_records(records)

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        return self.store.force_flush(timeout_s)

"""The proxy as one of the agent's background parts, and the blocking ``serve()`` entry point."""

from __future__ import annotations

import gc
import logging
import signal
import sys
import threading
from typing import Any

from ...config import Settings
from .loop import LoopThread
from .server import ProxyServer

__all__ = ["ProxyComponent", "serve"]

logger = logging.getLogger(__name__)


class ProxyComponent:
    """Runs a :class:`ProxyServer` on its own event-loop thread, feeding ``pipeline``.

    ``start()`` returns once the port is bound (raising :class:`~infermeter.errors.ConfigError` when
    it cannot be), ``force_flush()`` has nothing of its own to flush, ``shutdown()`` lets in-flight
    requests finish (up to 5 s) and stops. Add it to an agent with ``agent.add_component(...)``.
    """

    def __init__(self, settings: Settings, pipeline: Any) -> None:
        self.server = ProxyServer(settings, pipeline)
        self._loop = LoopThread("infermeter-proxy")
        self._started = False

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> "ProxyComponent":
        if self._started:
            return self
        self._loop.start()
        try:
            self._loop.run(self.server.start())
        except BaseException:
            self._loop.stop()
            raise
        self._started = True
        return self

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        return True  # each request is handed to the pipeline as it ends

    def shutdown(self, timeout_s: float = 10.0) -> None:
        if not self._started:
            return
        self._started = False
        try:
            self._loop.run(self.server.stop(), timeout_s)
        except Exception as e:  # noqa: BLE001 - stopping anyway
            logger.warning("proxy did not stop cleanly: %r", e)
        self._loop.stop(timeout_s)


_GEN0_THRESHOLD = 10_000


_SWITCH_INTERVAL_S = 0.001
"""How long a background thread (pipeline, store writer) may keep the GIL while the event loop
waits for it: Python's default is 5 ms, which a proxied request at c=1 paid in its tail."""


def _tune_gc() -> tuple[int, int, int]:
    """Collector settings for a process that serves requests: what was built at start-up (modules,
    the price catalog, the store, ~60k objects) is frozen out of every later collection, and the
    youngest generation is collected every 10,000 allocations instead of 700, so the full
    collections that walked all of it (~15 ms each) stop landing on the event loop every few
    hundred requests. Measured in front of the kit's mock at c=32: -8% CPU per request. A
    threshold the user set (other than Python's default 700) is kept. Returns the thresholds before;
    :func:`_untune_gc` undoes it all.
    """
    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    if before[0] == 700:
        gc.set_threshold(_GEN0_THRESHOLD, before[1], before[2])
    return before


def _untune_gc(before: tuple[int, int, int]) -> None:
    gc.set_threshold(*before)
    gc.unfreeze()


def serve(settings: Settings, *, ready: threading.Event | None = None, stop: threading.Event | None = None,
          announce: bool = True) -> int:
    """Run an agent (store, pipeline, API) with the proxy in front of ``settings.upstream`` until stopped.

    Blocks until ``stop`` is set, or SIGINT/SIGTERM arrives when called from the main thread; sets
    ``ready`` once the proxy accepts connections. Flushes the store and returns 0. Once started it
    tunes the process's garbage collector for serving (:func:`_tune_gc`), until it returns. Raises
    :class:`~infermeter.errors.InfermeterError` (ConfigError, StoreError) when it cannot start.
    ``infermeter run`` calls this after starting the model server.
    """
    from ..agent import Agent

    agent = Agent(settings, announce=announce)
    proxy = ProxyComponent(settings, agent.pipeline)
    agent.add_component(proxy)
    stop = stop or threading.Event()
    previous = {}
    gc_before = None
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        try:
            agent.start()
        except BaseException:
            agent.shutdown()
            raise
        gc_before = _tune_gc()
        switch_before = sys.getswitchinterval()
        sys.setswitchinterval(_SWITCH_INTERVAL_S)
        if announce:
            print(f"infermeter: proxy listening on {proxy.url} -> {settings.upstream}", file=sys.stderr, flush=True)
        if ready is not None:
            ready.set()
        stop.wait()
        agent.shutdown()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if gc_before is not None:
            _untune_gc(gc_before)
            sys.setswitchinterval(switch_before)
    return 0

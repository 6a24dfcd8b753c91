"""The process-wide runtime: which pipeline ``@track`` feeds, started on first use.

With no endpoint configured, the first tracked call starts the embedded agent (store, pipeline,
API) on daemon threads. With ``INFERMETER_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT`` set it
starts a :class:`~infermeter.exporters.remote.RemoteAgent` instead: records go out as OTLP spans. The implicit default never breaks the user's code: if it cannot start
it warns once and telemetry is off. ``infermeter.configure(...)`` starts it explicitly and raises
a clear error instead.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .agent import Agent
    from .pipeline import Pipeline

__all__ = ["pipeline", "configure", "shutdown", "force_flush", "current_agent"]

logger = logging.getLogger(__name__)

ENABLED = True
"""Read by every wrapper on every call; False makes @track a pass-through."""

_pipeline: "Pipeline | None" = None
_agent: "Agent | None" = None
_failed = False
_lock = threading.RLock()


def pipeline() -> "Pipeline | None":
    """The pipeline to feed; starts the implicit default on first use. Hot path: one global read."""
    p = _pipeline
    if p is not None or _failed:
        return p
    return _start_default()


def _start_default() -> "Pipeline | None":
    global _failed, ENABLED
    with _lock:
        if _pipeline is not None or _failed:
            return _pipeline
        from ..config import Settings
        from ..errors import InfermeterError

        try:
            settings = Settings.load()
        except InfermeterError as e:
            _failed = True
            ENABLED = False
            logger.warning("infermeter: telemetry off: %s", e)
            return None
        if not settings.enabled:
            _failed = True
            ENABLED = False
            return None
        try:
            _install(settings, explicit=False)
        except Exception as e:  # noqa: BLE001 - the implicit default never breaks the user's code
            _failed = True
            ENABLED = False
            logger.warning("infermeter: telemetry off: %s", e)
            return None
        return _pipeline


def _install(settings: Any, explicit: bool) -> "Agent":
    global _pipeline, _agent
    from .agent import Agent

    if settings.endpoint:  # a worker: export OTLP to the agent (or any backend) instead of owning a store
        from ..exporters.remote import RemoteAgent

        agent = RemoteAgent(settings).start()
    else:
        agent = Agent(settings, announce=True)
        agent.start()
    _agent = agent
    _pipeline = agent.pipeline
    return agent


def configure(settings: Any = None, **overrides: Any) -> "Agent | None":
    """Start (or restart) infermeter in this process with explicit settings.

    Raises :class:`~infermeter.errors.ConfigError` / ``StoreError`` when it cannot start, unlike
    the implicit default. Returns the agent, or None when ``enabled=False``.
    """
    global _failed, ENABLED
    from ..config import Settings

    with _lock:
        shutdown()
        s = settings if settings is not None else Settings.load(**overrides)
        if overrides and settings is not None:
            s = s.replace(**overrides)
        _failed = False
        ENABLED = s.enabled
        if not s.enabled:
            _failed = True
            return None
        return _install(s, explicit=True)


def current_agent() -> "Agent | None":
    return _agent


def force_flush(timeout_s: float = 10.0) -> bool:
    a = _agent
    return a.force_flush(timeout_s) if a is not None else True


def shutdown(timeout_s: float = 10.0) -> None:
    """Flush and stop the in-process agent. Idempotent; a later call starts a fresh one."""
    global _pipeline, _agent, _failed, ENABLED
    with _lock:
        a = _agent
        _pipeline = None
        _agent = None
        _failed = False
        ENABLED = True
        if a is not None:
            a.shutdown(timeout_s)


def _after_fork_in_child() -> None:
    # The parent's threads and DuckDB handle do not survive fork: start afresh on first use.
    global _pipeline, _agent, _failed, _lock
    _lock = threading.RLock()
    _pipeline = None
    _agent = None
    _failed = False


atexit.register(shutdown)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

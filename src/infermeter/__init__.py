"""infermeter: what every inference request costs, where the money goes, and what to change.

Public face::

    import infermeter

    @infermeter.track(model="llama-3-8b", provider="vllm")
    def generate(prompt): ...

``import infermeter`` is light: it does not import web servers, the TUI or NVML.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .agent.decorator import Call, current_call, measure, track
from .agent.runtime import configure, force_flush, shutdown
from .config import Settings
from .errors import ConfigError, InfermeterError, StoreError, StoreLockedError
from .records import InferenceRecord


def instrument_app(app, **kwargs):  # noqa: ANN001, ANN201 - the real signature is in agent.instrument
    """Instrument a FastAPI model server in-process (OpenTelemetry's FastAPI instrumentation plus
    the sidecar's wire-protocol extraction); see :func:`infermeter.agent.instrument.instrument_app`.
    Needs the ``[fastapi]`` extra, imported here on first call so ``import infermeter`` stays light."""
    from .agent.instrument import instrument_app as _instrument_app

    return _instrument_app(app, **kwargs)


__all__ = [
    "__version__",
    "track",
    "measure",
    "current_call",
    "Call",
    "configure",
    "force_flush",
    "shutdown",
    "Settings",
    "InferenceRecord",
    "InfermeterError",
    "ConfigError",
    "StoreError",
    "StoreLockedError",
    "instrument_app",
]

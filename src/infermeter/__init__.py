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
]

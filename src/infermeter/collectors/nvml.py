"""The one wrapper around NVML (package ``nvidia-ml-py``, imported as ``pynvml``).

Every NVML call infermeter makes goes through here. :class:`Nvml` initialises once, lazily and
thread-safely, and shuts NVML down at exit. A missing library or driver is not an error: it logs
one line with a hint and :meth:`Nvml.devices` returns nothing. On a device, an unsupported call
(``NotSupported``, an old driver without the function, no permission) reads ``None`` and is not
tried again; any other NVML failure raises :class:`NvmlError` for the caller to count.

The library is a parameter (``Nvml(lib)``): tests pass :class:`~.fake_nvml.FakeNvml`, the way
httpx takes a transport. Errors are classified by their NVML return code (``.value``), so any
library whose exceptions carry one will do.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import InfermeterError

__all__ = ["Nvml", "NvmlDevice", "NvmlError", "CallStats", "default_nvml", "set_default_nvml"]

logger = logging.getLogger(__name__)

# NVML return codes (nvml.h).
ERROR_UNINITIALIZED = 1
ERROR_INVALID_ARGUMENT = 2
ERROR_NOT_SUPPORTED = 3
ERROR_NO_PERMISSION = 4
ERROR_NOT_FOUND = 6
ERROR_DRIVER_NOT_LOADED = 9
ERROR_LIBRARY_NOT_FOUND = 12
ERROR_FUNCTION_NOT_FOUND = 13
ERROR_GPU_IS_LOST = 15
ERROR_UNKNOWN = 999

UNSUPPORTED = frozenset({ERROR_INVALID_ARGUMENT, ERROR_NOT_SUPPORTED, ERROR_NO_PERMISSION, ERROR_NOT_FOUND, ERROR_FUNCTION_NOT_FOUND})
"""Codes meaning "this device cannot answer this call": the value is None, now and later."""

TEMPERATURE_GPU = 0
CLOCK_SM = 1
DEVICE_MIG_ENABLE = 1


class NvmlError(InfermeterError):
    """An NVML call failed for a reason other than "not supported" (GPU lost, driver error, ...)."""

    def __init__(self, fn: str, code: int | None, message: str) -> None:
        self.fn = fn
        self.code = code
        super().__init__(f"{fn}: {message}")


@dataclass
class CallStats:
    """What each NVML function cost, when the wrapper is built with ``timed=True``."""

    calls: int = 0
    total_ns: int = 0
    max_ns: int = 0
    errors: int = 0


def _text(v: Any) -> str:
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)


def _hardware_present() -> bool:
    return os.path.exists("/dev/nvidia0") or os.path.exists("/proc/driver/nvidia")


_INIT_HINTS = {
    ERROR_LIBRARY_NOT_FOUND: "the NVIDIA driver library (libnvidia-ml.so.1) is not installed or not on the loader path",
    ERROR_DRIVER_NOT_LOADED: "the NVIDIA kernel driver is not loaded (does `nvidia-smi` work?)",
    ERROR_NO_PERMISSION: "no permission to open the NVIDIA devices (/dev/nvidia*)",
}


class Nvml:
    """An NVML session over ``lib`` (default: the ``pynvml`` module, imported on first use)."""

    def __init__(self, lib: Any = None, *, timed: bool = False) -> None:
        self._lib = lib
        self._lock = threading.Lock()
        self._ok: bool | None = None
        self._closed = False
        self.timed = timed
        self.stats: dict[str, CallStats] = {}
        self.unavailable_reason: str | None = None

    # -- life cycle -------------------------------------------------------------------------------
    def available(self) -> bool:
        """Initialise NVML on first call; False (and one log line) when there is no GPU to read."""
        ok = self._ok
        if ok is not None:
            return ok
        with self._lock:
            if self._ok is None:
                self._ok = self._init()
            return self._ok

    def _init(self) -> bool:
        if self._lib is None:
            try:
                import pynvml
            except ImportError:
                return self._unavailable("the nvidia-ml-py package is not installed (pip install nvidia-ml-py)")
            self._lib = pynvml
        try:
            self._lib.nvmlInit()
        except Exception as e:  # noqa: BLE001 - NVMLError, or OSError from ctypes on a broken install
            code = getattr(e, "value", None)
            return self._unavailable(_INIT_HINTS.get(code, f"nvmlInit failed: {e}"))
        atexit.register(self.shutdown)
        return True

    def _unavailable(self, reason: str) -> bool:
        self.unavailable_reason = reason
        # Warn where the hardware is there but NVML is not (a container without the driver mounted);
        # on a machine with no NVIDIA device at all this is the normal case, so only INFO.
        level = logging.WARNING if _hardware_present() else logging.INFO
        logger.log(level, "infermeter: no GPU sampling: %s. Set INFERMETER_GPU=false to skip the attempt.", reason)
        return False

    @property
    def closed(self) -> bool:
        return self._closed

    def shutdown(self) -> None:
        """Shut NVML down once. Idempotent; the session cannot be used afterwards."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._ok:
                try:
                    self._lib.nvmlShutdown()
                except Exception as e:  # noqa: BLE001 - exiting anyway
                    logger.debug("nvmlShutdown failed: %s", e)
            self._ok = False

    # -- calls ------------------------------------------------------------------------------------
    def call(self, fn: str, *args: Any) -> Any:
        """``lib.<fn>(*args)``; raises NvmlError carrying the NVML code on failure."""
        f = getattr(self._lib, fn, None)
        if f is None:
            raise NvmlError(fn, ERROR_FUNCTION_NOT_FOUND, "not in this version of nvidia-ml-py")
        t0 = time.perf_counter_ns() if self.timed else 0
        try:
            return f(*args)
        except Exception as e:  # noqa: BLE001 - pynvml's NVMLError tree, or ctypes errors
            if self.timed:
                self._stat(fn).errors += 1
            raise NvmlError(fn, getattr(e, "value", None), str(e) or type(e).__name__) from e
        finally:
            if self.timed:
                dt = time.perf_counter_ns() - t0
                s = self._stat(fn)
                s.calls += 1
                s.total_ns += dt
                s.max_ns = max(s.max_ns, dt)

    def _stat(self, fn: str) -> CallStats:
        s = self.stats.get(fn)
        if s is None:
            s = self.stats[fn] = CallStats()
        return s

    def devices(self) -> list["NvmlDevice"]:
        """Every GPU, and after each MIG-enabled GPU its MIG devices. Empty when NVML is unavailable.

        A device that cannot even be named (lost at start-up) is logged and left out.
        """
        if not self.available():
            return []
        out: list[NvmlDevice] = []
        for i in range(self.call("nvmlDeviceGetCount")):
            try:
                h = self.call("nvmlDeviceGetHandleByIndex", i)
                dev = NvmlDevice(self, h, _text(self.call("nvmlDeviceGetUUID", h)), i, _text(self.call("nvmlDeviceGetName", h)))
            except NvmlError as e:
                logger.warning("infermeter: GPU %d skipped: %s", i, e)
                continue
            out.append(dev)
            mode = dev.read("nvmlDeviceGetMigMode")
            if mode is not None and mode[0] == DEVICE_MIG_ENABLE:
                dev.mig_enabled = True
                out.extend(self._mig_devices(dev))
        return out

    def _mig_devices(self, parent: "NvmlDevice") -> list["NvmlDevice"]:
        out = []
        for j in range(parent.read("nvmlDeviceGetMaxMigDeviceCount") or 0):
            try:
                h = self.call("nvmlDeviceGetMigDeviceHandleByIndex", parent.handle, j)
                uuid = _text(self.call("nvmlDeviceGetUUID", h))
                name = _text(self.call("nvmlDeviceGetName", h))
            except NvmlError as e:
                if e.code not in UNSUPPORTED:  # NOT_FOUND: an empty MIG slot, the normal case
                    logger.warning("infermeter: MIG device %d of GPU %d skipped: %s", j, parent.index, e)
                continue
            out.append(NvmlDevice(self, h, uuid, parent.index, name, parent_uuid=parent.uuid))
        return out


@dataclass(eq=False)
class NvmlDevice:
    """One GPU or MIG device: its handle, identity, and the calls it does not support."""

    nvml: Nvml
    handle: Any
    uuid: str
    index: int
    name: str
    parent_uuid: str | None = None
    mig_enabled: bool = False
    unsupported: set[str] = field(default_factory=set)

    def read(self, fn: str, *args: Any) -> Any:
        """``fn(handle, *args)``, or None when this device does not support it (remembered)."""
        if fn in self.unsupported:
            return None
        try:
            return self.nvml.call(fn, self.handle, *args)
        except NvmlError as e:
            if e.code in UNSUPPORTED:
                self.unsupported.add(fn)
                return None
            raise


_default: Nvml | None = None
_default_is_own = False
_default_lock = threading.Lock()


def default_nvml() -> Nvml:
    """The process-wide session over the real ``pynvml`` (initialised on first use)."""
    global _default, _default_is_own
    with _default_lock:
        if _default is None:
            _default, _default_is_own = Nvml(), True
        return _default


def set_default_nvml(nvml: Nvml | None) -> Nvml | None:
    """Replace the process-wide session (tests, or an embedding app); returns the previous one."""
    global _default, _default_is_own
    with _default_lock:
        prev, _default, _default_is_own = _default, nvml, False
        return prev


def _after_fork_in_child() -> None:
    # A real NVML session is not carried into a forked child: the child starts its own.
    global _default, _default_lock
    _default_lock = threading.Lock()
    if _default_is_own:
        _default = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

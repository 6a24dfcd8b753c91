"""Handing the memory DuckDB freed back to the operating system.

DuckDB's Linux builds allocate their buffers with a jemalloc bundled into the extension module
(symbols prefixed ``duckdb_je_``). jemalloc keeps freed pages for reuse and returns them only
after a decay time, so a process that writes every second keeps the peak of its last inserts,
checkpoints and queries resident: ~15-20 MB in a sidecar at 4-5k requests/s. ``purge()`` asks that
jemalloc to return every freed page of every arena now (its ``arena.<all>.purge`` control).

The control is reached through ``ctypes`` on the loaded module. It is not part of DuckDB's API:
where the symbol is missing (macOS and Windows builds, or a future wheel without it) ``purge()``
does nothing and says so by returning False. The call lets go of the GIL while it runs.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from typing import Any

__all__ = ["purge", "available", "stats"]

logger = logging.getLogger(__name__)

_PURGE_ALL = b"arena.4096.purge"  # 4096: MALLCTL_ARENAS_ALL


@functools.cache
def _control() -> Any:
    """DuckDB's ``duckdb_je_mallctl``, or None where this build has none (looked up once)."""
    try:
        import _duckdb  # the extension module that `import duckdb` loads

        fn = ctypes.CDLL(_duckdb.__file__).duckdb_je_mallctl
    except (ImportError, OSError, AttributeError) as e:
        logger.debug("DuckDB's allocator control is not available (%r): freed memory returns on its own schedule", e)
        return None
    fn.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


def available() -> bool:
    """True when this DuckDB build's allocator can be asked to purge."""
    return _control() is not None


def purge() -> bool:
    """Return DuckDB's freed pages to the OS now. True when done; False where not available."""
    fn = _control()
    return fn is not None and fn(_PURGE_ALL, None, None, None, 0) == 0


_STATS = ("allocated", "active", "resident", "metadata", "mapped")


def stats() -> dict[str, int]:
    """DuckDB's jemalloc counters in bytes (``stats.allocated``, ``.active``, ``.resident``,
    ``.metadata``, ``.mapped``), refreshed now; {} where the control is not available.

    ``resident`` minus ``active`` and ``metadata`` is roughly what a :func:`purge` would return:
    freed pages that still count in the process's RSS.
    """
    fn = _control()
    if fn is None:
        return {}
    epoch = ctypes.c_uint64(1)
    size = ctypes.c_size_t(8)
    if fn(b"epoch", ctypes.byref(epoch), ctypes.byref(size), ctypes.byref(epoch), 8) != 0:
        return {}
    out = {}
    for name in _STATS:
        v = ctypes.c_size_t()
        size = ctypes.c_size_t(ctypes.sizeof(v))
        if fn(f"stats.{name}".encode(), ctypes.byref(v), ctypes.byref(size), None, 0) == 0:
            out[name] = v.value
    return out

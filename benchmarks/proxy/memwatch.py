"""Run the `infermeter` CLI with a thread that logs where its memory is, for RSS investigations.

    MEMWATCH_OUT=/tmp/mem.jsonl .venv/bin/python benchmarks/proxy/memwatch.py proxy --upstream URL ...
    /tmp/benchvenv/bin/python benchmarks/proxy/soak.py --soak-s 60 --memwatch /tmp/mem.jsonl   # the same, under load

Every ``MEMWATCH_EVERY_S`` (default 5) it appends one JSON line to ``MEMWATCH_OUT``: RSS and its
parts from smaps (DuckDB's library, other files, heap, anonymous), Python's obmalloc arenas, glibc's
``mallinfo2`` (in use, free), DuckDB's jemalloc (``infermeter.store.allocator.stats()``), DuckDB's
own accounting (``duckdb_memory()`` by tag), and, with ``MEMWATCH_PURGE=1``, RSS and jemalloc's
resident bytes again right after a purge: what freed-but-kept pages weighed at that moment.

A diagnostic, not a benchmark: the thread and its queries cost a little memory and CPU themselves.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from soak import rss_mb, rss_parts_mb  # noqa: E402


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                                                 "uordblks", "fordblks", "keepcost")]


def _obmalloc_arenas() -> int | None:
    """Python's obmalloc arenas in use (sys._debugmallocstats writes them to the C stderr)."""
    r, w = os.pipe()
    saved = os.dup(2)
    os.dup2(w, 2)
    try:
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    for line in data.decode(errors="replace").splitlines():
        if line.startswith("# arenas allocated current"):
            return int(line.split("=")[-1].replace(",", ""))
    return None


_AGENTS: list = []  # every Agent started in this process (the proxy's is not the decorator's runtime agent)


def _record_agents() -> None:
    from infermeter.agent.agent import Agent

    start = Agent.start

    def recording_start(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        _AGENTS.append(self)
        return start(self, *args, **kwargs)

    Agent.start = recording_start


def _agent() -> object | None:
    return _AGENTS[-1] if _AGENTS else None


def _sample(libc: ctypes.CDLL | None, purge: bool, t0: float) -> dict:
    from infermeter.store import allocator

    mb = 2**20
    pid = os.getpid()
    out: dict = {"t_s": round(time.monotonic() - t0, 1), "rss_mb": round(rss_mb(pid), 1), "parts_mb": rss_parts_mb(pid),
                 "obmalloc_arenas": _obmalloc_arenas()}
    if libc is not None:
        m = libc.mallinfo2()
        out["glibc_mb"] = {"in_use": round(m.uordblks / mb, 1), "free": round(m.fordblks / mb, 1)}
    out["jemalloc_mb"] = {k: round(v / mb, 1) for k, v in allocator.stats().items()}
    agent = _agent()
    store = getattr(agent, "store", None)
    if store is not None:
        try:
            cur = store.cursor()
            rows = cur.execute("SELECT tag, memory_usage_bytes FROM duckdb_memory() WHERE memory_usage_bytes > 0").fetchall()
            cur.close()
            out["duckdb_mb"] = {tag: round(b / mb, 1) for tag, b in rows}
        except Exception as e:  # noqa: BLE001 - a store closing under us
            out["duckdb_mb"] = repr(e)
    if purge:
        allocator.purge()
        out["after_purge"] = {"rss_mb": round(rss_mb(pid), 1),
                              "jemalloc_resident_mb": round(allocator.stats().get("resident", 0) / mb, 1)}
    return out


def _watch(path: str, every_s: float, purge: bool) -> None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
    except (OSError, AttributeError):
        libc = None
    t0 = time.monotonic()
    while True:
        time.sleep(every_s)
        try:
            line = json.dumps(_sample(libc, purge, t0))
        except Exception as e:  # noqa: BLE001 - keep watching
            line = json.dumps({"error": repr(e)})
        with open(path, "a") as fh:
            fh.write(line + "\n")


def main() -> int:
    _record_agents()
    path = os.environ.get("MEMWATCH_OUT", "memwatch.jsonl")
    every = float(os.environ.get("MEMWATCH_EVERY_S", "5"))
    threading.Thread(target=_watch, args=(path, every, os.environ.get("MEMWATCH_PURGE") == "1"),
                     name="memwatch", daemon=True).start()
    from infermeter.agent.cli import main as cli

    sys.argv[0] = "infermeter"
    return cli()


if __name__ == "__main__":
    sys.exit(main())

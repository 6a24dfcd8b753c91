"""Who holds a DuckDB file, and the marker an agent leaves beside the file it owns.

DuckDB lets one process open a file read-write and no other process open it at all meanwhile.
The agent writes ``<db>.agent`` (JSON: pid, API URL) when it opens the store, so that other
commands can say who holds the file and talk to that agent instead.
"""

from __future__ import annotations

import json
import logging
import os
import re

from ..errors import StoreLockedError

__all__ = ["marker_path", "write_marker", "remove_marker", "read_marker", "locked_error"]

logger = logging.getLogger(__name__)

_PID_RE = re.compile(r"PID (\d+)")


def marker_path(db_path: str) -> str:
    return db_path + ".agent"


def write_marker(db_path: str, api_url: str | None) -> None:
    try:
        with open(marker_path(db_path), "w") as fh:
            json.dump({"pid": os.getpid(), "api_url": api_url}, fh)
    except OSError as e:  # a read-only directory only costs the hint
        logger.debug("cannot write agent marker: %s", e)


def remove_marker(db_path: str) -> None:
    try:
        with open(marker_path(db_path)) as fh:
            if json.load(fh).get("pid") != os.getpid():
                return
        os.remove(marker_path(db_path))
    except (OSError, ValueError):
        pass


def read_marker(db_path: str) -> dict | None:
    try:
        with open(marker_path(db_path)) as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _describe(pid: int) -> str | None:
    try:
        import psutil

        p = psutil.Process(pid)
        return " ".join(p.cmdline()[:4]) or p.name()
    except Exception:  # noqa: BLE001 - only a nicer message is lost
        return None


def locked_error(db_path: str, message: str) -> StoreLockedError:
    """Turn DuckDB's lock message into an error naming the holder and, if known, its agent."""
    m = _PID_RE.search(message)
    pid = int(m.group(1)) if m else None
    marker = read_marker(db_path)
    agent_url = None
    if marker and (pid is None or marker.get("pid") == pid):
        agent_url = marker.get("api_url")
        pid = pid or marker.get("pid")
    return StoreLockedError(db_path, pid, _describe(pid) if pid else None, agent_url)

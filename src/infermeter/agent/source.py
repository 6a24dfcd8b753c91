"""Where a CLI command reads from: a running agent's API, or a store file no agent holds.

DuckDB allows one process per file, so when an agent holds the file the command asks that agent
(found through the marker it leaves beside the file), and says so.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from ..errors import InfermeterError, StoreError, StoreLockedError
from ..store import open_store
from .views import ViewContext, views

__all__ = ["DataSource", "AgentSource", "FileSource", "open_source", "AgentUnavailable"]


class AgentUnavailable(InfermeterError):
    """The agent's API did not answer."""


class DataSource:
    description = ""

    def view(self, name: str, **params: Any) -> dict[str, Any]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class AgentSource(DataSource):
    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        if "://" not in url:
            url = "http://" + url
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.description = f"agent {self.url}"

    def get(self, path: str, **params: Any) -> Any:
        q = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        url = f"{self.url}{path}" + (f"?{q}" if q else "")
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as e:
            try:
                reason = json.loads(e.read()).get("error", e.reason)
            except ValueError:
                reason = e.reason
            raise InfermeterError(f"agent {self.url} answered {e.code}: {reason}") from e
        except (urllib.error.URLError, OSError) as e:
            raise AgentUnavailable(f"no agent answering at {self.url} ({getattr(e, 'reason', e)})") from e

    def view(self, name: str, **params: Any) -> dict[str, Any]:
        return self.get(f"/api/v1/{name}", **params)


class FileSource(DataSource):
    def __init__(self, path: str) -> None:
        self.store = open_store(path, read_only=True)
        self.description = f"file {os.path.abspath(path)}"

    def view(self, name: str, **params: Any) -> dict[str, Any]:
        fn = views().get(name)
        if fn is None:
            raise InfermeterError(f"no view named {name!r}")
        cur = self.store.cursor()
        try:
            out = fn(ViewContext(cur, None), {k: str(v) for k, v in params.items() if v is not None})
        except ValueError as e:  # the same cases the API answers with 400
            raise InfermeterError(str(e)) from e
        finally:
            cur.close()
        if isinstance(out, dict):
            out.setdefault("source", self.description)
        return out

    def close(self) -> None:
        self.store.shutdown()


def open_source(db: str | None, agent: str | None, default_db: str) -> DataSource:
    """``--agent`` wins; else the file, or the agent holding it (with a note on stderr)."""
    if agent:
        return AgentSource(agent)
    path = db or default_db
    try:
        return FileSource(path)
    except StoreLockedError as e:
        if e.agent_url:
            print(f"infermeter: {path} is held by agent pid {e.pid}; reading from it at {e.agent_url}", file=sys.stderr)
            return AgentSource(e.agent_url)
        raise
    except StoreError:
        raise

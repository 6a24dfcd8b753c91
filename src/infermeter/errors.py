"""infermeter's exceptions.

    InfermeterError
     ├── ConfigError        a setting has a bad value (names the setting and the value)
     └── StoreError         the DuckDB store cannot be used
          └── StoreLockedError   another process holds the file (names the holder)

Nothing here is ever raised into a user's inference call: the decorator and the proxy
catch at their edges and degrade telemetry instead.
"""

from __future__ import annotations

__all__ = ["InfermeterError", "ConfigError", "StoreError", "StoreLockedError"]


class InfermeterError(Exception):
    """Base class of every error infermeter raises on purpose."""


class ConfigError(InfermeterError, ValueError):
    """A setting has a value infermeter cannot use."""

    def __init__(self, setting: str, value: object, reason: str) -> None:
        self.setting = setting
        self.value = value
        super().__init__(f"bad setting {setting}={value!r}: {reason}")


class StoreError(InfermeterError):
    """The store cannot be opened, written or read."""


class StoreLockedError(StoreError):
    """Another process holds the DuckDB file read-write."""

    def __init__(self, path: str, pid: int | None, holder: str | None, agent_url: str | None) -> None:
        self.path = path
        self.pid = pid
        self.holder = holder
        self.agent_url = agent_url
        who = f"process {pid}" if pid else "another process"
        if holder:
            who += f" ({holder})"
        hint = (
            f"talk to that agent instead: --agent {agent_url}"
            if agent_url
            else "stop that process, point this one at its agent with --agent URL, or use another --db file"
        )
        super().__init__(f"{path} is held by {who}; DuckDB allows one writer per file. {hint}")

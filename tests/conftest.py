from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import infermeter

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """No test sees the developer's INFERMETER_*/OTEL_* settings or writes into the repo."""
    for k in list(os.environ):
        if k.startswith("INFERMETER_") or k.startswith("OTEL_"):
            monkeypatch.delenv(k, raising=False)
    monkeypatch.chdir(tmp_path)
    yield
    infermeter.shutdown()


@pytest.fixture
def db_path(tmp_path) -> str:
    return str(tmp_path / "store.duckdb")


@pytest.fixture
def agent(db_path):
    """An embedded agent on a temporary store with its API on an ephemeral 127.0.0.1 port."""
    a = infermeter.configure(db=db_path, api="127.0.0.1:0")
    yield a
    infermeter.shutdown()


def run_python(code: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("INFERMETER_", "OTEL_"))}
    e.update(env or {})
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e, timeout=timeout)

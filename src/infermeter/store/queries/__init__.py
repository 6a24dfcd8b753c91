"""Named, parameterised SQL: the one place infermeter's queries live.

Each module of this package defines ``QUERIES = {name: sql}``; names are unique across modules.
Parameters are DuckDB named parameters (``$since_ns``), never formatted into the text.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

__all__ = ["sql", "run", "run_one", "names"]

_REGISTRY: dict[str, str] = {}


def _load() -> dict[str, str]:
    if not _REGISTRY:
        for info in pkgutil.iter_modules(__path__):
            mod = importlib.import_module(f"{__name__}.{info.name}")
            for name, text in mod.QUERIES.items():
                if name in _REGISTRY:
                    raise RuntimeError(f"query {name!r} defined twice")
                _REGISTRY[name] = text
    return _REGISTRY


def names() -> list[str]:
    return sorted(_load())


def sql(name: str) -> str:
    try:
        return _load()[name]
    except KeyError:
        raise KeyError(f"no query named {name!r}") from None


def run(con: Any, name: str, **params: Any) -> list[dict[str, Any]]:
    """Run the named query on a DuckDB connection or cursor; rows as dicts."""
    text = sql(name)
    cur = con.execute(text, params) if params else con.execute(text)
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, row)) for row in cur.fetchall()]


def run_one(con: Any, name: str, **params: Any) -> dict[str, Any] | None:
    rows = run(con, name, **params)
    return rows[0] if rows else None

"""Forward-only schema migrations, one module each: ``mNNNN_what.py`` with ``VERSION``,
``DESCRIPTION`` and ``STATEMENTS`` (a list of SQL statements).

Versions are taken in order; a store records each applied version in ``schema_version``.
Add a migration by adding a module with the next free number; never edit an applied one.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass

__all__ = ["Migration", "all_migrations"]


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


def all_migrations() -> list[Migration]:
    found: dict[int, Migration] = {}
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("m"):
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        m = Migration(mod.VERSION, mod.DESCRIPTION, tuple(mod.STATEMENTS))
        if m.version in found:
            raise RuntimeError(f"two migrations claim version {m.version}: {found[m.version].description!r}, {m.description!r}")
        found[m.version] = m
    return [found[v] for v in sorted(found)]

"""The DuckDB store: schema and migrations, the single writer, and every SQL query."""

from __future__ import annotations

from .db import SCHEMA_VERSION, Store, migrate, open_store

__all__ = ["Store", "open_store", "migrate", "SCHEMA_VERSION"]

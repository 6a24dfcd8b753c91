"""Fleet export: the store's requests, samples and costs as hive-partitioned Parquet, and back.

Layout, one file per table, day, host and hour::

    DIR/<table>/date=YYYY-MM-DD/host=<host>/<table>-HH.parquet

A file holds exactly the rows of its hour, so exporting an hour again rewrites the same file
(atomically: written aside, then renamed): re-running is idempotent, never a duplicate. Many
hosts' exports can share one ``DIR`` (or bucket prefix); DuckDB, Spark, Trino, pandas/pyarrow read
it with hive partitioning. ``requests`` has no host column in the store, so the exporting host is
added (and is the partition). :class:`ParquetSource` loads such files into an in-memory DuckDB with
the store's schema, so every view (``infermeter report --from 'DIR/**/*.parquet'``) runs unchanged
across the whole fleet.
"""

from __future__ import annotations

import glob
import io
import json
import os
import socket
import urllib.parse
import urllib.request
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, Protocol

from ..errors import InfermeterError
from ..store import queries
from ..store.queries.exports import FLEET_TABLES
from .focus import HOUR_NS

__all__ = ["FLEET_TABLES", "FleetReader", "StoreReader", "AgentReader", "export_fleet", "ParquetSource",
           "hours_handler", "rows_handler", "ARROW_STREAM"]

ARROW_STREAM = "application/vnd.apache.arrow.stream"


def _pyarrow() -> Any:
    try:
        import pyarrow as pa
        import pyarrow.parquet  # noqa: F401
    except ImportError as e:
        raise InfermeterError("Parquet export needs pyarrow: pip install 'infermeter[export]'") from e
    return pa


class FleetReader(Protocol):
    """Where the rows come from: the store file, or the agent that holds it."""

    def hours(self, table: str, since_ns: int, until_ns: int) -> list[int]: ...

    def rows(self, table: str, since_ns: int, until_ns: int, host: str) -> Any: ...  # a pyarrow.Table


class StoreReader:
    def __init__(self, con: Any) -> None:
        self.con = con

    def hours(self, table: str, since_ns: int, until_ns: int) -> list[int]:
        return [r["hour"] for r in queries.run(self.con, f"exports.fleet_hours.{table}", since_ns=since_ns, until_ns=until_ns)]

    def rows(self, table: str, since_ns: int, until_ns: int, host: str) -> Any:
        params: dict[str, Any] = {"since_ns": since_ns, "until_ns": until_ns}
        if table == "requests":
            params["host"] = host
        return self.con.sql(queries.sql(f"exports.fleet_rows.{table}"), params=params).to_arrow_table()


class AgentReader:
    """The same reads over a running agent's API (Arrow IPC for rows), for when it holds the file."""

    def __init__(self, url: str, timeout_s: float = 120.0) -> None:
        self.url = url.rstrip("/") if "://" in url else f"http://{url.rstrip('/')}"
        self.timeout_s = timeout_s

    def _get(self, path: str, **params: Any) -> bytes:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as r:
                return r.read()
        except OSError as e:
            raise InfermeterError(f"agent {self.url} did not give {path}: {e}") from e

    def hours(self, table: str, since_ns: int, until_ns: int) -> list[int]:
        return json.loads(self._get("/api/v1/fleet/hours", table=table, since_ns=since_ns, until_ns=until_ns))["hours"]

    def rows(self, table: str, since_ns: int, until_ns: int, host: str) -> Any:
        pa = _pyarrow()
        body = self._get("/api/v1/fleet/rows", table=table, since_ns=since_ns, until_ns=until_ns, host=host)
        return pa.ipc.open_stream(io.BytesIO(body)).read_all()


def _day(hour: int) -> str:
    return datetime.fromtimestamp(hour * 3600, tz=timezone.utc).strftime("%Y-%m-%d")


def _safe(part: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in part) or "_"


def export_fleet(reader: FleetReader, to_dir: str, since_ns: int, until_ns: int, host: str | None = None,
                 tables: Sequence[str] = tuple(FLEET_TABLES)) -> dict[str, Any]:
    """Write every hour in ``[since_ns, until_ns)`` that has rows; returns what was written."""
    pa = _pyarrow()
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    host = host or socket.gethostname()
    written: dict[str, int] = {}
    files = 0
    for table in tables:
        for hour in reader.hours(table, since_ns, until_ns):
            lo, hi = max(since_ns, hour * HOUR_NS), min(until_ns, (hour + 1) * HOUR_NS)
            if lo != hour * HOUR_NS or hi != (hour + 1) * HOUR_NS:
                # a partial hour would overwrite a whole hour's file with part of it
                raise InfermeterError("the export window must start and end on whole hours")
            data = reader.rows(table, lo, hi, host)
            by_host = [(host, data)] if table == "requests" else [
                (h, data.filter(pc.equal(data["host"], pa.scalar(h)))) for h in sorted(set(data["host"].to_pylist()))
            ]
            for h, part in by_host:
                d = os.path.join(to_dir, table, f"date={_day(hour)}", f"host={_safe(h)}")
                os.makedirs(d, exist_ok=True)
                path = os.path.join(d, f"{table}-{datetime.fromtimestamp(hour * 3600, tz=timezone.utc):%H}.parquet")
                tmp = f"{path}.tmp-{os.getpid()}"
                pq.write_table(part, tmp)
                os.replace(tmp, path)
                files += 1
                written[table] = written.get(table, 0) + part.num_rows
    return {"dir": os.path.abspath(to_dir), "files": files, "rows": written, "host": host}


def hour_floor(ns: int) -> int:
    return ns // HOUR_NS * HOUR_NS


# -- the agent's side of AgentReader ----------------------------------------------------------------

def _fleet_params(req: Any) -> tuple[str, int, int]:
    table = req.query.get("table", "")
    if table not in FLEET_TABLES:
        raise ValueError(f"table must be one of {', '.join(FLEET_TABLES)}")
    try:
        return table, int(req.query["since_ns"]), int(req.query["until_ns"])
    except (KeyError, ValueError):
        raise ValueError("since_ns and until_ns (integers) are required") from None


def hours_handler(store: Any) -> Any:
    from ..agent.api import json_response

    def handle(req: Any) -> Any:
        table, since, until = _fleet_params(req)
        cur = store.cursor()
        try:
            return json_response({"hours": StoreReader(cur).hours(table, since, until)})
        finally:
            cur.close()

    return handle


def rows_handler(store: Any) -> Any:
    from ..agent.api import Response

    def handle(req: Any) -> Any:
        pa = _pyarrow()
        table, since, until = _fleet_params(req)
        cur = store.cursor()
        try:
            data = StoreReader(cur).rows(table, since, until, req.query.get("host") or socket.gethostname())
        finally:
            cur.close()
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, data.schema) as w:
            w.write_table(data)
        return Response(200, sink.getvalue().to_pybytes(), ARROW_STREAM)

    return handle


# -- reading a fleet back ---------------------------------------------------------------------------

def _table_of(path: str) -> str | None:
    parts = os.path.normpath(path).split(os.sep)
    for i, p in enumerate(parts):
        if p.startswith("date=") and i > 0:
            return parts[i - 1] if parts[i - 1] in FLEET_TABLES else None
    return None


class _MemoryStore:
    """What FileSource needs of a store: cursors, and closing."""

    def __init__(self, con: Any) -> None:
        self.con = con

    def cursor(self) -> Any:
        return self.con.cursor()

    def shutdown(self) -> None:
        self.con.close()


def _source_base() -> type:
    from ..agent.source import FileSource

    return FileSource


class ParquetSource(_source_base()):  # type: ignore[misc]
    """A data source over fleet Parquet files: an in-memory DuckDB with the store's schema, filled
    from them; views run on it exactly as on a store file."""

    def __init__(self, pattern: str) -> None:  # noqa: D107 - FileSource.__init__ opens a file; this does not
        import duckdb

        from ..store.db import migrate

        files = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
        by_table: dict[str, list[str]] = {}
        for f in files:
            t = _table_of(f)
            if t is not None and f.endswith(".parquet"):
                by_table.setdefault(t, []).append(f)
        if not by_table:
            raise InfermeterError(f"no infermeter fleet Parquet files match {pattern!r} "
                                  "(expected DIR/<table>/date=YYYY-MM-DD/host=H/*.parquet from `infermeter export --format parquet`)")
        self.files = by_table
        con = duckdb.connect(":memory:", config={"autoinstall_known_extensions": "false"})
        self.store = _MemoryStore(con)
        migrate(con)
        for table, fs in by_table.items():
            try:
                con.execute(queries.sql(f"exports.fleet_load.{table}"), {"files": fs})
            except duckdb.Error as e:
                con.close()
                raise InfermeterError(f"cannot read the {table} Parquet files ({len(fs)}): {e}") from e
        hosts = sorted({p.split("host=", 1)[1].split(os.sep, 1)[0] for fs in by_table.values() for p in fs if "host=" in p})
        n = sum(len(fs) for fs in by_table.values())
        self.description = f"{n} Parquet files from {len(hosts)} host{'s' if len(hosts) != 1 else ''} ({pattern})"

"""The DuckDB store: one file, one writer thread, batched appends.

Writes arrive as ``(table, rows)`` jobs on a bounded queue; a full queue drops and counts. A single
writer thread gathers them and inserts per table: when a row group's worth (122,880 rows) is
queued, when the oldest queued row has waited ``write_delay_s``, or at once on ``force_flush``.
Why gather: DuckDB's cost per inserted row falls steeply with the size of the insert (measured
in memory, Arrow path: 4.9 µs/row at 1k rows, 3.1 at 8k, 1.4 at 64k, 0.5 at 123k, where whole
row groups are written straight to the file). Reads take their own cursor, so any thread may
query while the writer writes.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from ..errors import StoreError
from ..records import InferenceRecord, new_request_id
from . import allocator, lock
from .arrow_batch import ArrowInserter, arrow_available
from .migrations import all_migrations

__all__ = ["Store", "open_store", "SCHEMA_VERSION"]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = all_migrations()[-1].version

ROW_GROUP_ROWS = 122_880
"""DuckDB's row group size: an insert of this many rows or more is written straight to the file."""

MAX_INSERT_ROWS = 2 * ROW_GROUP_ROWS
"""The most rows converted and inserted in one statement, to bound the memory of one batch."""

APPEND_CHUNK_ROWS = 256
"""Rows per appender call: each converts Python values holding the GIL (~9 µs a row), so a
second's worth of a sidecar's rows in one call would stall its event loop for ~10-40 ms."""

RELEASE_INTERVAL_S = 1.0
"""At most one purge of DuckDB's freed memory a second: each purge makes the next allocations
fault their pages in again, which at a purge per attribution pass cost 7-10% of the pass
(bench_attribution keep-up 9.6-10.2x against 10.9-11.1x)."""

ARROW_MIN_ROWS = 16_384
"""Inserts this big go through Arrow (when installed); smaller ones through the appender.
Measured (thread CPU, requests table): appender 9.3 µs/row, Arrow 3.5 µs/row at 4k-row inserts.
Importing pyarrow costs ~40 MB of RSS, so it is kept for bulk (backfills, bursts, a store
falling behind): a sidecar at 4k requests/s writes ~4k rows per insert (one per
``write_delay_s``) and pays ~6 µs more per request to stay 40 MB smaller."""


def _connect(path: str, read_only: bool, memory_limit: str | None = None, threads: int | None = None,
             wal_autocheckpoint: str | None = None) -> Any:
    import duckdb

    config: dict[str, Any] = {"autoinstall_known_extensions": "false", "autoload_known_extensions": "true"}
    if memory_limit:
        config["memory_limit"] = memory_limit
    if threads:
        config["threads"] = threads
    if wal_autocheckpoint and not read_only:
        config["wal_autocheckpoint"] = wal_autocheckpoint
    try:
        return duckdb.connect(path, read_only=read_only, config=config)
    except duckdb.IOException as e:
        msg = str(e)
        if "lock" in msg.lower():
            raise lock.locked_error(path, msg) from e
        raise StoreError(f"cannot open store {path}: {msg}") from e
    except duckdb.Error as e:
        raise StoreError(f"cannot open store {path}: {e}") from e


def migrate(con: Any) -> int:
    """Apply every migration newer than the store's version; returns the version reached."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, description VARCHAR, applied_at TIMESTAMP DEFAULT current_timestamp)"
    )
    # fetchall, not fetchone: a result left unfinished blocks this connection's appenders (duckdb 2)
    current = con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchall()[0][0]
    for m in all_migrations():
        if m.version <= current:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            for stmt in m.statements:
                con.execute(stmt)
            con.execute("INSERT INTO schema_version (version, description) VALUES (?, ?)", [m.version, m.description])
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        current = m.version
    return current


class Store:
    """A DuckDB file and its single writer thread.

    ``submit(table, rows)`` never blocks; ``force_flush()`` waits until everything submitted
    before it is on disk (committed); ``shutdown()`` flushes, checkpoints and closes.
    """

    def __init__(self, path: str, *, read_only: bool = False, max_queued_rows: int = 1_000_000, api_url: str | None = None,
                 write_delay_s: float = 1.0, memory_limit: str | None = None, threads: int | None = None,
                 wal_autocheckpoint: str | None = None, release_memory: bool = True) -> None:
        self.path = path
        self.read_only = read_only
        self.max_queued_rows = max_queued_rows
        self.write_delay_s = write_delay_s
        self.dropped_rows = 0
        self.written_rows = 0
        self.write_errors = 0
        self._api_url = api_url
        self._jobs: collections.deque = collections.deque()
        self._queued_rows = 0
        self._oldest: float | None = None  # monotonic time of the oldest queued job
        self._flush_waiting = 0  # force_flush markers queued
        self._cv = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._closed = False
        self._appenders: dict[str, Any] = {}
        self._arrow: dict[str, ArrowInserter] = {}
        self._use_arrow = arrow_available()
        self._release_memory = release_memory and not read_only
        self._released_at = -RELEASE_INTERVAL_S
        self._con = _connect(path, read_only, memory_limit, threads, wal_autocheckpoint)
        if not read_only:
            try:
                self.schema_version = migrate(self._con)
            except Exception as e:
                self._con.close()
                raise StoreError(f"cannot migrate store {path}: {e}") from e
            lock.write_marker(path, api_url)
        else:
            self.schema_version = self._version_or_zero()

    # -- reads --------------------------------------------------------------------------------
    def cursor(self) -> Any:
        """A new cursor for this thread (DuckDB connections are not shared across threads)."""
        return self._con.cursor()

    def query(self, name: str, **params: Any) -> list[dict[str, Any]]:
        from . import queries

        cur = self.cursor()
        try:
            return queries.run(cur, name, **params)
        finally:
            cur.close()

    def _version_or_zero(self) -> int:
        try:
            return self._con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]
        except Exception:  # noqa: BLE001 - an empty or foreign file
            return 0

    def release_memory(self) -> None:
        """Return the memory DuckDB freed to the OS (see :mod:`.allocator`), at most once per
        ``RELEASE_INTERVAL_S``. The writer calls it after each insert; components that run big
        queries periodically call it after each run."""
        if self._release_memory:
            now = time.monotonic()
            if now - self._released_at >= RELEASE_INTERVAL_S:
                self._released_at = now
                allocator.purge()

    # -- writes -------------------------------------------------------------------------------
    def start(self) -> "Store":
        if self.read_only:
            raise StoreError(f"store {self.path} is open read-only")
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="infermeter-store-writer", daemon=True)
            self._thread.start()
        return self

    def submit(self, table: str, rows: Sequence[Sequence[Any]]) -> bool:
        """Queue rows for ``table``; False (and counted) when the queue is full or closed."""
        n = len(rows)
        if not n:
            return True
        with self._cv:
            if self._closed or self._queued_rows + n > self.max_queued_rows:
                self.dropped_rows += n
                return False
            self._jobs.append((table, rows))
            self._queued_rows += n
            if self._oldest is None:
                self._oldest = time.monotonic()
            if len(self._jobs) == 1 or self._queued_rows >= ROW_GROUP_ROWS:
                self._cv.notify()
        return True

    def write_records(self, records: Iterable[InferenceRecord]) -> bool:
        """Records are rows already (a NamedTuple in column order); only missing ids are filled."""
        rows = [r if r.request_id is not None else r._replace(request_id=new_request_id()) for r in records]
        return self.submit("requests", rows)

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every job submitted before this call is committed. True when it was."""
        if self._thread is None:
            return not self._jobs
        done = threading.Event()
        with self._cv:
            if self._closed and not self._thread.is_alive():
                return not self._jobs
            self._jobs.append((None, done))
            self._flush_waiting += 1
            self._cv.notify()
        return done.wait(timeout_s)

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Flush, stop the writer, checkpoint and close. Idempotent."""
        with self._cv:
            if self._closed:
                return
            self._closed = True
            self._cv.notify()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                logger.warning("store writer did not stop within %.1fs; %d rows may be lost", timeout_s, self._queued_rows)
                return
        try:
            if not self.read_only:
                self._con.execute("CHECKPOINT")
        except Exception as e:  # noqa: BLE001 - closing anyway
            logger.debug("checkpoint failed: %s", e)
        finally:
            self._con.close()
            if not self.read_only:
                lock.remove_marker(self.path)

    close = shutdown

    # -- writer thread --------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._closed and not self._flush_waiting and self._queued_rows < ROW_GROUP_ROWS:
                    if not self._jobs:
                        self._cv.wait()
                        continue
                    wait = self._oldest + self.write_delay_s - time.monotonic()  # type: ignore[operator]
                    if wait <= 0:
                        break
                    self._cv.wait(wait)
                jobs = list(self._jobs)
                self._jobs.clear()
                self._queued_rows = 0
                self._oldest = None
                self._flush_waiting = 0
                closing = self._closed
            self._write(jobs)
            if closing and not self._jobs:
                return

    def _append(self, table: str, rows: list) -> None:
        """Arrow column-wise insert for big batches when pyarrow is present, else the appender."""
        if len(rows) >= ARROW_MIN_ROWS and self._use_arrow:
            ins = self._arrow.get(table)
            try:
                if ins is None:
                    ins = self._arrow[table] = ArrowInserter(self._con, table)
                ins.insert(rows)
                return
            except Exception as e:  # noqa: BLE001 - e.g. a value Arrow cannot take: the appender can
                logger.debug("arrow insert into %s failed (%r); using the appender", table, e)
        app = self._appenders.get(table)
        if app is None:
            app = self._appenders[table] = self._con.appender(table)
        try:
            for i in range(0, len(rows), APPEND_CHUNK_ROWS):  # the GIL is let go between chunks
                app.append_rows(rows[i : i + APPEND_CHUNK_ROWS])
            app.flush()
        except Exception:
            self._appenders.pop(table, None)
            raise

    def _write(self, jobs: list) -> None:
        markers = []
        by_table: dict[str, list] = {}
        for table, rows in jobs:
            if table is None:
                markers.append(rows)
            else:
                by_table.setdefault(table, []).extend(rows)
        for table, all_rows in by_table.items():
            for i in range(0, len(all_rows), MAX_INSERT_ROWS):
                rows = all_rows[i : i + MAX_INSERT_ROWS]
                try:
                    self._append(table, rows)
                    self.written_rows += len(rows)
                except Exception as e:  # noqa: BLE001 - a thread edge: count, log once, go on
                    self.write_errors += 1
                    self.dropped_rows += len(rows)
                    if self.write_errors == 1 or self.write_errors % 1000 == 0:
                        logger.error("store write to %s failed (%d rows dropped, %d failures so far): %s", table, len(rows), self.write_errors, e)
        if by_table:
            self.release_memory()  # what the inserts (and queries since the last write) freed
        for ev in markers:
            ev.set()


def open_store(path: str, *, read_only: bool = False, api_url: str | None = None, memory_limit: str | None = None,
               threads: int | None = None, wal_autocheckpoint: str | None = None, write_delay_s: float = 1.0) -> Store:
    """Open (creating and migrating) a store; raises StoreLockedError/StoreError with a clear message."""
    if read_only and not os.path.exists(path):
        raise StoreError(f"no store at {path}: run `infermeter demo`, or point --db at an existing file")
    parent = os.path.dirname(os.path.abspath(path))
    if not read_only and not os.path.isdir(parent):
        raise StoreError(f"cannot create store {path}: directory {parent} does not exist")
    if not read_only and not os.access(parent, os.W_OK):
        raise StoreError(f"cannot write store {path}: directory {parent} is not writable")
    return Store(path, read_only=read_only, api_url=api_url, memory_limit=memory_limit, threads=threads,
                 wal_autocheckpoint=wal_autocheckpoint, write_delay_s=write_delay_s)


def now_ns() -> int:
    return time.time_ns()

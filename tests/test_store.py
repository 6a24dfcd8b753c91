import subprocess
import sys
import time
from decimal import Decimal

import duckdb
import pytest

from infermeter.errors import ConfigError, StoreError, StoreLockedError
from infermeter.records import RECORD_FIELDS, InferenceRecord, new_request_id
from infermeter.store import SCHEMA_VERSION, open_store
from infermeter.store.migrations import all_migrations


def rec(i: int = 0, **kw) -> InferenceRecord:
    base = dict(start_time_ns=time.time_ns() + i, duration_s=0.25, request_model="m", input_tokens=10, output_tokens=i,
                trace_id=(1 << 127) + i, span_id=(1 << 63) + i)
    base.update(kw)
    return InferenceRecord(**base)


def test_schema_is_migrated_and_versioned(db_path):
    s = open_store(db_path)
    s.shutdown()
    con = duckdb.connect(db_path, read_only=True)
    versions = [r[0] for r in con.execute("SELECT version FROM schema_version ORDER BY version").fetchall()]
    assert versions == [m.version for m in all_migrations()]
    assert versions[-1] == SCHEMA_VERSION
    cols = [r[0] for r in con.execute("SELECT column_name FROM information_schema.columns WHERE table_name='requests' ORDER BY ordinal_position").fetchall()]
    assert tuple(cols) == RECORD_FIELDS
    con.close()
    # reopening applies nothing twice
    s = open_store(db_path)
    assert s.schema_version == SCHEMA_VERSION
    s.shutdown()


def test_records_roundtrip_exactly(db_path):
    s = open_store(db_path).start()
    r = rec(3, cost_usd=Decimal("0.000001234"), cost_currency="USD", cost_source="catalog", tenant="t1",
            tokens_estimated=True, prompt_hash=-42, streaming=True, ttft_s=0.01, request_id=new_request_id())
    s.write_records([r])
    assert s.force_flush(5)
    row = s.cursor().execute("SELECT * FROM requests").fetchone()
    assert dict(zip(RECORD_FIELDS, row)) == r._asdict()
    s.write_records([rec(4)])  # no id given: the store gives it one
    assert s.force_flush(5)
    assert s.cursor().execute("SELECT count(DISTINCT request_id) FROM requests WHERE request_id IS NOT NULL").fetchone()[0] == 2
    s.shutdown()
    s.shutdown()  # idempotent


def test_full_queue_drops_and_counts(db_path):
    s = open_store(db_path)  # writer not started: nothing drains
    s.max_queued_rows = 5
    assert s.write_records([rec(i) for i in range(4)])
    assert not s.write_records([rec(i) for i in range(4)])
    assert s.dropped_rows == 4
    s.start()
    assert s.force_flush(5)
    assert s.query("requests.count")[0]["n"] == 4
    s.shutdown()


def test_second_process_gets_a_clear_error_naming_the_holder(db_path, tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, infermeter; infermeter.configure(db=sys.argv[1], api='127.0.0.1:0'); print('ready', flush=True); sys.stdin.read()", db_path],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreLockedError) as e:
            open_store(db_path)
        assert e.value.pid == holder.pid
        assert str(holder.pid) in str(e.value)
        assert e.value.agent_url and e.value.agent_url.startswith("http://127.0.0.1:")
        assert "--agent" in str(e.value)
    finally:
        holder.stdin.close()
        holder.wait(30)


def test_unwritable_locations_are_clear_errors(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        open_store(str(tmp_path / "no" / "such" / "x.duckdb"))
    # /proc refuses new files even to root: DuckDB's own error, wrapped with the path
    with pytest.raises(StoreError, match="cannot open store /proc/"):
        open_store("/proc/infermeter-test.duckdb")


def test_not_a_database_is_a_clear_error(tmp_path):
    p = tmp_path / "garbage.duckdb"
    p.write_bytes(b"this is not a duckdb file" * 100)
    with pytest.raises(StoreError, match="cannot open store"):
        open_store(str(p))


def test_missing_file_read_only(tmp_path):
    with pytest.raises(StoreError, match="no store at"):
        open_store(str(tmp_path / "nope.duckdb"), read_only=True)


def test_big_batches_roundtrip_exactly_through_both_insert_paths(db_path):
    """Batches of ARROW_MIN_ROWS+ rows go column-wise through Arrow (when installed), small ones
    through the appender; 128-bit trace ids, decimals and NULLs must come back identical either way."""
    from infermeter.store.db import ARROW_MIN_ROWS

    s = open_store(db_path).start()
    big = [rec(i, trace_id=(1 << 128) - 1 - i if i % 3 else None, cost_usd=Decimal(i) / Decimal(10**9) if i % 2 else None,
               request_id=new_request_id(), tenant=None if i % 5 else f"t{i}") for i in range(ARROW_MIN_ROWS + 50)]
    small = [rec(1000 + i, request_id=new_request_id()) for i in range(3)]
    s.write_records(big)
    assert s.force_flush(10)  # two inserts: queued together they would be one Arrow batch
    s.write_records(small)
    assert s.force_flush(10)
    rid_at = RECORD_FIELDS.index("request_id")
    got = {row[rid_at]: row for row in s.cursor().execute("SELECT * FROM requests").fetchall()}
    assert len(got) == len(big) + 3
    for r in big + small:
        assert got[r.request_id] == tuple(r)
    assert s.write_errors == 0
    s.shutdown()


def test_writer_gathers_rows_and_writes_them_within_the_delay_unasked(db_path):
    """Without force_flush, queued rows are written once the oldest has waited write_delay_s
    (the writer gathers them into bigger inserts meanwhile), or at once when a row group's worth
    is queued."""
    from infermeter.store.db import ROW_GROUP_ROWS, Store

    s = Store(db_path, write_delay_s=0.3).start()
    cur = s.cursor()

    def count():
        return cur.execute("SELECT count(*) FROM requests").fetchone()[0]

    t0 = time.monotonic()
    for i in range(5):
        s.write_records([rec(i, request_id=new_request_id())])
    while count() < 5 and time.monotonic() - t0 < 10:
        time.sleep(0.02)
    waited = time.monotonic() - t0
    assert count() == 5
    assert waited >= 0.25, f"written after {waited:.3f}s: not gathered"
    s.write_delay_s = 3600  # only the size trigger is left
    s.write_records([rec(i, request_id=new_request_id()) for i in range(ROW_GROUP_ROWS)])
    t0 = time.monotonic()
    while count() < 5 + ROW_GROUP_ROWS and time.monotonic() - t0 < 30:
        time.sleep(0.05)
    assert count() == 5 + ROW_GROUP_ROWS
    assert s.dropped_rows == 0 and s.write_errors == 0
    s.shutdown()


def test_the_agent_caps_duckdb_memory_and_threads(tmp_path):
    """DuckDB's own defaults are 80% of RAM and every core: an agent inside someone's inference
    process caps both (INFERMETER_STORE_MEMORY_LIMIT, 64MB; INFERMETER_STORE_THREADS, 2); 'off'
    leaves DuckDB's memory default. It also checkpoints and writes sooner than a bulk store."""
    from infermeter.agent.agent import Agent
    from infermeter.config import Settings

    agent = Agent(Settings.load({"INFERMETER_STORE_THREADS": "1"}, db=str(tmp_path / "a.duckdb"), api=None,
                                sampling=False)).start()
    try:
        cur = agent.store.cursor()
        assert cur.execute("SELECT current_setting('memory_limit')").fetchone()[0] == "61.0 MiB"
        assert cur.execute("SELECT current_setting('threads')").fetchone()[0] == 1
        # less kept in memory: checkpoints every 4 MB of WAL, records wait at most 0.25 s for an insert
        assert cur.execute("SELECT current_setting('wal_autocheckpoint')").fetchone()[0] == "3.8 MiB"
        assert agent.store.write_delay_s == 0.25
    finally:
        agent.shutdown()
    assert Settings.load({}).store_threads == 2
    with pytest.raises(ConfigError, match="INFERMETER_STORE_THREADS"):
        Settings.load({"INFERMETER_STORE_THREADS": "0"})
    s = open_store(str(tmp_path / "b.duckdb"), memory_limit=None)
    assert s.cursor().execute("SELECT current_setting('memory_limit')").fetchone()[0] != "61.0 MiB"
    s.shutdown()


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) / 1024 for line in fh if line.startswith("VmRSS:"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="DuckDB bundles jemalloc on Linux only")
def test_purge_returns_what_duckdb_freed_to_the_os():
    """DuckDB's jemalloc keeps freed pages until a decay that only allocations trigger: 80 MB of a
    dropped table stay resident until purged. Fails if a DuckDB wheel stops exposing the control."""
    from infermeter.store import allocator

    assert allocator.available()
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT range AS a, range * 2 AS b FROM range(5000000)")
    con.execute("DROP TABLE t")
    before = _rss_mb()
    assert allocator.purge()
    assert before - _rss_mb() > 40
    con.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="DuckDB bundles jemalloc on Linux only")
def test_allocator_stats_see_freed_pages_until_a_purge():
    """stats() reads jemalloc's counters afresh: a dropped table's pages leave `allocated` at once
    but stay in `resident` until purged."""
    from infermeter.store import allocator

    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT range AS a, range * 2 AS b FROM range(5000000)")
    held = allocator.stats()
    assert set(held) == {"allocated", "active", "resident", "metadata", "mapped"}
    con.execute("DROP TABLE t")
    dropped = allocator.stats()
    assert held["allocated"] - dropped["allocated"] > 40 * 2**20
    assert dropped["resident"] - dropped["active"] > 40 * 2**20  # freed, still resident
    allocator.purge()
    purged = allocator.stats()
    assert dropped["resident"] - purged["resident"] > 40 * 2**20
    con.close()


def test_the_writer_purges_after_its_inserts_unless_told_not_to(db_path, tmp_path, monkeypatch):
    from infermeter.store import Store, allocator

    calls = []
    monkeypatch.setattr(allocator, "purge", lambda: calls.append(1) or True)
    s = open_store(db_path).start()
    s.force_flush()
    assert calls == []  # nothing written, nothing to give back
    s.write_records([InferenceRecord(start_time_ns=1, duration_s=0.1)])
    s.force_flush()
    assert len(calls) == 1
    s.shutdown()
    quiet = Store(str(tmp_path / "q.duckdb"), release_memory=False).start()
    quiet.write_records([InferenceRecord(start_time_ns=1, duration_s=0.1)])
    quiet.force_flush()
    quiet.shutdown()
    assert len(calls) == 1

import threading

from infermeter.agent.pipeline import Pipeline
from infermeter.records import InferenceRecord


class ListSink:
    def __init__(self):
        self.records = []
        self.flushes = 0

    def consume(self, records):
        self.records.extend(records)

    def force_flush(self, timeout_s=10):
        self.flushes += 1
        return True


class BrokenSink:
    def consume(self, records):
        raise RuntimeError("sink down")


def rec(i):
    return InferenceRecord(start_time_ns=i, duration_s=0.0)


def test_batches_reach_every_sink_despite_a_broken_one():
    good = ListSink()
    p = Pipeline([BrokenSink(), good], batch_size=7, flush_interval_s=30).start()
    for i in range(100):
        p.submit_record(rec(i))
    assert p.force_flush(5)
    assert [r.start_time_ns for r in good.records] == list(range(100))
    assert p.errors > 0 and good.flushes == 1
    p.shutdown()
    p.shutdown()


def test_processors_run_before_sinks_and_bad_payloads_cost_one_record():
    sink = ListSink()
    p = Pipeline([sink], [lambda batch: [r for r in batch if r.start_time_ns % 2 == 0]], flush_interval_s=30).start()

    def build(x):
        if x == 5:
            raise ValueError("bad payload")
        return rec(x)

    for i in range(10):
        p.submit(build, i)
    p.force_flush(5)
    assert [r.start_time_ns for r in sink.records] == [0, 2, 4, 6, 8]
    assert p.errors == 1
    p.shutdown()


def test_submit_from_many_threads_loses_nothing():
    sink = ListSink()
    p = Pipeline([sink], queue_size=1_000_000, batch_size=512, flush_interval_s=0.05).start()

    def worker(base):
        for i in range(5000):
            p.submit_record(rec(base + i))

    ts = [threading.Thread(target=worker, args=(k * 10_000,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    p.force_flush(10)
    assert len(sink.records) == 20000 and len({r.start_time_ns for r in sink.records}) == 20000
    p.shutdown()


def test_submit_after_shutdown_is_dropped_not_raised():
    p = Pipeline([ListSink()]).start()
    p.shutdown()
    assert p.submit_record(rec(1)) is False
    assert p.dropped == 1

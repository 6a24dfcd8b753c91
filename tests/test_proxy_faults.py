"""Faults: what the proxy does when the upstream, the client or telemetry misbehaves."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from infermeter.records import Status
from tests.proxy_helpers import closed_port, make_proxy, proxy, upstream  # noqa: F401 - fixtures

CHAT = {"model": "test-model", "messages": [{"role": "user", "content": "hello"}]}


def test_upstream_refusing_connections_is_a_502_with_a_json_body(make_proxy):
    p = make_proxy(upstream=f"http://127.0.0.1:{closed_port()}")
    r = httpx.post(p.url + "/v1/chat/completions", json=CHAT, timeout=10)
    assert r.status_code == 502 and r.headers["content-type"].startswith("application/json")
    assert r.json()["error"]["type"] == "upstream_unreachable"
    rec = p.record()
    assert (rec.status, rec.http_status, rec.error_type, rec.request_model) == (Status.ERROR, 502, "upstream_unreachable", "test-model")
    assert rec.input_tokens is None and rec.tokens_estimated is False


def test_silent_upstream_is_a_504_after_the_timeout(make_proxy):
    p = make_proxy(upstream_timeout_s=0.3)
    r = httpx.post(p.url + "/v1/chat/completions", json={**CHAT, "model": "slow", "delay": 5}, timeout=10)
    assert r.status_code == 504 and r.json()["error"]["type"] == "upstream_timeout"
    rec = p.record()
    assert (rec.status, rec.http_status, rec.error_type) == (Status.ERROR, 504, "upstream_timeout")
    assert 0.3 <= rec.duration_s < 4


def test_upstream_silent_mid_stream_times_out_and_cuts_the_client_off(make_proxy):
    p = make_proxy(upstream_timeout_s=0.3)
    got = 0
    with pytest.raises(httpx.HTTPError):  # a cut chunked reply, not a clean end
        with httpx.Client(timeout=10) as c, c.stream("POST", p.url + "/v1/chat/completions",
                                                     json={**CHAT, "model": "stall", "delay": 5, "stream": True}) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                got += line.startswith("data: ")
    assert got == 2
    rec = p.record()
    assert (rec.status, rec.error_type, rec.http_status) == (Status.ERROR, "upstream_timeout", 200)
    assert 0.3 <= rec.duration_s < 4


def test_timeout_is_silence_not_length(make_proxy):
    """A reply that takes longer than the timeout in all, with shorter gaps, is not cut."""
    p = make_proxy(upstream_timeout_s=0.3)
    body = {**CHAT, "stream": True, "max_tokens": 8, "interval": 0.1}
    with httpx.Client(timeout=10) as c, c.stream("POST", p.url + "/v1/chat/completions", json=body) as r:
        lines = [ln for ln in r.iter_lines() if ln.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    rec = p.record()
    assert (rec.status, rec.error_type, rec.output_tokens) == (Status.OK, None, 8) and rec.duration_s > 0.6


def test_a_client_that_does_not_read_is_not_an_upstream_timeout(make_proxy):
    """When the client stops reading, the proxy stops reading the upstream: that silence is not the upstream's."""
    p = make_proxy(upstream_timeout_s=0.3)
    with httpx.Client(timeout=10) as c, c.stream("POST", p.url + "/v1/chat/completions",
                                                 json={**CHAT, "model": "flood", "stream": True}) as r:
        time.sleep(1.5)  # 32 MiB waiting: every buffer on the way fills up
        size = sum(len(b) for b in r.iter_raw())
    assert size > 32 * 2**20
    rec = p.record()
    assert (rec.status, rec.error_type) == (Status.OK, None)


def test_client_leaving_mid_stream_cancels_upstream_and_records_what_streamed(proxy):
    body = {**CHAT, "model": "endless", "stream": True}
    seen = 0
    with httpx.Client(timeout=10) as c, c.stream("POST", proxy.url + "/v1/chat/completions", json=body) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                seen += 1
            if seen == 5:
                break
    assert proxy.upstream.disconnected.wait(10), "the upstream request was not cancelled"
    rec = proxy.record()
    assert rec.status == Status.CANCELLED and rec.streaming is True
    assert rec.output_tokens >= 5 and rec.tokens_estimated is True  # the content events seen so far
    assert rec.error_type is None and rec.ttft_s is not None


def test_client_hanging_up_after_the_last_event_cancelled_nothing(proxy):
    body = {**CHAT, "model": "linger", "stream": True}
    with httpx.Client(timeout=10) as c, c.stream("POST", proxy.url + "/v1/chat/completions", json=body) as r:
        for line in r.iter_lines():
            if line == "data: [DONE]":
                break  # as the openai SDK does: the reply's end comes 3 s later
    rec = proxy.record()
    assert (rec.status, rec.output_tokens, rec.tokens_estimated, rec.finish_reason) == (Status.OK, 5, False, "length")


def test_malformed_json_passes_through_untouched_with_tokens_unknown(proxy):
    direct = httpx.post(proxy.upstream.url + "/v1/chat/completions", json={**CHAT, "model": "malformed"})
    proxied = httpx.post(proxy.url + "/v1/chat/completions", json={**CHAT, "model": "malformed"})
    assert proxied.status_code == 200 and proxied.content == direct.content
    rec = proxy.record()
    assert (rec.status, rec.input_tokens, rec.output_tokens, rec.tokens_estimated) == (Status.OK, None, None, False)


def test_broken_sse_passes_through_untouched_with_tokens_unknown(proxy):
    body = {**CHAT, "model": "broken-sse", "stream": True}
    direct = httpx.post(proxy.upstream.url + "/v1/chat/completions", json=body)
    proxied = httpx.post(proxy.url + "/v1/chat/completions", json=body)
    assert proxied.content == direct.content and b"not json" in proxied.content
    rec = proxy.record()
    assert (rec.input_tokens, rec.output_tokens, rec.tokens_estimated, rec.streaming) == (None, None, False, True)


def test_request_body_over_the_parse_limit_is_forwarded_unparsed(make_proxy):
    p = make_proxy(max_parse_bytes=1000)
    body = {**CHAT, "stream": True, "messages": [{"role": "user", "content": "word " * 2000}]}
    sent = httpx.Request("POST", "http://x", json=body).content
    r = httpx.post(p.url + "/v1/chat/completions", content=sent, headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 200
    assert p.upstream.calls[-1].body == sent  # not a byte changed: no usage injection either
    rec = p.record()
    assert rec.request_bytes == len(sent) and rec.request_model is None and rec.prompt_hash is None
    assert rec.output_tokens == 5 and rec.tokens_estimated is True  # still counted from the stream's content events


def test_big_request_body_above_aiohttps_default_limit_streams_through(make_proxy):
    p = make_proxy()
    blob = b"x" * (3 * 1024 * 1024)
    r = httpx.post(p.url + "/echo", content=blob, timeout=30)
    assert r.status_code == 200 and r.json()["body_len"] == len(blob)
    blob = b"y" * (5 * 1024 * 1024)  # above max_parse_bytes: streamed, never held whole
    r = httpx.post(p.url + "/echo", content=blob, timeout=30)
    assert r.status_code == 200 and r.json()["body_len"] == len(blob)
    assert [rec.request_bytes for rec in p.records(2)] == [3 * 1024 * 1024, 5 * 1024 * 1024]


def test_full_telemetry_queue_changes_nothing_for_the_client(proxy):
    expected = httpx.post(proxy.upstream.url + "/v1/chat/completions", json={**CHAT, "stream": True}).content
    proxy.agent.pipeline.queue_size = 0  # every record is dropped
    before = proxy.agent.pipeline.dropped
    for _ in range(5):
        r = httpx.post(proxy.url + "/v1/chat/completions", json={**CHAT, "stream": True}, timeout=10)
        assert r.status_code == 200 and r.content == expected
    assert proxy.agent.pipeline.dropped == before + 5


def test_stalled_store_does_not_hold_replies(proxy):
    stuck, release = threading.Event(), threading.Event()

    class StalledSink:
        def consume(self, records):
            stuck.set()
            release.wait(30)

    proxy.agent.pipeline.sinks.insert(0, StalledSink())
    try:
        httpx.post(proxy.url + "/v1/chat/completions", json=CHAT, timeout=5)
        flusher = threading.Thread(target=proxy.agent.force_flush, daemon=True)
        flusher.start()  # the pipeline thread takes that record into the stalled sink...
        assert stuck.wait(10)
        for _ in range(20):  # ...and replies keep coming while it is stuck there
            r = httpx.post(proxy.url + "/v1/chat/completions", json=CHAT, timeout=5)
            assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 5
        assert proxy.agent.pipeline.queued >= 20  # their records wait, none lost
    finally:
        release.set()
    assert len(proxy.records(21)) == 21


def test_upstream_dying_mid_reply_cuts_the_client_off(make_proxy, upstream):
    p = make_proxy(upstream_timeout_s=0.5)  # the endless stream stalls when the upstream is stopped
    body = {**CHAT, "model": "endless", "stream": True}
    got = 0
    try:
        with httpx.Client(timeout=10) as c, c.stream("POST", p.url + "/v1/chat/completions", json=body) as r:
            for line in r.iter_lines():
                got += line.startswith("data: ")
                if got == 3:
                    upstream.stop()
    except httpx.HTTPError:
        pass  # a cut chunked reply: exactly what the client must see
    rec = p.record()
    assert rec.error_type in ("upstream_broken", "upstream_timeout") and rec.status == Status.ERROR
    assert rec.output_tokens is None or rec.output_tokens >= 3

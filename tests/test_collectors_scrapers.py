"""Model-server scrapers against recorded vLLM / TGI / llama.cpp pages served by real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from infermeter.collectors import Sampler, ServerScraper, parse_metrics
from infermeter.collectors.build import build_sampler, metrics_url
from infermeter.collectors.gpu import GpuCollector
from infermeter.config import Settings
from infermeter.store import open_store
from tests.proxy_helpers import closed_port

FIXTURES = Path(__file__).parent / "fixtures" / "metrics"


def page(name: str) -> str:
    return (FIXTURES / name).read_text()


class MetricsServer:
    """A real HTTP server on an ephemeral 127.0.0.1 port serving ``page`` at /metrics (or ``status``)."""

    def __init__(self, text: str = "") -> None:
        self.text = text
        self.status = 200
        self.hits = 0
        self.hang = threading.Event()  # set: /metrics never answers until released
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.hits += 1
                if outer.hang.is_set():
                    outer.release.wait(10)
                body = outer.text.encode()
                self.send_response(outer.status if self.path == "/metrics" else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/metrics"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = MetricsServer()
    yield s
    s.close()


class Ticker:
    """A monotonic clock (``monotonic_ns``) the test moves by hand."""

    def __init__(self) -> None:
        self.now = 10**12

    def __call__(self) -> int:
        return self.now

    def advance(self, s: float) -> None:
        self.now += int(s * 1e9)


# -- parsing ------------------------------------------------------------------------------------------------


def test_vllm_v1_page():
    assert parse_metrics(page("vllm_v1.txt")) == ("vllm", {
        "requests_running": 7.0, "requests_waiting": 3.0, "kv_cache_usage": 0.4375,
        "prefix_cache_queries_total": 1_284_000.0, "prefix_cache_hits_total": 963_000.0, "preemptions_total": 2.0,
        "prompt_tokens_total": 1_532_871.0, "generation_tokens_total": 402_118.0,
        "requests_finished_total": 1790.0 + 212.0 + 4.0,
    })


def test_vllm_v0_page_uses_the_old_cache_name_and_drops_the_unknown_hit_rate():
    kind, v = parse_metrics(page("vllm_v0.txt"))
    assert kind == "vllm"
    assert v["kv_cache_usage"] == 0.8125  # vllm:gpu_cache_usage_perc
    assert "prefix_cache_hit_rate" not in v  # -1: prefix caching off, not a 0% hit rate
    assert (v["requests_running"], v["requests_waiting"], v["requests_swapped"]) == (12.0, 5.0, 0.0)
    assert (v["prompt_tokens_total"], v["generation_tokens_total"]) == (882_211.0, 190_554.0)


def test_tgi_page():
    assert parse_metrics(page("tgi.txt")) == ("tgi", {
        "requests_running": 6.0, "requests_waiting": 2.0, "batch_max_tokens": 14210.0, "requests_total": 5213.0,
        "requests_finished_total": 5190.0, "prompt_tokens_total": 2_411_093.0, "generation_tokens_total": 701_337.0,
    })


def test_llamacpp_pages_current_and_old():
    assert parse_metrics(page("llamacpp.txt")) == ("llamacpp", {
        "requests_running": 2.0, "requests_waiting": 1.0, "prompt_tokens_total": 96641.0,
        "generation_tokens_total": 23210.0, "decode_calls_total": 23381.0, "busy_slots_per_decode": 1.75,
    })
    kind, v = parse_metrics(page("llamacpp_old.txt"))
    assert (kind, v["kv_cache_usage"], v["kv_cache_tokens"]) == ("llamacpp", 0.625, 2560.0)


def test_several_engines_sum_counts_and_average_fractions():
    text = "\n".join([
        'vllm:num_requests_running{engine="0",model_name="m"} 3',
        'vllm:num_requests_running{engine="1",model_name="m"} 5',
        'vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25',
        'vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.75',
        'vllm:num_requests_running_extra{engine="0"} 100',  # a longer name is not ours
        'vllm:kv_cache_usage_perc{engine="2",model_name="m"} NaN',
    ])
    assert parse_metrics(text) == ("vllm", {"requests_running": 8.0, "kv_cache_usage": 0.5})


def test_unknown_page_and_malformed_line():
    assert parse_metrics("# HELP up x\nup 1\nprocess_cpu_seconds_total 3\n") == (None, {})
    with pytest.raises(ValueError):
        parse_metrics('vllm:num_requests_running{engine="0"} seven\n')


# -- scraping over HTTP --------------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture,kind", [("vllm_v1.txt", "vllm"), ("tgi.txt", "tgi"), ("llamacpp.txt", "llamacpp")])
def test_scraper_reads_a_live_endpoint(server, fixture, kind):
    server.text = page(fixture)
    s = ServerScraper(server.url)
    got = s.collect(5_000_000_000)
    assert s.kind == kind
    assert {r.metric: r.value for r in got} == parse_metrics(page(fixture))[1]
    assert {(r.ts_ns, r.url, r.kind) for r in got} == {(5_000_000_000, server.url, kind)}


def test_unreachable_endpoint_is_no_data_one_log_line_and_backoff(caplog):
    caplog.set_level(logging.INFO, logger="infermeter")
    clock = Ticker()
    s = ServerScraper(f"http://127.0.0.1:{closed_port()}/metrics", timeout_s=1, monotonic_ns=clock)
    for _ in range(5):
        assert s.collect(1) == []
        clock.now += 10**9
    # retried after 1 s, then 2 s (not every tick): attempts at t=0, 1, 3
    assert s.failures == 3
    assert len([m for m in caplog.messages if "cannot scrape" in m]) == 1
    assert not s.done  # a configured URL is never given up


def test_endpoint_that_comes_back_is_read_again(server, caplog):
    clock = Ticker()
    server.status = 503
    s = ServerScraper(server.url, monotonic_ns=clock)
    assert s.collect(1) == []
    server.status, server.text = 200, page("tgi.txt")
    assert s.collect(2) == []  # still backing off: not asked
    assert server.hits == 1
    clock.now += 2 * 10**9
    assert len(s.collect(3)) == 7
    assert any("answers again" in m for m in caplog.messages)
    assert any("HTTP 503" in m for m in caplog.messages)


def test_slow_endpoint_times_out_instead_of_stalling_the_tick(server):
    server.text = page("vllm_v1.txt")
    server.hang.set()
    s = ServerScraper(server.url, timeout_s=0.2)
    assert s.collect(1) == []
    assert s.failures == 1


def test_guessed_endpoint_that_is_not_a_model_server_is_dropped_quietly(server, caplog):
    caplog.set_level(logging.INFO, logger="infermeter")
    server.text = "# TYPE up gauge\nup 1\n"
    s = ServerScraper(server.url, guessed=True)
    assert s.collect(1) == [] and s.done
    server.status = 404
    s404 = ServerScraper(server.url, guessed=True)
    assert s404.collect(1) == [] and s404.done
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_guessed_endpoint_not_up_yet_is_retried(caplog):
    s = ServerScraper(f"http://127.0.0.1:{closed_port()}/metrics", guessed=True)
    assert s.collect(1) == [] and not s.done  # the model server may still be starting


def test_sampler_stores_server_samples(server, tmp_path):
    server.text = page("vllm_v1.txt")
    store = open_store(str(tmp_path / "s.duckdb")).start()
    try:
        sampler = Sampler([ServerScraper(server.url)], store, host="box")
        sampler.tick(1_000_000_000)
        sampler.tick(2_000_000_000)
        assert sampler.force_flush()
        rows = store.cursor().execute(
            "SELECT ts_ns, host, url, kind, value FROM server_samples WHERE metric = 'kv_cache_usage' ORDER BY ts_ns"
        ).fetchall()
        assert rows == [(1_000_000_000, "box", server.url, "vllm", 0.4375), (2_000_000_000, "box", server.url, "vllm", 0.4375)]
        assert store.query("samples.counts")[0]["server_samples"] == 2 * 9
    finally:
        store.shutdown()


# -- configuration ------------------------------------------------------------------------------------------------


def test_metrics_url_forms():
    assert metrics_url("127.0.0.1:8000") == "http://127.0.0.1:8000/metrics"
    assert metrics_url("http://vllm:8000/") == "http://vllm:8000/metrics"
    assert metrics_url("https://tgi.internal/custom/metrics") == "https://tgi.internal/custom/metrics"


def _scrapers(sampler):
    return [(c.url, c.guessed) for c in sampler.collectors if isinstance(c, ServerScraper)]


def test_build_sampler_from_settings():
    s = Settings.load(environ={}, metrics_urls="127.0.0.1:8000, http://127.0.0.1:8080/metrics", gpu=False)
    sampler = build_sampler(s, None)
    assert _scrapers(sampler) == [("http://127.0.0.1:8000/metrics", False), ("http://127.0.0.1:8080/metrics", False)]
    assert [c.name for c in sampler.collectors][0] == "host"
    assert not any(isinstance(c, GpuCollector) for c in sampler.collectors)
    # No URLs: the local upstream's own /metrics is tried; a remote upstream's is not.
    local = build_sampler(Settings.load(environ={}, upstream="http://127.0.0.1:8000/v1"), None)
    assert _scrapers(local) == [("http://127.0.0.1:8000/metrics", True)]
    assert any(isinstance(c, GpuCollector) for c in local.collectors)
    assert _scrapers(build_sampler(Settings.load(environ={}, upstream="https://api.openai.com"), None)) == []
    assert build_sampler(Settings.load(environ={}, sample_interval_s="250ms"), None).interval_ns == 250_000_000

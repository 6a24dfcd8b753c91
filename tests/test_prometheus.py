"""GET /metrics on the agent API, and a real Prometheus server scraping it."""

import json
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from decimal import Decimal

import pytest
from prometheus_client.parser import text_string_to_metric_families

import infermeter
from infermeter.exporters.metrics import TOKEN_BUCKETS
from tests.otlp_helpers import free_port


@infermeter.track(model="gpt-4o", provider="openai", tenant="acme")
def chat():
    return {"usage": {"prompt_tokens": 12, "completion_tokens": 7}}


@infermeter.track(model="llama-3-8b", provider="vllm", tenant="globex")
def stream():
    yield "a"
    yield "b"


def scrape(agent, accept=None):
    req = urllib.request.Request(agent.api_url + "/metrics", headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.headers["Content-Type"], r.read().decode()


def samples(text):
    return [(s.name, s.labels, s.value) for fam in text_string_to_metric_families(text) for s in fam.samples]


def test_metrics_names_follow_the_prometheus_conversion(agent):
    for _ in range(3):
        chat()
    list(stream())
    assert infermeter.force_flush(10)
    ctype, text = scrape(agent)
    assert ctype.startswith("text/plain; version=0.0.4")
    got = samples(text)
    names = {n for n, _, _ in got}
    assert {"gen_ai_client_token_usage_bucket", "gen_ai_client_token_usage_sum", "gen_ai_client_operation_duration_seconds_bucket",
            "gen_ai_server_request_duration_seconds_count", "gen_ai_server_time_to_first_token_seconds_count",
            "infermeter_cost_USD_total", "infermeter_requests_total", "target_info"} <= names
    tokens = {(lb["gen_ai_request_model"], lb["gen_ai_token_type"]): v for n, lb, v in got if n == "gen_ai_client_token_usage_sum"}
    assert tokens[("gpt-4o", "input")] == 36 and tokens[("gpt-4o", "output")] == 21
    assert tokens[("llama-3-8b", "output")] == 2  # estimated from the stream's chunks
    buckets = [lb["le"] for n, lb, _ in got if n == "gen_ai_client_token_usage_bucket"
               and lb["gen_ai_request_model"] == "gpt-4o" and lb["gen_ai_token_type"] == "input"]
    assert [float(b) for b in buckets[:-1]] == list(TOKEN_BUCKETS) and buckets[-1] == "+Inf"
    cost = {lb["infermeter_cost_source"]: v for n, lb, v in got if n == "infermeter_cost_USD_total" and lb["infermeter_tenant"] == "acme"}
    row_cost = sum(r["cost_usd"] for r in agent.store.query("requests.recent", since_ns=0, limit=100) if r["cost_usd"] is not None)
    assert cost["catalog"] == pytest.approx(float(row_cost)) and row_cost > 0
    reqs = {(lb["gen_ai_request_model"], lb["infermeter_cost_source"]): v for n, lb, v in got if n == "infermeter_requests_total"}
    assert reqs == {("gpt-4o", "catalog"): 3, ("llama-3-8b", "gpu_time"): 1}
    target = next(lb for n, lb, _ in got if n == "target_info")
    assert target["service_name"] == "infermeter"


def test_openmetrics_and_concurrent_scrapes(agent):
    chat()
    assert infermeter.force_flush(10)
    ctype, text = scrape(agent, accept="application/openmetrics-text; version=1.0.0")
    assert ctype.startswith("application/openmetrics-text") and text.rstrip().endswith("# EOF")
    results = []

    def hit():
        results.append(scrape(agent)[1])

    threads = [threading.Thread(target=hit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for text in results:  # every scrape whole: each family once
        fams = [f.name for f in text_string_to_metric_families(text)]
        assert len(fams) == len(set(fams)) and "gen_ai_client_token_usage" in fams


# -- a real Prometheus server ----------------------------------------------------------------------


class Prometheus:
    """The Debian `prometheus` binary on an ephemeral 127.0.0.1 port, scraping ``target`` every second."""

    def __init__(self, tmp_path, target: str) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.fail("the prometheus binary is missing: apt-get install prometheus (.ci/run does)")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = tmp_path / "prometheus.yml"
        cfg.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            f"scrape_configs:\n  - job_name: infermeter\n    static_configs:\n      - targets: ['{target}']\n"
        )
        self.log = open(tmp_path / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()

    def query(self, promql: str) -> list:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                body = json.loads(r.read())
        except OSError:
            return []
        assert body["status"] == "success", body
        return body["data"]["result"]

    def wait_for(self, promql: str, timeout_s: float = 60.0) -> list:
        """Poll an external server's query API until the series exists (scrapes are on its own schedule)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"prometheus exited with {self.proc.returncode}")
            result = self.query(promql)
            if result:
                return result
            time.sleep(0.25)
        pytest.fail(f"no {promql} in Prometheus after {timeout_s}s")


@pytest.mark.prometheus
def test_a_real_prometheus_scrapes_tokens_latency_and_cost(agent, tmp_path):
    for _ in range(4):
        chat()
    list(stream())
    assert infermeter.force_flush(10)
    prom = Prometheus(tmp_path, target=agent.api_url.removeprefix("http://"))
    try:
        up = prom.wait_for('up{job="infermeter"} == 1')
        assert up[0]["metric"]["instance"] == agent.api_url.removeprefix("http://")
        tokens = prom.wait_for('gen_ai_client_token_usage_sum{gen_ai_request_model="gpt-4o",gen_ai_token_type="input"}')
        assert float(tokens[0]["value"][1]) == 48
        latency = prom.wait_for('histogram_quantile(0.5, sum by (le) (gen_ai_client_operation_duration_seconds_bucket{gen_ai_request_model="gpt-4o"}))')
        assert 0 < float(latency[0]["value"][1]) <= 0.01  # the calls take microseconds: the first bucket
        count = prom.wait_for('gen_ai_client_operation_duration_seconds_count{gen_ai_request_model="gpt-4o"}')
        assert float(count[0]["value"][1]) == 4
        cost = prom.wait_for('sum by (infermeter_tenant) (infermeter_cost_USD_total{infermeter_cost_source="catalog"})')
        stored = sum((r["cost_usd"] for r in agent.store.query("requests.recent", since_ns=0, limit=100) if r["cost_usd"] is not None), Decimal(0))
        assert cost[0]["metric"]["infermeter_tenant"] == "acme"
        assert float(cost[0]["value"][1]) == pytest.approx(float(stored)) and stored > 0
        unpriced = prom.wait_for('infermeter_requests_total{gen_ai_request_model="llama-3-8b"}')
        assert unpriced[0]["metric"]["infermeter_cost_source"] == "gpu_time"
    finally:
        prom.stop()

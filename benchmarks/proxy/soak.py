"""RSS of `infermeter proxy` under sustained load: after N requests, and its trend over a bounded soak.

Starts the shared kit's mock model server and `infermeter proxy` in front of it, then drives the
kit's load generator in 10 s slices (non-streaming and streaming chat, alternately, c=32) until both
``--requests`` have been served and ``--soak-s`` seconds have passed (hard stop at twice that).
After each slice it prints the proxy's RSS; at the end one JSON line: RSS after warm-up, after N
requests, the maximum, and the slope over the second half of the run (MB per minute; ~0 = flat).

    /tmp/benchvenv/bin/python benchmarks/proxy/soak.py [--requests 100000] [--soak-s 300]

Run it with the kit's Python (it has the mock's dependencies); the proxy runs from this repo's .venv.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def rss_parts_mb(pid: int) -> dict[str, float]:
    """Resident memory by kind, from /proc/PID/smaps: the DuckDB library, other files, heap, anonymous."""
    parts = {"duckdb_so": 0, "other_files": 0, "heap": 0, "anon": 0}
    kind = "anon"
    with open(f"/proc/{pid}/smaps") as fh:
        for line in fh:
            f = line.split()
            if f and "-" in f[0] and not f[0].endswith(":"):  # a mapping's header line
                name = f[5] if len(f) > 5 else ""
                kind = ("duckdb_so" if "duckdb" in name else "heap" if name == "[heap]"
                        else "other_files" if name.startswith("/") else "anon")
            elif f and f[0] == "Rss:":
                parts[kind] += int(f[1])
    return {k: round(v / 1024, 1) for k, v in parts.items()}


def wait_port(port: int, proc: subprocess.Popen, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)  # a child process starting up: nothing to flush, so poll
    raise SystemExit(f"nothing listening on {port} after {timeout_s}s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--soak-s", type=float, default=300.0)
    ap.add_argument("--conc", type=int, default=32)
    ap.add_argument("--slice-s", type=float, default=10.0)
    ap.add_argument("--kit", default=os.environ.get("KIT", os.path.join(ROOT, "..", "shared", "bench")))
    ap.add_argument("--smaps", action="store_true", help="also print RSS by kind (DuckDB library, files, heap, anon)")
    ap.add_argument("--infermeter", default=os.path.join(ROOT, ".venv", "bin", "infermeter"))
    ap.add_argument("--memwatch", metavar="FILE", help="run the proxy under memwatch.py, logging where its memory is to FILE "
                    "(JSON lines; the proxy runs with the Python beside --infermeter)")
    ap.add_argument("--memwatch-purge", action="store_true", help="memwatch also purges DuckDB's freed pages at each "
                    "line and logs RSS after it (this lowers the RSS the soak reads)")
    a = ap.parse_args()
    kit = a.kit if os.path.isdir(a.kit) else "/work/shared/bench"
    mock_port, proxy_port = free_port(), free_port()
    tmp = tempfile.mkdtemp(prefix="infermeter-soak-")
    mock = subprocess.Popen([sys.executable, os.path.join(kit, "mock_upstream.py"), "--port", str(mock_port),
                             "--token-ms", "1", "--tokens", "16"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INFERMETER_", "OTEL_"))}
    cmd = [a.infermeter]
    if a.memwatch:
        cmd = [os.path.join(os.path.dirname(a.infermeter), "python"), os.path.join(HERE, "memwatch.py")]
        env |= {"MEMWATCH_OUT": os.path.abspath(a.memwatch), "MEMWATCH_PURGE": "1" if a.memwatch_purge else "0"}
    proxy = subprocess.Popen([*cmd, "proxy", "--upstream", f"http://127.0.0.1:{mock_port}",
                              "--listen", f"127.0.0.1:{proxy_port}", "--db", os.path.join(tmp, "soak.duckdb"), "--api", "off"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    samples: list[tuple[float, int, float]] = []  # (elapsed s, requests so far, rss MB)
    try:
        wait_port(mock_port, mock)
        wait_port(proxy_port, proxy)
        start = time.monotonic()
        total, i = 0, 0
        print(f"# proxy pid {proxy.pid}, RSS at start {rss_mb(proxy.pid):.1f} MB"
              + (f"  {rss_parts_mb(proxy.pid)}" if a.smaps else ""), flush=True)
        while (total < a.requests or time.monotonic() - start < a.soak_s) and time.monotonic() - start < 2 * a.soak_s:
            cmd = [sys.executable, os.path.join(kit, "load.py"), f"http://127.0.0.1:{proxy_port}", "-c", str(a.conc),
                   "-d", str(a.slice_s)] + (["--stream"] if i % 2 else [])
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=a.slice_s + 60)
            res = json.loads(out.stdout.strip().splitlines()[-1])
            total += res["requests"]
            i += 1
            samples.append((time.monotonic() - start, total, rss_mb(proxy.pid)))
            print(f"{samples[-1][0]:7.1f}s {total:8d} requests  RSS {samples[-1][2]:7.1f} MB  "
                  f"({'stream' if res.get('stream') else 'json'} {res['rps']:.0f}/s, errors {res['errors']})"
                  + (f"  {rss_parts_mb(proxy.pid)}" if a.smaps else ""), flush=True)
    finally:
        for p in (proxy, mock):
            p.send_signal(signal.SIGTERM)
        for p in (proxy, mock):
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
    after_n = next((rss for _, n, rss in samples if n >= a.requests), None)
    half = [s for s in samples if s[0] >= samples[-1][0] / 2] if samples else []
    slope = None
    if len(half) >= 3:
        xs, ys = [s[0] / 60 for s in half], [s[2] for s in half]
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    print(json.dumps({"requests": samples[-1][1] if samples else 0, "seconds": round(samples[-1][0], 1) if samples else 0,
                      "rss_mb_first_slice": samples[0][2] if samples else None, "rss_mb_after_n": after_n, "n": a.requests,
                      "rss_mb_max": max(s[2] for s in samples) if samples else None,
                      "rss_slope_mb_per_min_second_half": None if slope is None else round(slope, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

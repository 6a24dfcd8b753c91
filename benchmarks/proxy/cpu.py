"""CPU per proxied request: pyfloor and `infermeter proxy` (and, optionally, another checkout) in one run.

The kit's way (process CPU from /proc over a cell of load, divided by the requests served), with
only the targets this project compares, several rounds alternated target by target, and medians:

    /tmp/benchvenv/bin/python benchmarks/proxy/cpu.py [--rounds 5] [--dur 3] [--tests json,sse]
    /tmp/benchvenv/bin/python benchmarks/proxy/cpu.py --base /tmp/old/src     # + a "base" sidecar, A/B
    /tmp/benchvenv/bin/python benchmarks/proxy/cpu.py --threads --spy sidecar:json  # per-thread CPU; py-spy

The mock and the load generator share core 1, the target under load has core 0 (the kit's c=32
layout). ``json`` is non-streaming chat at c=32 (wrk), ``sse`` 32 concurrent streams of 16 tokens
10 ms apart (CPU per stream). Each line also prints the whole box's busy CPU (of 200%) as a noise
gauge. ``--base SRC`` runs a second sidecar with ``PYTHONPATH=SRC`` (a copy of ``src/`` from another
commit). ``--spy TARGET:TEST`` records py-spy (raw, 200 Hz) during round 1 into ``--spy-out``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
KIT = next((k for k in (os.path.join(ROOT, "..", "shared", "bench"), "/work/shared/bench") if os.path.isdir(k)), "")
PY = os.environ.get("BENCH_PYTHON", "/tmp/benchvenv/bin/python")
CLK = os.sysconf("SC_CLK_TCK")
SIDECAR = os.path.join(ROOT, ".venv", "bin", "infermeter") + " proxy --upstream {up} --listen 127.0.0.1:{port} --db {db} --api off"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def family(pid: int) -> list[int]:
    out = [pid]
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{t}/children") as fh:
                for c in fh.read().split():
                    out += family(int(c))
    except OSError:
        pass
    return out


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds per thread of ``pid`` and its children."""
    out = {}
    for p in family(pid):
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/stat") as fh:
                    f = fh.read().rsplit(")", 1)[1].split()
                out[int(tid)] = (int(f[11]) + int(f[12])) / CLK
        except OSError:
            pass
    return out


def pin(pid: int, cpus: set[int]) -> None:
    for p in family(pid):
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                os.sched_setaffinity(int(tid), cpus)
        except OSError:
            pass


def busy_s() -> float:
    with open("/proc/stat") as fh:
        f = [int(x) for x in fh.readline().split()[1:9]]
    return (sum(f) - f[3] - f[4]) / CLK


def wait_ready(url: str, timeout_s: float = 60) -> None:
    body = json.dumps({"model": "mock-model", "messages": [{"role": "user", "content": "hi"}]}).encode()
    end = time.time() + timeout_s
    while time.time() < end:
        try:
            req = urllib.request.Request(url + "/v1/chat/completions", data=body, headers={"Content-Type": "application/json"})
            urllib.request.urlopen(req, timeout=2).read()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"not ready: {url}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dur", type=int, default=3, help="seconds of load per cell")
    ap.add_argument("--tests", default="json,sse")
    ap.add_argument("--base", help="src/ of another checkout: adds a 'base' sidecar run from it")
    ap.add_argument("--threads", action="store_true", help="print the sidecars' busiest threads per cell")
    ap.add_argument("--spy", default="", help="TARGET:TEST to record with py-spy in round 1")
    ap.add_argument("--spy-out", default="/tmp/infermeter-proxy-cpu.spy.txt")
    a = ap.parse_args()
    tests = a.tests.split(",")
    work = tempfile.mkdtemp(prefix="infermeter-cpu-")
    procs: list[subprocess.Popen] = []

    def start(cmd: list[str], name: str) -> subprocess.Popen:
        p = subprocess.Popen(cmd, stdout=open(os.path.join(work, name + ".log"), "w"), stderr=subprocess.STDOUT,
                             start_new_session=True)
        procs.append(p)
        return p

    try:
        up = free_port()
        mock = start([PY, os.path.join(KIT, "mock_upstream.py"), "--port", str(up), "--service-ms", "0",
                      "--token-ms", "10", "--tokens", "16"], "mock")
        upurl = f"http://127.0.0.1:{up}"
        wait_ready(upurl)
        targets: dict[str, tuple[subprocess.Popen, str]] = {}
        names = ["pyfloor"] + (["base"] if a.base else []) + ["sidecar"]
        for name in names:
            port = free_port()
            if name == "pyfloor":
                cmd = [PY, os.path.join(KIT, "floor_proxy.py"), "--port", str(port), "--upstream", upurl]
            else:
                env = f"env PYTHONPATH={a.base} " if name == "base" else ""
                cmd = ["/bin/sh", "-c", "exec " + env + SIDECAR.format(up=upurl, port=port, db=os.path.join(work, name + ".duckdb"))]
            targets[name] = (start(cmd, name), f"http://127.0.0.1:{port}")
        for _, url in targets.values():
            wait_ready(url)
        res: dict[str, dict[str, list[float]]] = {t: {x: [] for x in tests} for t in targets}
        for r in range(a.rounds):
            for test in tests:
                for name, (p, url) in targets.items():
                    pin(mock.pid, {1})
                    for q, _ in targets.values():
                        pin(q.pid, {0})
                    time.sleep(0.3)
                    t0, b0, wall0 = thread_cpu(p.pid), busy_s(), time.time()
                    load = subprocess.Popen([PY, os.path.join(KIT, "load.py"), url, "-c", "32", "-d", str(a.dur)]
                                            + (["--stream"] if test == "sse" else []), stdout=subprocess.PIPE, text=True)
                    pin(load.pid, {1})
                    spy = None
                    if r == min(1, a.rounds - 1) and a.spy == f"{name}:{test}":
                        time.sleep(0.5)
                        spy = subprocess.Popen([os.path.join(ROOT, ".venv", "bin", "py-spy"), "record", "--nonblocking", "-r", "200",
                                                "-o", a.spy_out, "-f", "raw", "-p", str(p.pid), "-d", str(max(1, a.dur - 1))],
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    out, _ = load.communicate()
                    t1, b1, wall = thread_cpu(p.pid), busy_s(), time.time() - wall0
                    if spy is not None:
                        spy.wait()
                    j = json.loads(out.strip().splitlines()[-1])
                    n = j["requests"]
                    cpu = sum(t1.values()) - sum(t0.values())
                    ms = cpu * 1000 / n if n else float("nan")
                    res[name][test].append(ms)
                    print(f"round {r} {name:8} {test:4} requests {n:6d} rps {j['rps']:7.1f} cpu {cpu:6.2f}s "
                          f"ms/req {ms:.4f} errors {j['errors']} box busy {100 * (b1 - b0) / wall:3.0f}%", flush=True)
                    if a.threads and name != "pyfloor":
                        top = sorted(t1, key=lambda k: t0.get(k, 0) - t1[k])[:4]
                        print("    threads ms/req: " + ", ".join(f"{k}={(t1[k] - t0.get(k, 0)) * 1000 / n:.4f}" for k in top))
        print("\nmedian CPU ms per request (json) / per stream (sse), and the median of each round's ratio to pyfloor:")
        for test in tests:
            line = f"  {test:4}" + "".join(f"  {t} {statistics.median(res[t][test]):.4f}" for t in targets)
            for t in [t for t in targets if t != "pyfloor"]:
                line += f"   {t}/pyfloor {statistics.median(s / f for s, f in zip(res[t][test], res['pyfloor'][test])):.3f}"
            print(line)
        print(json.dumps({"rounds": a.rounds, "dur_s": a.dur, "ms": res}))
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


if __name__ == "__main__":
    main()

"""The host collector against real processes: a model-server stand-in that spawns, burns CPU and listens on demand."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys

import psutil
import pytest

from infermeter.collectors import HostCollector
from infermeter.collectors.host import find_listener, upstream_port
from tests.test_collectors_scrapers import Ticker

# A stand-in model server driven line by line over stdin, so the test waits for answers, never sleeps.
SERVER = r"""
import os, socket, subprocess, sys, time
kids, sock = [], None
def burn(s):
    t = time.process_time()
    while time.process_time() - t < s:
        pass
print("ready", flush=True)
for line in sys.stdin:
    cmd, *arg = line.split()
    if cmd == "spawn":    # a child that burns arg[0] s of CPU, then waits
        kids.append(subprocess.Popen([sys.executable, "-c", f"import sys,time\nt=time.process_time()\nwhile time.process_time()-t<{arg[0]}: pass\nprint('x', flush=True)\nsys.stdin.read()"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        kids[-1].stdout.readline()
        print(kids[-1].pid, flush=True)
    elif cmd == "reap":
        k = kids.pop(); k.stdin.close(); k.wait(); print("reaped", flush=True)
    elif cmd == "burn":
        burn(float(arg[0])); print("burnt", flush=True)
    elif cmd == "listen":  # listen on an ephemeral port; with "fork", a pre-forked worker shares the socket
        sock = socket.socket(); sock.bind(("127.0.0.1", 0)); sock.listen()
        worker = 0
        if arg and arg[0] == "fork":
            worker = os.fork()
            if worker == 0:
                signal_wait = __import__("signal").pause
                signal_wait(); os._exit(0)
        print(sock.getsockname()[1], worker, flush=True)
for k in kids:
    k.stdin.close(); k.wait()
"""


class Server:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.pid = self.proc.pid
        self.extra: list[int] = []
        assert self.proc.stdout.readline().strip() == "ready"  # started up: its memory stays put now

    def ask(self, line: str) -> str:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def stop(self) -> None:
        for pid in self.extra:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.stop()


def test_machine_cpu_and_memory():
    c = HostCollector()
    (first,) = c.collect(1)
    assert first.cpu_pct is None  # nothing to compare with yet: unknown, not 0
    assert first.cpu_count == psutil.cpu_count()
    assert first.mem_total_bytes == psutil.virtual_memory().total
    assert 0 < first.mem_used_bytes < first.mem_total_bytes
    assert (first.target_pid, first.target_procs, first.target_cpu_pct, first.target_rss_bytes) == (None,) * 4
    t = psutil.cpu_times()
    while sum(psutil.cpu_times()) - sum(t) < 0.05:  # let the machine's CPU counters move
        pass
    (second,) = c.collect(2)
    assert 0.0 < second.cpu_pct <= 100.0  # this test itself kept a core busy


def test_target_tree_cpu_and_rss(server):
    clock = Ticker()
    c = HostCollector(target_pid=server.pid, tree_refresh_s=0, monotonic_ns=clock)
    (r1,) = c.collect(1)
    assert (r1.target_pid, r1.target_procs, r1.target_cpu_pct) == (server.pid, 1, None)  # first read primes
    assert r1.target_rss_bytes == psutil.Process(server.pid).memory_info().rss
    assert server.ask("burn 0.3") == "burnt"
    clock.advance(1.0)
    (r2,) = c.collect(2)
    assert 28 <= r2.target_cpu_pct <= 60  # 0.3 s of CPU in 1 s (plus the stand-in's own chatter)


def test_processes_that_come_and_go(server):
    clock = Ticker()
    c = HostCollector(target_pid=server.pid, tree_refresh_s=0, monotonic_ns=clock)
    c.collect(1)
    server.ask("burn 0.01")  # settle the stand-in's own start-up CPU before measuring
    clock.advance(1.0)
    (quiet,) = c.collect(2)
    assert quiet.target_procs == 1 and quiet.target_cpu_pct < 20
    kid = int(server.ask("spawn 0.3"))  # born between two ticks, burns 0.3 s
    clock.advance(1.0)
    (r,) = c.collect(3)
    assert r.target_procs == 2
    assert r.target_cpu_pct >= 29  # all of the newcomer's CPU time falls in this interval
    assert r.target_rss_bytes > quiet.target_rss_bytes
    assert psutil.pid_exists(kid)
    assert server.ask("reap") == "reaped"
    clock.advance(1.0)
    (after,) = c.collect(4)
    assert after.target_procs == 1 and after.target_cpu_pct is not None


def test_configured_target_that_dies(server, caplog):
    caplog.set_level(logging.INFO, logger="infermeter")
    c = HostCollector(target_pid=server.pid, tree_refresh_s=0)
    c.collect(1)
    server.stop()
    for ts in (2, 3):
        (r,) = c.collect(ts)
        assert (r.target_pid, r.target_procs, r.target_cpu_pct, r.target_rss_bytes) == (server.pid, 0, None, None)
        assert r.mem_total_bytes > 0  # the machine is still read
    assert len([m for m in caplog.messages if f"target pid {server.pid} does not exist" in m]) == 1


def test_target_found_by_the_port_it_listens_on_and_found_again_after_a_restart(server, caplog):
    caplog.set_level(logging.INFO, logger="infermeter")
    port, _ = map(int, server.ask("listen").split())
    assert find_listener(port) == server.pid
    clock = Ticker()
    c = HostCollector(upstream_port=port, tree_refresh_s=0, monotonic_ns=clock)
    (r,) = c.collect(1)
    assert (r.target_pid, r.target_procs) == (server.pid, 1)
    server.stop()
    (gone,) = c.collect(2)
    assert (gone.target_pid, gone.target_procs) == (server.pid, 0)
    (none,) = c.collect(3)
    assert none.target_pid is None  # nothing listens: looked again, not found, back-off
    assert any(f"no process listens on port {port}" in m for m in caplog.messages)


def test_prefork_listener_is_the_parent_not_a_worker(server):
    port, worker = map(int, server.ask("listen fork").split())
    server.extra.append(worker)
    assert psutil.Process(worker).ppid() == server.pid
    assert find_listener(port) == server.pid


def test_discovery_backs_off_while_nothing_listens(monkeypatch):
    calls = []
    monkeypatch.setattr("infermeter.collectors.host.find_listener", lambda port: calls.append(port))
    clock = Ticker()
    c = HostCollector(upstream_port=1, monotonic_ns=clock)
    for _ in range(30):
        c.collect(1)
        clock.advance(1.0)
    assert len(calls) == 3  # at 0 s, 5 s and 15 s: not a socket scan every tick


def test_upstream_port_only_for_local_upstreams():
    assert upstream_port("http://127.0.0.1:8000") == 8000
    assert upstream_port("localhost:9000/v1") == 9000
    assert upstream_port("http://[::1]:8080") == 8080
    assert upstream_port("http://localhost") == 80
    assert upstream_port("https://api.openai.com") is None
    assert upstream_port("http://10.0.0.7:8000") is None
    assert upstream_port(None) is None

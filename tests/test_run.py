"""`infermeter run`: child supervision, readiness, signals, exit status, against a real child HTTP server."""

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import psutil
import pytest

import infermeter
from infermeter.agent.cli import main
from infermeter.agent.commands.run import AgentFront, exit_status, supervise, upstream_from_command
from infermeter.config import Settings
from infermeter.errors import InfermeterError

# A small real model-server stand-in: HTTP on 127.0.0.1:PORT. Flags: --ignore-term (survives SIGTERM),
# --grandchild (forks a long-lived worker into its process group). GET / answers its pid (and the
# worker's); GET /exit?code=N answers, then exits N. Every signal it gets is appended to --log.
CHILD = r'''
import http.server, os, signal, subprocess, sys, json, argparse
ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--log", required=True)
ap.add_argument("--ignore-term", action="store_true")
ap.add_argument("--grandchild", action="store_true")
a = ap.parse_args()
def note(text):
    with open(a.log, "a") as fh:
        fh.write(text + "\n")
def on_signal(signum, frame):
    note(signal.Signals(signum).name)
    if not (a.ignore_term and signum == signal.SIGTERM):
        os._exit(0)
for s in (signal.SIGTERM, signal.SIGINT):
    signal.signal(s, on_signal)
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"]) if a.grandchild else None
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args): pass
    def do_GET(self):
        body = json.dumps({"pid": os.getpid(), "worker": worker.pid if worker else None}).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body); self.wfile.flush()
        if self.path.startswith("/exit"):
            os._exit(int(self.path.split("code=")[1]))
    def do_POST(self):  # an OpenAI-compatible chat completion with usage
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        body = json.dumps({"id": "c1", "object": "chat.completion", "created": 0, "model": req["model"],
                           "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": "hi"}}],
                           "usage": {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}}).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
http.server.ThreadingHTTPServer(("127.0.0.1", a.port), H).serve_forever()
'''


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def gone(pid):
    """True when pid no longer runs (a zombie waiting for init to reap it counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def child_cmd(tmp_path):
    script = tmp_path / "child_server.py"
    script.write_text(CHILD)
    log = tmp_path / "child.log"

    def make(*flags, port=None):
        port = port or free_port()
        return [sys.executable, str(script), "--port", str(port), "--log", str(log), *flags], port

    make.log = log
    return make


class RunProcess:
    """`infermeter run ...` as a real process; its stderr read line by line on a thread."""

    def __init__(self, *args):
        # faulthandler: a process that hangs is sent SIGABRT by finish() and prints every thread's stack
        self.proc = subprocess.Popen([sys.executable, "-X", "faulthandler", "-m", "infermeter.agent.cli", "run", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stderr:
            self.lines.put(line)
        self.lines.put(None)

    def expect(self, pattern, timeout=60):
        rx = re.compile(pattern)
        while True:
            line = self.lines.get(timeout=timeout)
            if line is None:
                raise AssertionError(f"exited before {pattern!r}; stderr: {''.join(self.seen)}")
            self.seen.append(line)
            m = rx.search(line)
            if m:
                return m

    def finish(self, timeout=60):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGABRT)  # faulthandler dumps the threads' stacks to stderr
            self.proc.wait(10)
            while (line := self.lines.get(timeout=10)) is not None:
                self.seen.append(line)
            raise AssertionError(f"infermeter run still running {timeout}s on; stderr and stacks:\n{''.join(self.seen)}") from None
        while (line := self.lines.get(timeout=timeout)) is not None:
            self.seen.append(line)
        return rc, "".join(self.seen)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def run_process():
    started = []

    def start(*args):
        p = RunProcess(*args)
        started.append(p)
        return p

    yield start
    for p in started:
        p.kill()


def started_child(p):
    return int(p.expect(r"started model server pid (\d+)").group(1))


@pytest.mark.parametrize("argv, url", [
    (["vllm", "serve", "m", "--port", "8001"], "http://127.0.0.1:8001"),
    (["python", "-m", "llama_cpp.server", "--host=0.0.0.0", "--port=9000"], "http://127.0.0.1:9000"),
    (["text-generation-launcher", "--hostname", "x", "--host", "10.1.2.3", "--port", "80"], "http://10.1.2.3:80"),
    (["llama-server", "--host", "::1", "--port", "8080"], "http://[::1]:8080"),
    (["ollama", "serve"], None),
    (["srv", "--port"], None),
    (["srv", "--port", "http"], None),
])
def test_upstream_from_command(argv, url):
    assert upstream_from_command(argv) == url


def test_exit_status_is_what_a_shell_reports():
    assert (exit_status(0), exit_status(3), exit_status(-9), exit_status(-15)) == (0, 3, 137, 143)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_child_group_and_the_agent_cleanly(sig, child_cmd, run_process, db_path):
    cmd, port = child_cmd("--grandchild")
    p = run_process("--no-proxy", "--db", db_path, "--api", "127.0.0.1:0", "--", *cmd)
    child_pid = started_child(p)
    api = p.expect(r"agent API (http://127\.0\.0\.1:\d+)").group(1)
    served = get(f"http://127.0.0.1:{port}/")
    assert served["pid"] == child_pid
    assert get(f"{api}/health")["pid"] == p.proc.pid
    assert os.path.exists(db_path + ".agent")

    p.proc.send_signal(sig)
    rc, err = p.finish()
    assert rc == 0, err
    assert child_cmd.log.read_text().split() == [sig.name]  # forwarded once, as received
    assert gone(child_pid) and gone(served["worker"])  # the worker it forked went with it
    assert not os.path.exists(db_path + ".agent")  # the agent shut down and released the store
    infermeter.configure(db=db_path, api="off")  # ... so the file opens again


def test_a_child_that_ignores_sigterm_is_killed_after_the_stop_timeout(child_cmd, run_process, db_path):
    cmd, port = child_cmd("--ignore-term")
    p = run_process("--no-proxy", "--db", db_path, "--api", "off", "--stop-timeout", "0.5s", "--", *cmd)
    child_pid = started_child(p)
    p.expect("model server answers")
    p.proc.terminate()
    rc, err = p.finish()
    assert rc == 128 + signal.SIGKILL, err
    assert "killing its process group" in err
    assert child_cmd.log.read_text().split() == ["SIGTERM"]
    assert gone(child_pid)


def test_a_second_signal_kills_a_slow_child_at_once(child_cmd, run_process, db_path):
    cmd, port = child_cmd("--ignore-term")
    p = run_process("--no-proxy", "--db", db_path, "--api", "off", "--stop-timeout", "10m", "--", *cmd)
    child_pid = started_child(p)
    p.expect("model server answers")
    p.proc.terminate()
    p.expect("stopping model server")
    p.proc.send_signal(signal.SIGINT)  # the impatient second Ctrl-C
    rc, err = p.finish(timeout=60)  # long before the 10-minute stop timeout
    assert rc == 128 + signal.SIGKILL, err
    assert gone(child_pid)


def test_when_the_child_dies_infermeter_flushes_and_exits_with_its_status(child_cmd, run_process, db_path):
    cmd, port = child_cmd("--grandchild")
    p = run_process("--no-proxy", "--db", db_path, "--api", "off", "--", *cmd)
    p.expect("model server answers")
    worker = get(f"http://127.0.0.1:{port}/exit?code=7")["worker"]
    rc, err = p.finish()
    assert rc == 7, err
    assert "exited with status 7; store flushed" in err
    assert gone(worker)  # what the server left behind in its group does not outlive it
    assert not os.path.exists(db_path + ".agent")


def test_a_child_that_exits_before_listening_gives_its_status(run_process, db_path):
    p = run_process("--no-proxy", "--db", db_path, "--upstream", f"http://127.0.0.1:{free_port()}", "--",
                    sys.executable, "-c", "import sys; sys.exit(4)")
    rc, err = p.finish()
    assert rc == 4, err
    assert not os.path.exists(db_path)  # the agent never started


def test_a_child_that_never_listens_is_stopped_after_the_ready_timeout(run_process, db_path, tmp_path):
    p = run_process("--no-proxy", "--db", db_path, "--upstream", f"http://127.0.0.1:{free_port()}",
                    "--ready-timeout", "1s", "--", sys.executable, "-c", "import time; time.sleep(600)")
    child_pid = started_child(p)
    rc, err = p.finish()
    assert rc == 1
    assert "did not open 127.0.0.1:" in err and "within 1s" in err
    assert gone(child_pid)


def test_a_signal_while_waiting_for_the_port_stops_the_child(run_process, db_path):
    p = run_process("--no-proxy", "--db", db_path, "--upstream", f"http://127.0.0.1:{free_port()}", "--",
                    sys.executable, "-c", "import time; time.sleep(600)")
    child_pid = started_child(p)
    p.proc.send_signal(signal.SIGINT)
    rc, err = p.finish()
    assert rc == 0, err
    assert gone(child_pid)


def test_when_infermeter_is_killed_the_child_gets_sigterm(child_cmd, run_process, db_path):
    cmd, port = child_cmd()
    p = run_process("--no-proxy", "--db", db_path, "--api", "off", "--", *cmd)
    child_pid = started_child(p)
    p.expect("model server answers")
    p.proc.kill()  # no chance to clean up: the kernel's parent-death signal must do it
    try:
        psutil.Process(child_pid).wait(30)
    except psutil.NoSuchProcess:  # it may be gone before we look
        pass
    # SIGTERM, and nothing else. Linux may send it more than once: when the thread that started the
    # child dies, the child passes to another thread of the dying process, which sends it again
    # (seen once in CI: ['SIGTERM', 'SIGTERM']; the stand-in's handler can run twice before _exit).
    got = child_cmd.log.read_text().split()
    assert got and set(got) == {"SIGTERM"}, got


def test_store_held_by_another_agent_stops_the_child_and_says_who_holds_it(child_cmd, run_process, db_path):
    holder = infermeter.configure(db=db_path, api="127.0.0.1:0")
    cmd, port = child_cmd()
    p = run_process("--no-proxy", "--db", db_path, "--api", "off", "--", *cmd)
    child_pid = started_child(p)
    rc, err = p.finish()
    assert rc == 1
    assert f"held by process {os.getpid()}" in err and holder.api_url in err
    assert gone(child_pid)


def test_refuses_a_port_that_already_answers(child_cmd, db_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        cmd, port = child_cmd(port=s.getsockname()[1])
        assert main(["run", "--no-proxy", "--db", db_path, "--", *cmd]) == 1
    err = capsys.readouterr().err
    assert f"something already answers on 127.0.0.1:{port}" in err
    assert not child_cmd.log.exists()  # no child was started


@pytest.mark.parametrize("argv, message", [
    (["run", "--no-proxy"], "no model server command"),
    (["run", "--no-proxy", "--", "srv"], "cannot tell which port"),
    (["run", "--no-proxy", "--stop-timeout", "soon", "--", "srv", "--port", "1"], "bad setting --stop-timeout='soon'"),
    (["run", "--no-proxy", "--listen", "nowhere", "--", "srv", "--port", "1"], "bad setting listen='nowhere'"),
    (["run", "--no-proxy", "--upstream", f"http://127.0.0.1:{free_port()}", "--", "/nonexistent/server"],
     "cannot start '/nonexistent/server'"),
])
def test_bad_invocations_get_a_clear_error(argv, message, capsys):
    assert main(argv) == 1
    assert message in capsys.readouterr().err


def test_the_host_collector_watches_the_child_and_the_agent_stops_after_it(child_cmd, db_path):
    """In-process, the real agent front: its sampler's target is the process serving the port."""
    cmd, port = child_cmd()
    seen = {}

    class Front(AgentFront):
        def __init__(self, settings):
            super().__init__(settings, proxy=False)
            seen["target_pid"] = settings.target_pid  # given, not left to the collector's port discovery
            seen["served_by"] = get(f"http://127.0.0.1:{port}/")["pid"]
            seen["host"] = self.agent.sampler.tick(time.time_ns()).host
            # the model server goes away on its own while infermeter runs
            threading.Thread(target=get, args=(f"http://127.0.0.1:{port}/exit?code=0",), daemon=True).start()

        def stop(self, timeout_s):
            seen["child_alive_at_stop"] = not gone(seen["served_by"])
            super().stop(timeout_s)

    settings = Settings.load(upstream=f"http://127.0.0.1:{port}", api="off", db=db_path)
    assert supervise(cmd, settings, Front, say=lambda msg: None) == 0
    assert seen["target_pid"] == seen["host"].target_pid == seen["served_by"] and seen["host"].target_rss_bytes > 0
    assert seen["child_alive_at_stop"] is False  # the store was flushed after the child was gone
    infermeter.configure(db=db_path, api="off")  # released


def test_requests_through_the_proxy_are_in_the_store_after_sigterm(child_cmd, run_process, db_path):
    from openai import OpenAI

    cmd, port = child_cmd()
    listen = free_port()
    p = run_process("--listen", f"127.0.0.1:{listen}", "--db", db_path, "--api", "off", "--", *cmd)
    p.expect(rf"proxy on http://127\.0\.0\.1:{listen} -> http://127\.0\.0\.1:{port}")
    client = OpenAI(base_url=f"http://127.0.0.1:{listen}/v1", api_key="sk-test", max_retries=0)
    for _ in range(5):
        out = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hello"}])
        assert out.usage.prompt_tokens == 11 and out.choices[0].message.content == "hi"
    p.proc.terminate()
    rc, err = p.finish()
    assert rc == 0, err
    r = subprocess.run([sys.executable, "-m", "infermeter.agent.cli", "report", "--db", db_path, "--json"],
                       capture_output=True, text=True, timeout=60)
    (model,) = json.loads(r.stdout)["models"]
    assert (model["model"], model["requests"], model["input_tokens"], model["output_tokens"]) == ("tiny", 5, 55, 10)


def test_supervise_restores_signal_handlers(child_cmd):
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    cmd, port = child_cmd()
    with pytest.raises(InfermeterError):
        supervise(cmd, Settings.load(upstream=f"http://127.0.0.1:{port}", api="off"),
                  lambda s: (_ for _ in ()).throw(InfermeterError("front failed")), say=lambda m: None)
    assert {s: signal.getsignal(s) for s in before} == before

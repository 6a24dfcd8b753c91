"""infermeter run: start a model server as a child process and put the proxy in front of it.

    infermeter run --listen 0.0.0.0:8100 -- vllm serve Qwen/Qwen2.5-7B-Instruct --port 8000

The child runs in its own process group (so a terminal's Ctrl-C reaches infermeter alone, which
then stops the proxy, the child's whole group and the agent in that order) and is told to die
with infermeter (``PR_SET_PDEATHSIG``) should infermeter itself be killed. infermeter waits until
the child's port answers, starts the agent (``target_pid`` = the child, for the host collector)
and the proxy, and then waits for a signal or for the child to exit. A child that dies makes
infermeter flush the store and exit with the child's status (128 + N for a child killed by signal
N); a stop asked by SIGINT/SIGTERM/SIGHUP exits 0 once everything stopped in time (a second signal
kills the model server's group at once instead of waiting ``--stop-timeout``).
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import logging
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

HELP = "start a model server as a child process with the proxy in front of it; stop both together"

__all__ = ["HELP", "add_arguments", "run", "Child", "Front", "AgentFront", "supervise", "upstream_from_command",
           "wait_ready", "port_answers", "exit_status"]

logger = logging.getLogger(__name__)

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--listen", metavar="HOST:PORT", help="proxy listen address (default: INFERMETER_LISTEN or 0.0.0.0:8100)")
    p.add_argument("--upstream", metavar="URL",
                   help="where the model server answers (default: INFERMETER_UPSTREAM, else the --host/--port of its command)")
    p.add_argument("--db", metavar="FILE", help="store file (default: INFERMETER_DB or ./infermeter.duckdb)")
    p.add_argument("--api", metavar="HOST:PORT", help="agent API address, or 'off' (default: INFERMETER_API or 127.0.0.1:9187)")
    p.add_argument("--no-proxy", action="store_true",
                   help="supervise the server and run the agent (API, OTLP receiver, collectors) without the proxy")
    p.add_argument("--ready-timeout", default="15m", metavar="DURATION",
                   help="how long the model server may take to open its port (default: %(default)s)")
    p.add_argument("--stop-timeout", default="30s", metavar="DURATION",
                   help="how long the model server may take to exit before it is killed (default: %(default)s)")
    from ...cost.cli import add_cost_arguments

    add_cost_arguments(p)
    p.add_argument("server_command", nargs=argparse.REMAINDER, metavar="-- COMMAND",
                   help="the model server's command line, after '--'")


# -- the child -----------------------------------------------------------------------------------------


def _pdeathsig_hook() -> Callable[[], None] | None:
    """A pre-exec hook asking Linux to SIGTERM the child when infermeter dies; resolved here, in the parent,
    so that the child between fork and exec only makes the one call."""
    if sys.platform != "linux":
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # the child only loses this safety net
        return None
    sig = int(signal.SIGTERM)
    return lambda: prctl(_PR_SET_PDEATHSIG, sig)


def exit_status(returncode: int) -> int:
    """Popen's returncode as a shell reports it: 128 + N for a child killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


class Child:
    """The model server: a process group of its own, stopped as a group."""

    def __init__(self, argv: Sequence[str], env: dict[str, str] | None = None) -> None:
        if not argv:
            raise ValueError("no command")
        from ...errors import InfermeterError

        try:
            self.proc = subprocess.Popen(list(argv), env=env, process_group=0, preexec_fn=_pdeathsig_hook())
        except OSError as e:
            raise InfermeterError(f"cannot start {argv[0]!r}: {e.strerror or e}") from e
        self.argv = list(argv)
        self.pid = self.proc.pid
        self.killed = False

    def poll(self) -> int | None:
        return self.proc.poll()

    def wait(self, timeout_s: float | None = None) -> int | None:
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def signal_group(self, sig: int) -> bool:
        try:
            os.killpg(self.pid, sig)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0, hurry: threading.Event | None = None) -> int:
        """Send ``sig`` to the group, wait up to ``timeout_s`` (or until ``hurry`` is set: a second Ctrl-C),
        then SIGKILL what is left. Returns the status."""
        if self.poll() is None:
            self.signal_group(sig)
            if not self._wait_unless(timeout_s, hurry):
                logger.warning("model server pid %d did not exit %.0fs after %s; killing its process group",
                               self.pid, timeout_s, signal.Signals(sig).name)
                self.killed = True
                self.signal_group(signal.SIGKILL)
                self.wait()
        self.reap_group()
        return exit_status(self.proc.returncode)

    def _wait_unless(self, timeout_s: float, hurry: threading.Event | None) -> bool:
        if hurry is None:
            return self.wait(timeout_s) is not None
        deadline = time.monotonic() + timeout_s
        while self.wait(min(0.1, max(0.0, deadline - time.monotonic()))) is None:
            if hurry.is_set() or time.monotonic() >= deadline:
                return False
        return True

    def reap_group(self) -> None:
        """Leftovers of the group (workers the server forked) must not outlive it and hold the GPU."""
        if self.signal_group(0):
            self.signal_group(signal.SIGKILL)


# -- readiness -------------------------------------------------------------------------------------------


def port_answers(host: str, port: int, timeout_s: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def wait_ready(child: Child, host: str, port: int, timeout_s: float, stop: threading.Event) -> str:
    """Wait until ``host:port`` accepts a connection: 'ready', or 'exited' / 'stopped' / 'timeout'."""
    deadline = time.monotonic() + timeout_s
    delay = 0.02
    while True:
        if child.poll() is not None:
            return "exited"
        if stop.is_set():
            return "stopped"
        if port_answers(host, port):
            return "ready"
        if time.monotonic() >= deadline:
            return "timeout"
        stop.wait(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 1.5, 0.5)


_HOST_RE = re.compile(r"^--host(?:=(.*))?$")
_PORT_RE = re.compile(r"^--port(?:=(.*))?$")


def upstream_from_command(argv: Sequence[str]) -> str | None:
    """``http://host:port`` from a server command's ``--host``/``--port`` (vLLM, llama.cpp, TGI, SGLang...)."""
    host, port = None, None
    for i, arg in enumerate(argv):
        for rx in (_HOST_RE, _PORT_RE):
            m = rx.match(arg)
            if not m:
                continue
            value = m.group(1) if m.group(1) is not None else (argv[i + 1] if i + 1 < len(argv) else None)
            if rx is _HOST_RE:
                host = value
            else:
                port = value
    if port is None or not str(port).isdigit():
        return None
    if not host or host in ("0.0.0.0", "::", "[::]", "*"):
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{int(port)}"


# -- what runs in front of the child ------------------------------------------------------------------------


class Front(Protocol):
    """The agent (and the proxy) started once the child answers; ``stop`` flushes and closes them."""

    description: str

    def stop(self, timeout_s: float) -> None: ...


class AgentFront:
    """The agent (store, API, OTLP receiver, sampler) with the proxy in front of the model server as one of its
    components; ``proxy=False`` (``--no-proxy``) runs the agent alone."""

    def __init__(self, settings: Any, *, proxy: bool = True) -> None:
        from ..agent import Agent

        self.agent = Agent(settings)
        where = []
        if proxy:
            from ..proxy import ProxyComponent

            component = ProxyComponent(settings, self.agent.pipeline)
            self.agent.add_component(component)
        try:
            self.agent.start()
        except BaseException:
            self.agent.shutdown()
            raise
        if proxy:
            where.append(f"proxy on {component.url} -> {settings.upstream}")
        where.append(f"agent API {self.agent.api_url or 'off'}")
        self.description = ", ".join(where)

    def stop(self, timeout_s: float) -> None:
        """Stop the proxy (in-flight requests finish), then flush the pipeline and close the store."""
        self.agent.shutdown(timeout_s)


# -- supervision --------------------------------------------------------------------------------------------


class _Signals:
    """Turns SIGINT/SIGTERM/SIGHUP into an event for the main thread; restores the old handlers on exit."""

    def __init__(self, wake: threading.Event) -> None:
        self.wake = wake
        self.hurry = threading.Event()  # a second signal: stop waiting politely
        self.received: list[int] = []
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "_Signals":
        for sig in _STOP_SIGNALS:
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received:
            self.hurry.set()
        self.received.append(signum)
        self.wake.set()

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def supervise(
    argv: Sequence[str],
    settings: Any,
    front_factory: Callable[[Any], Front],
    *,
    ready_timeout_s: float = 900.0,
    stop_timeout_s: float = 30.0,
    say: Callable[[str], None] = lambda msg: print(f"infermeter: {msg}", file=sys.stderr, flush=True),
) -> int:
    """Run ``argv`` as the model server with ``front_factory(settings)`` in front of it; returns the exit status."""
    from ...config import parse_hostport
    from ...errors import InfermeterError

    host, port = parse_hostport(settings.upstream)
    if port_answers(host, port):
        raise InfermeterError(f"something already answers on {host}:{port}; the model server could not listen there "
                              "(stop it, or give the server another --port)")
    wake = threading.Event()
    with _Signals(wake) as signals:
        child = Child(argv)
        threading.Thread(target=lambda: (child.wait(), wake.set()), name="infermeter-child-wait", daemon=True).start()
        say(f"started model server pid {child.pid}: {shlex.join(argv)}; waiting for {host}:{port}")
        front: Front | None = None
        try:
            state = wait_ready(child, host, port, ready_timeout_s, wake)
            if state == "timeout":
                raise InfermeterError(f"the model server did not open {host}:{port} within {ready_timeout_s:g}s "
                                      "(is that its port? pass --upstream, or raise --ready-timeout)")
            if state == "ready":
                front = front_factory(settings.replace(target_pid=child.pid))
                say(f"model server answers on {host}:{port}; {front.description}")
                wake.wait()
        finally:
            requested = bool(signals.received)
            first = signals.received[0] if requested else signal.SIGTERM
            if front is not None and (requested or child.poll() is None):
                front.stop(stop_timeout_s)  # stop taking requests while the server still answers them
                front = None
            if child.poll() is None:
                say(f"stopping model server pid {child.pid} ({signal.Signals(first).name})")
            status = child.stop(first, stop_timeout_s, signals.hurry)
            if front is not None:
                front.stop(stop_timeout_s)
        if requested:
            say(f"stopped (model server status {status})")
            return status if child.killed else 0
        say(f"model server pid {child.pid} exited with status {status}; store flushed")
        return status


def run(args: argparse.Namespace) -> int:
    from ...config import Settings, parse_duration
    from ...errors import ConfigError, InfermeterError

    argv = list(args.server_command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise InfermeterError("no model server command: infermeter run [options] -- COMMAND ...")
    timeouts = {}
    for name in ("ready_timeout", "stop_timeout"):
        raw = getattr(args, name)
        try:
            timeouts[name] = parse_duration(raw)
        except ValueError as e:
            raise ConfigError("--" + name.replace("_", "-"), raw, str(e)) from e
    from ...cost.cli import cost_overrides

    settings = Settings.load(db=args.db, api=args.api, listen=args.listen, upstream=args.upstream, **cost_overrides(args))
    if settings.upstream is None:
        derived = upstream_from_command(argv)
        if derived is None:
            raise InfermeterError("cannot tell which port the model server listens on: give it --port in its command, "
                                  "or pass --upstream http://127.0.0.1:PORT")
        settings = settings.replace(upstream=derived)
    return supervise(argv, settings, functools.partial(AgentFront, proxy=not args.no_proxy),
                     ready_timeout_s=timeouts["ready_timeout"], stop_timeout_s=timeouts["stop_timeout"])

"""The host collector (psutil): machine CPU and memory, and the model server's process tree.

The target is a PID from config, or the process listening on the upstream's port (found with
``psutil.net_connections``, retried with back-off while nothing listens). CPU percentages come
from differences of cumulative CPU times between ticks, kept here rather than in psutil's
module-level ``cpu_percent`` state, so the first tick reads ``None`` (nothing to compare with)
and nobody else's ``cpu_percent`` calls disturb ours. Processes may come and go between ticks: a
child that appears in the tree counts all the CPU time it used since it was born (so none is lost
or counted twice), one that vanished is dropped. The tree is re-listed every ``tree_refresh_s``
(listing children scans every process on the machine).
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import psutil

from .readings import HostReading

__all__ = ["HostCollector", "find_listener", "upstream_port"]

logger = logging.getLogger(__name__)

_LOCAL_HOSTS = {"", "localhost", "127.0.0.1", "::1", "0.0.0.0", "::"}
_GONE = (psutil.NoSuchProcess, psutil.ZombieProcess)
_CREATE_TIME_SLACK_S = 1.0  # psutil's create_time rests on the boot time in whole seconds


def upstream_port(upstream: str | None) -> int | None:
    """The port of a local upstream URL (``http://127.0.0.1:8000`` -> 8000); None for a remote one."""
    if not upstream:
        return None
    parts = urlsplit(upstream if "://" in upstream else "http://" + upstream)
    host = (parts.hostname or "").lower()
    if host not in _LOCAL_HOSTS and not host.startswith("127.") and host != socket.gethostname().lower():
        return None
    try:
        return parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None


def find_listener(port: int) -> int | None:
    """The PID listening on TCP ``port``; with pre-forked workers sharing the socket, their parent."""
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError) as e:
        logger.info("infermeter: cannot list listening sockets to find the model server: %s", e)
        return None
    pids = sorted({c.pid for c in conns if c.pid and c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port})
    if not pids:
        return None
    # psutil names one holder per socket; climb while the parent listens on the port too.
    try:
        p = psutil.Process(pids[0])
        while (parent := p.parent()) is not None and _listens(parent, port):
            p = parent
        return p.pid
    except _GONE:
        return pids[0]


def _listens(p: psutil.Process, port: int) -> bool:
    try:
        return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in p.net_connections(kind="tcp"))
    except (psutil.AccessDenied, *_GONE):
        return False


def _cpu_busy_total(t: object) -> tuple[float, float]:
    total = sum(t)  # type: ignore[call-overload]
    total -= getattr(t, "guest", 0.0) + getattr(t, "guest_nice", 0.0)  # already counted in user/nice
    idle = t.idle + getattr(t, "iowait", 0.0)  # type: ignore[attr-defined]
    return total - idle, total


class HostCollector:
    name = "host"

    def __init__(
        self,
        target_pid: int | None = None,
        upstream_port: int | None = None,
        *,
        tree_refresh_s: float = 10.0,
        monotonic_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.configured_pid = target_pid
        self.port = upstream_port
        self.tree_refresh_ns = int(tree_refresh_s * 1e9)
        self._mono = monotonic_ns
        self.cpu_count = psutil.cpu_count() or None
        self._cpu_prev: tuple[float, float] | None = None
        self._pid: int | None = target_pid
        self._procs: dict[int, psutil.Process] = {}
        self._proc_cpu: dict[int, float] = {}
        self._listed_ns: int | None = None
        self._listed_wall_s = 0.0
        self._read_ns = 0  # monotonic time of the last successful read of the tree
        self._discover_at_ns = 0
        self._discover_backoff_s = 5.0
        self._said: set[str] = set()
        self.done = False

    def collect(self, ts_ns: int) -> list[HostReading]:
        now = self._mono()
        vm = psutil.virtual_memory()
        target = self._target(now)
        return [HostReading(ts_ns, self._system_cpu_pct(), self.cpu_count, vm.total - vm.available, vm.total, *target)]

    def close(self) -> None:
        self._procs.clear()

    # -- machine ---------------------------------------------------------------------------------------
    def _system_cpu_pct(self) -> float | None:
        busy, total = _cpu_busy_total(psutil.cpu_times())
        prev, self._cpu_prev = self._cpu_prev, (busy, total)
        if prev is None or total <= prev[1]:
            return None
        return min(100.0, max(0.0, 100.0 * (busy - prev[0]) / (total - prev[1])))

    # -- target process tree -------------------------------------------------------------------------------
    def _say_once(self, key: str, msg: str, *args: object) -> None:
        if key not in self._said:
            self._said.add(key)
            logger.info(msg, *args)

    def _resolve(self, now: int) -> int | None:
        if self._pid is not None or self.port is None or now < self._discover_at_ns:
            return self._pid
        pid = find_listener(self.port)
        if pid is None:
            self._say_once("nolistener", "infermeter: no process listens on port %d yet; the model server's CPU and memory "
                           "are not sampled until one does (or set INFERMETER_TARGET_PID)", self.port)
            self._discover_at_ns = now + int(self._discover_backoff_s * 1e9)
            self._discover_backoff_s = min(300.0, self._discover_backoff_s * 2)
            return None
        logger.info("infermeter: watching model server pid %d (listening on port %d)", pid, self.port)
        self._discover_backoff_s = 5.0
        self._pid = pid
        return pid

    def _list_tree(self, pid: int, now: int) -> bool:
        root = self._procs.get(pid)
        try:
            if root is None or not root.is_running():
                root = psutil.Process(pid)
            children = root.children(recursive=True)
        except _GONE:
            return False
        except psutil.AccessDenied:
            children = []
        fresh = {pid: root}
        for c in children:
            fresh[c.pid] = self._procs.get(c.pid) or c
        self._procs = fresh
        self._listed_ns, self._listed_wall_s = now, time.time()
        return True

    def _lose_target(self, pid: int) -> None:
        self._procs.clear()
        self._proc_cpu.clear()
        self._listed_ns = None
        if self.configured_pid is None:
            logger.info("infermeter: model server pid %d is gone; looking for the listener on port %s again", pid, self.port)
            self._pid = None
            self._discover_at_ns = 0
        else:
            self._say_once(f"gone{pid}", "infermeter: target pid %d does not exist (INFERMETER_TARGET_PID)", pid)

    def _target(self, now: int) -> tuple[int | None, int | None, float | None, int | None]:
        pid = self._resolve(now)
        if pid is None:
            return (None, None, None, None)
        listed_before_s = self._listed_wall_s - _CREATE_TIME_SLACK_S
        stale = self._listed_ns is None or now - self._listed_ns >= self.tree_refresh_ns or pid not in self._procs
        if stale and not self._list_tree(pid, now):
            self._lose_target(pid)
            return (pid, 0, None, None)
        used_s, rss, denied, cpu = 0.0, 0, False, {}
        prev_cpu, had_root = self._proc_cpu, pid in self._proc_cpu
        for p in list(self._procs.values()):
            try:
                with p.oneshot():
                    ct = p.cpu_times()
                    rss += p.memory_info().rss
                    cpu_s = ct.user + ct.system
                    prev = prev_cpu.get(p.pid)
                    if prev is not None:
                        used_s += max(0.0, cpu_s - prev)
                    elif had_root and p.create_time() >= listed_before_s:
                        used_s += cpu_s  # born since the tree was last listed: all its CPU time is new
                cpu[p.pid] = cpu_s
            except _GONE:
                self._procs.pop(p.pid, None)
            except psutil.AccessDenied:
                denied = True
        if pid not in self._procs:
            self._lose_target(pid)
            return (pid, 0, None, None)
        self._proc_cpu = cpu
        last_ns, self._read_ns = self._read_ns, now
        if denied:
            self._say_once("denied", "infermeter: not allowed to read some of pid %d's processes; run infermeter as the "
                           "same user as the model server (or root) to sample its CPU and memory", pid)
            return (pid, len(self._procs), None, None)
        pct = None
        if had_root and now > last_ns:  # the tree was read last tick too: a full interval to compare
            pct = 100.0 * used_s / ((now - last_ns) / 1e9)
        return (pid, len(self._procs), pct, rss)

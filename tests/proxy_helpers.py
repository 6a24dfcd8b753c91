"""Fixtures for the proxy tests: a real upstream, real proxies on the test agent, captured records.

Import the fixtures into a test module: ``from tests.proxy_helpers import upstream, make_proxy, proxy``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from infermeter.agent.proxy import ProxyComponent
from infermeter.records import InferenceRecord
from tests.upstreams import Upstream

__all__ = ["upstream", "make_proxy", "proxy", "Proxied", "ListSink", "closed_port"]


class ListSink:
    """Keeps every record the pipeline delivers (after its processors), for assertions."""

    def __init__(self) -> None:
        self.records: list[InferenceRecord] = []
        self._cv = threading.Condition()

    def consume(self, records: Any) -> None:
        with self._cv:
            self.records.extend(records)
            self._cv.notify_all()

    def wait_for(self, n: int, flush: Callable[[], Any], timeout_s: float = 10.0) -> list[InferenceRecord]:
        """The records so far, once there are at least ``n`` (a request's record follows its reply)."""
        deadline = time.monotonic() + timeout_s
        while True:
            flush()
            with self._cv:
                if len(self.records) >= n or time.monotonic() > deadline:
                    return list(self.records)
                self._cv.wait(0.05)  # woken by the next delivery


class Proxied:
    def __init__(self, agent: Any, component: ProxyComponent, sink: ListSink, upstream: Upstream) -> None:
        self.agent = agent
        self.component = component
        self.sink = sink
        self.upstream = upstream

    @property
    def url(self) -> str:
        return self.component.url

    def records(self, n: int = 1, timeout_s: float = 10.0) -> list[InferenceRecord]:
        return self.sink.wait_for(n, self.agent.force_flush, timeout_s)

    def record(self) -> InferenceRecord:
        recs = self.records(1)
        assert len(recs) == 1, recs
        return recs[0]


def closed_port() -> int:
    """A port on 127.0.0.1 nobody listens on (bound, then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    u = Upstream().start()
    yield u
    u.stop()


@pytest.fixture
def make_proxy(agent: Any, upstream: Upstream) -> Iterator[Callable[..., Proxied]]:
    """``make_proxy(**settings)``: a proxy on the test agent's pipeline, in front of ``upstream``."""
    started: list[ProxyComponent] = []
    sink = ListSink()
    agent.pipeline.sinks.append(sink)

    def make(**overrides: Any) -> Proxied:
        settings = agent.settings.replace(**{"upstream": upstream.url, "listen": "127.0.0.1:0", **overrides})
        comp = ProxyComponent(settings, agent.pipeline).start()
        started.append(comp)
        return Proxied(agent, comp, sink, upstream)

    yield make
    for comp in started:
        comp.shutdown()


@pytest.fixture
def proxy(make_proxy: Callable[..., Proxied]) -> Proxied:
    return make_proxy()

"""Build the agent's sampler from :class:`~infermeter.config.Settings`.

Host always; GPU when ``settings.gpu`` (NVML is only tried on the sampler's first tick); one
scraper per ``metrics_urls`` entry, or, with none given and a local upstream, a guess at the
upstream's own ``/metrics`` (vLLM and TGI serve it on the API port) that is dropped quietly if
it is not a model server we know.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .clock import Clock
from .gpu import GpuCollector
from .host import HostCollector, upstream_port
from .nvml import Nvml
from .sampler import Collector, RowSink, Sampler
from .scrapers import ServerScraper

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["build_sampler", "metrics_url"]


def metrics_url(text: str) -> str:
    """``127.0.0.1:8000`` -> ``http://127.0.0.1:8000/metrics``; a URL with a path is kept as is."""
    s = text.strip()
    if "://" not in s:
        s = "http://" + s
    parts = urlsplit(s)
    if parts.path in ("", "/"):
        s = s.rstrip("/") + "/metrics"
    return s


def build_sampler(settings: "Settings", sink: RowSink | None, *, nvml: Nvml | None = None,
                  clock: Clock | None = None, **kw: Any) -> Sampler:
    port = upstream_port(settings.upstream)
    collectors: list[Collector] = [HostCollector(settings.target_pid, port)]
    if settings.gpu:
        collectors.append(GpuCollector(nvml))
    timeout_s = min(2.0, max(0.2, settings.sample_interval_s / 2))
    urls = [u for u in (settings.metrics_urls or "").split(",") if u.strip()]
    for u in urls:
        collectors.append(ServerScraper(metrics_url(u), timeout_s=timeout_s))
    if not urls and settings.upstream and port is not None:
        up = urlsplit(settings.upstream if "://" in settings.upstream else "http://" + settings.upstream)
        collectors.append(ServerScraper(f"{up.scheme}://{up.netloc}/metrics", timeout_s=timeout_s, guessed=True))
    return Sampler(collectors, sink, interval_s=settings.sample_interval_s, clock=clock, **kw)

"""Model-server scrapers: vLLM, TGI and llama.cpp ``/metrics`` pages, normalised.

A page is recognised by its metric names and reduced to a few normalised metrics
(``requests_running``, ``requests_waiting``, ``kv_cache_usage`` as a 0-1 fraction, cumulative
``prompt_tokens_total`` / ``generation_tokens_total``, prefix-cache hits and queries, ...).
Before parsing with ``prometheus_client``'s text parser, one regular expression keeps only the
sample lines we use, without their labels: a vLLM page is mostly histogram buckets, and parsing
all of it (labels character by character) every second would cost more than the rest of a tick. Comment lines are dropped too, so sample names reach us
exactly as written (a ``# TYPE x counter`` line would make the parser rename ``x`` to ``x_total``).
Label sets are combined: counts and totals are summed (several engines or models), fractions
averaged; NaN and negative values mean "unknown" and are left out.

An unreachable endpoint gives no data and one log line per outage, and is retried with
back-off; an endpoint found by guessing (the upstream's ``/metrics``) is dropped if it is not a
model server we know.
"""

from __future__ import annotations

import logging
import math
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from .readings import ServerReading

__all__ = ["ServerScraper", "parse_metrics", "KINDS"]

logger = logging.getLogger(__name__)

SUM, MEAN = "sum", "mean"

KINDS: dict[str, dict[str, tuple[str, str]]] = {
    "vllm": {
        "vllm:num_requests_running": ("requests_running", SUM),
        "vllm:num_requests_waiting": ("requests_waiting", SUM),
        "vllm:num_requests_swapped": ("requests_swapped", SUM),
        "vllm:kv_cache_usage_perc": ("kv_cache_usage", MEAN),
        "vllm:gpu_cache_usage_perc": ("kv_cache_usage", MEAN),  # the name before vLLM V1
        "vllm:prompt_tokens_total": ("prompt_tokens_total", SUM),
        "vllm:generation_tokens_total": ("generation_tokens_total", SUM),
        "vllm:prefix_cache_hits_total": ("prefix_cache_hits_total", SUM),
        "vllm:prefix_cache_queries_total": ("prefix_cache_queries_total", SUM),
        "vllm:gpu_prefix_cache_hit_rate": ("prefix_cache_hit_rate", MEAN),  # V0 engines
        "vllm:num_preemptions_total": ("preemptions_total", SUM),
        "vllm:request_success_total": ("requests_finished_total", SUM),
    },
    "tgi": {
        "tgi_batch_current_size": ("requests_running", SUM),
        "tgi_queue_size": ("requests_waiting", SUM),
        "tgi_batch_current_max_tokens": ("batch_max_tokens", SUM),
        "tgi_request_count": ("requests_total", SUM),
        "tgi_request_success": ("requests_finished_total", SUM),
        "tgi_request_input_length_sum": ("prompt_tokens_total", SUM),
        "tgi_request_generated_tokens_sum": ("generation_tokens_total", SUM),
    },
    "llamacpp": {
        "llamacpp:requests_processing": ("requests_running", SUM),
        "llamacpp:requests_deferred": ("requests_waiting", SUM),
        "llamacpp:kv_cache_usage_ratio": ("kv_cache_usage", MEAN),  # older servers only
        "llamacpp:kv_cache_tokens": ("kv_cache_tokens", SUM),
        "llamacpp:prompt_tokens_total": ("prompt_tokens_total", SUM),
        "llamacpp:tokens_predicted_total": ("generation_tokens_total", SUM),
        "llamacpp:n_decode_total": ("decode_calls_total", SUM),
        "llamacpp:n_busy_slots_per_decode": ("busy_slots_per_decode", MEAN),
    },
}
"""kind -> {sample name as exposed: (normalised metric, how label sets combine)}."""

_KIND_OF = {name: kind for kind, names in KINDS.items() for name in names}
_WANTED = re.compile(
    r"^(%s)(?:\{[^\n]*\})?[ \t]+([^\n]*)$" % "|".join(re.escape(n) for n in sorted(_KIND_OF, key=len, reverse=True)),
    re.M,
)


def parse_metrics(text: str) -> tuple[str | None, dict[str, float]]:
    """(kind, {normalised metric: value}) from a Prometheus text page; (None, {}) for an unknown page.

    Raises ValueError when a line we need is malformed.
    """
    found = _WANTED.findall(text)
    if not found:
        return None, {}
    kind = _KIND_OF[found[0][0]]
    spec = KINDS[kind]
    acc: dict[str, list[float]] = {}
    # Labels are dropped before parsing: label sets are combined anyway, and parsing them
    # character by character was most of a scrape's CPU.
    for fam in text_string_to_metric_families("".join(f"{name} {rest}\n" for name, rest in found)):
        for s in fam.samples:
            target = spec.get(s.name)
            if target is None or math.isnan(s.value) or s.value < 0:  # vLLM V0 reports -1 for "no hit rate"
                continue
            acc.setdefault(target[0], []).append(float(s.value))
    how = {metric: h for metric, h in spec.values()}
    return kind, {m: (sum(v) / len(v) if how[m] == MEAN else sum(v)) for m, v in acc.items()}


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ServerScraper:
    """Scrapes one ``/metrics`` URL per tick."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 2.0,
        guessed: bool = False,
        max_bytes: int = 16 * 1024 * 1024,
        monotonic_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.url = url
        self.name = f"metrics {url}"
        self.timeout_s = timeout_s
        self.guessed = guessed
        self.max_bytes = max_bytes
        self._mono = monotonic_ns
        self.kind: str | None = None
        self.failures = 0
        self._retry_at = 0
        self._backoff_s = 1.0
        self._down = False
        self.done = False

    def collect(self, ts_ns: int) -> list[ServerReading]:
        now = self._mono()
        if now < self._retry_at:
            return []
        try:
            kind, values = parse_metrics(self._fetch())
        except (OSError, ValueError) as e:  # URLError and timeouts are OSErrors
            return self._failed(now, e)
        if kind is None:
            return self._failed(now, ValueError("no vLLM, TGI or llama.cpp metrics on the page"))
        if self._down:
            logger.warning("infermeter: %s answers again (%s)", self.url, kind)
        elif self.kind is None:
            logger.info("infermeter: scraping %s metrics from %s", kind, self.url)
        self.kind, self._down, self._backoff_s = kind, False, 1.0
        return [ServerReading(ts_ns, self.url, kind, m, v) for m, v in values.items()]

    def close(self) -> None:
        pass

    def _fetch(self) -> str:
        req = urllib.request.Request(self.url, headers={"Accept": "text/plain"})
        with _NO_PROXY.open(req, timeout=self.timeout_s) as resp:
            body = resp.read(self.max_bytes + 1)
        if len(body) > self.max_bytes:
            raise ValueError(f"page larger than {self.max_bytes} bytes")
        return body.decode("utf-8", errors="replace")

    def _failed(self, now: int, e: Exception) -> list[ServerReading]:
        self.failures += 1
        if isinstance(e, urllib.error.HTTPError):
            e.close()
        if self.guessed and self.kind is None and isinstance(e, (urllib.error.HTTPError, ValueError)):
            self.done = True  # it answered, and it is not a model server we read (a refused connection may be one starting)
            logger.info("infermeter: %s is not a model-server metrics page we read (%s); not scraping it", self.url, _why(e))
            return []
        if not self._down:
            self._down = True
            logger.warning("infermeter: cannot scrape %s (%s); no model-server metrics until it answers", self.url, _why(e))
        self._retry_at = now + int(self._backoff_s * 1e9)
        self._backoff_s = min(60.0, self._backoff_s * 2)
        return []


def _why(e: Exception) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code}"
    if isinstance(e, urllib.error.URLError):
        return str(e.reason)
    return str(e) or type(e).__name__

"""Forwarding: what the OTLP receiver accepted, sent on unchanged to an upstream OTLP/HTTP URL.

Payloads wait in a bounded queue for one daemon thread that POSTs them with their original
content type and encoding; a full queue or a failed POST drops the payload and counts it (logged
once per kind). The receiver's answer never waits for the upstream.
"""

from __future__ import annotations

import collections
import logging
import threading
import urllib.error
import urllib.request
from typing import Any

__all__ = ["Forwarder"]

logger = logging.getLogger(__name__)


class Forwarder:
    def __init__(self, url: str, *, max_queued_bytes: int = 64 * 1024 * 1024, timeout_s: float = 10.0) -> None:
        self.url = url if "://" in url else f"http://{url}"
        self.max_queued_bytes = max_queued_bytes
        self.timeout_s = timeout_s
        self.sent = self.dropped = self.failed = 0
        self._queue: collections.deque = collections.deque()
        self._queued_bytes = 0
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._warned: set[str] = set()

    def start(self) -> "Forwarder":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="infermeter-otlp-forward", daemon=True)
            self._thread.start()
        return self

    def submit(self, body: bytes, content_type: str, content_encoding: str | None) -> bool:
        with self._cv:
            if self._closed or self._queued_bytes + len(body) > self.max_queued_bytes:
                self.dropped += 1
                return False
            self._queue.append((body, content_type, content_encoding))
            self._queued_bytes += len(body)
            self._cv.notify()
        return True

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        """True once everything submitted before this call was sent (or given up on)."""
        if self._thread is None:
            return not self._queue
        done = threading.Event()
        with self._cv:
            self._queue.append((None, done, None))
            self._cv.notify()
        return done.wait(timeout_s)

    def shutdown(self, timeout_s: float = 10.0) -> None:
        with self._cv:
            if self._closed:
                return
            self._closed = True
            self._cv.notify()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def stats(self) -> dict[str, Any]:
        return {"url": self.url, "sent": self.sent, "dropped": self.dropped, "failed": self.failed}

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._closed:
                    self._cv.wait()
                if not self._queue:
                    return
                body, ctype, enc = self._queue.popleft()
                if body is not None:
                    self._queued_bytes -= len(body)
            if body is None:
                ctype.set()  # a flush marker: its event rides in the content-type slot
                continue
            self._post(body, ctype, enc)

    def _post(self, body: bytes, ctype: str, enc: str | None) -> None:
        headers = {"Content-Type": ctype or "application/x-protobuf"}
        if enc:
            headers["Content-Encoding"] = enc
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                resp.read()
            self.sent += 1
        except (urllib.error.URLError, OSError, ValueError) as e:
            self.failed += 1
            kind = type(e).__name__
            if kind not in self._warned:
                self._warned.add(kind)
                logger.warning("infermeter: forwarding OTLP to %s failed: %s (further %s failures are counted)", self.url, e, kind)

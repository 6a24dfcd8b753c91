"""The fallback for every other path: latency, status and bytes; nothing read from the bodies."""

from __future__ import annotations

from typing import Any

from ....records import Operation
from .base import Body, Extracted

__all__ = ["PROTOCOL", "GenericProtocol"]


class GenericProtocol:
    name = "generic"
    reads_bodies = False  # neither body is kept or parsed
    provider: str | None = None
    content_re = None  # a streamed reply's first chunk counts as its first content

    def operation(self, path: str) -> str:
        return Operation.OTHER

    def prepare(self, path: str, body: bytes) -> bytes | None:
        return None

    def extract(self, path: str, request: Any, body: Body) -> Extracted:
        return Extracted(operation=Operation.OTHER)


PROTOCOL = GenericProtocol()

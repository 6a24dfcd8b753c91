"""Hiding the usage the proxy asked for from a client that did not ask for it.

With ``stream_options.include_usage`` an OpenAI-compatible server adds one chunk before
``data: [DONE]`` (``"choices": []`` and the usage) and, like OpenAI itself, may put
``"usage": null`` in every other chunk. :class:`UsageStripper` removes both, event by event, so
the client receives the bytes it would have received without the option. Events pass on as soon
as they are complete; only a partial event waits for its end.
"""

from __future__ import annotations

import re

__all__ = ["UsageStripper"]

_EVENT_END = re.compile(rb"\r?\n\r?\n")
_USAGE_ONLY = re.compile(rb'"choices"\s*:\s*\[\s*\]')
_USAGE_BLOCK = re.compile(rb'"usage"\s*:\s*\{')
_NULL_USAGE = re.compile(rb',\s*"usage"\s*:\s*null(?=\s*[,}])|"usage"\s*:\s*null\s*,\s*')


class UsageStripper:
    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        """The complete events so far, filtered; an unfinished event is held until it ends."""
        data = self._pending + chunk if self._pending else chunk
        lf, crlf = data.rfind(b"\n\n"), data.rfind(b"\r\n\r\n")
        end = max(lf + 2 if lf >= 0 else 0, crlf + 4 if crlf >= 0 else 0)
        if end == 0:
            self._pending = data
            return b""
        done, self._pending = data[:end], data[end:]
        return _filter(done) if b'"usage"' in done else done

    def flush(self) -> bytes:
        """Whatever is left when the stream ends (a final event without its blank line)."""
        rest, self._pending = self._pending, b""
        return _filter(rest) if b'"usage"' in rest else rest


def _filter(data: bytes) -> bytes:
    if b"\r" in data:  # CRLF framing: rare, the general (slower) path
        out, pos = [], 0
        for m in _EVENT_END.finditer(data):
            out.append(_event(data[pos:m.start()], data[m.start():m.end()]))
            pos = m.end()
        if pos < len(data):
            out.append(_event(data[pos:], b""))
        return b"".join(out)
    events = data.split(b"\n\n")
    last = events.pop()  # b"" when the data ends with a complete event
    out = [_event(ev, b"\n\n") for ev in events]
    if last:
        out.append(_event(last, b""))
    return b"".join(out)


def _event(event: bytes, sep: bytes) -> bytes:
    if b'"usage"' not in event:
        return event + sep
    if _USAGE_ONLY.search(event) and _USAGE_BLOCK.search(event):
        return b""  # the usage chunk the client did not ask for
    if b',"usage":null' in event:  # compact JSON, as servers send it: plain byte replaces
        event = event.replace(b',"usage":null}', b"}").replace(b',"usage":null,', b",")
    if b'"usage"' in event and b"null" in event:
        event = _NULL_USAGE.sub(b"", event)
    return event + sep

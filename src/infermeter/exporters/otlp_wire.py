"""OTLP trace payloads (http/protobuf and http/json) decoded into plain :class:`WireSpan` objects.

Both encodings end up the same shape, so the receiver maps one thing. JSON follows the OTLP/JSON
rules: lowerCamelCase keys, trace and span ids as hex, 64-bit integers as strings or numbers,
enums as integers. A payload that breaks them raises :class:`PayloadError` naming where
(``resourceSpans[0].scopeSpans[1].spans[2].traceId: ...``), which the receiver answers with 400.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["WireSpan", "PayloadError", "PayloadTooLarge", "decode_traces", "decompress"]


class PayloadError(ValueError):
    """The payload is not a valid OTLP traces request; the message says where and why."""


class PayloadTooLarge(PayloadError):
    """The payload (after decompression) is over the receiver's limit."""


@dataclass(frozen=True, slots=True)
class WireSpan:
    trace_id: int | None
    span_id: int | None
    parent_span_id: int | None
    name: str
    kind: int  # OTLP SpanKind: 1 internal, 2 server, 3 client, ...
    start_ns: int
    end_ns: int
    error: bool  # status code ERROR
    status_message: str
    attributes: dict[str, Any] = field(default_factory=dict)
    resource: dict[str, Any] = field(default_factory=dict)
    scope: str = ""


def decompress(body: bytes, encoding: str | None, max_bytes: int) -> bytes:
    """Undo ``Content-Encoding: gzip|deflate`` without ever holding more than ``max_bytes``."""
    enc = (encoding or "identity").strip().lower()
    if enc in ("", "identity"):
        if len(body) > max_bytes:
            raise PayloadTooLarge(f"payload of {len(body)} bytes exceeds the limit of {max_bytes}")
        return body
    if enc not in ("gzip", "deflate"):
        raise PayloadError(f"unsupported Content-Encoding {encoding!r} (gzip, deflate or none)")
    d = zlib.decompressobj(zlib.MAX_WBITS | 32 if enc == "gzip" else zlib.MAX_WBITS)
    try:
        out = d.decompress(body, max_bytes + 1)
    except zlib.error as e:
        raise PayloadError(f"cannot {enc}-decode the payload: {e}") from e
    if len(out) > max_bytes or d.unconsumed_tail:
        raise PayloadTooLarge(f"decompressed payload exceeds the limit of {max_bytes} bytes")
    return out


def decode_traces(body: bytes, content_type: str | None) -> list[WireSpan]:
    ct = (content_type or "").split(";")[0].strip().lower()
    if ct == "application/json":
        return list(_from_json(body))
    if ct in ("application/x-protobuf", "application/protobuf", ""):
        return list(_from_protobuf(body))
    raise PayloadError(f"unsupported Content-Type {content_type!r}: OTLP/HTTP is application/x-protobuf or application/json")


# -- protobuf ---------------------------------------------------------------------------------------

def _from_protobuf(body: bytes) -> Iterator[WireSpan]:
    try:
        from google.protobuf.message import DecodeError
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    except ImportError as e:  # the [export] extra brings opentelemetry-proto
        raise PayloadError("this agent cannot decode protobuf (pip install 'infermeter[export]'); send application/json") from e
    try:
        req = ExportTraceServiceRequest.FromString(body)
    except DecodeError as e:
        raise PayloadError(f"not an OTLP ExportTraceServiceRequest protobuf: {e}") from e
    for i, rs in enumerate(req.resource_spans):
        resource = {kv.key: _pb_value(kv.value) for kv in rs.resource.attributes}
        for j, ss in enumerate(rs.scope_spans):
            scope = ss.scope.name
            for k, sp in enumerate(ss.spans):
                where = f"resourceSpans[{i}].scopeSpans[{j}].spans[{k}]"
                yield WireSpan(
                    trace_id=_pb_id(sp.trace_id, 16, f"{where}.traceId"),
                    span_id=_pb_id(sp.span_id, 8, f"{where}.spanId"),
                    parent_span_id=_pb_id(sp.parent_span_id, 8, f"{where}.parentSpanId"),
                    name=sp.name,
                    kind=int(sp.kind),
                    start_ns=int(sp.start_time_unix_nano),
                    end_ns=int(sp.end_time_unix_nano),
                    error=sp.status.code == 2,
                    status_message=sp.status.message,
                    attributes={kv.key: _pb_value(kv.value) for kv in sp.attributes},
                    resource=resource,
                    scope=scope,
                )


def _pb_id(raw: bytes, size: int, where: str) -> int | None:
    if not raw:
        return None
    if len(raw) != size:
        raise PayloadError(f"{where}: {len(raw)} bytes, expected {size}")
    return int.from_bytes(raw, "big") or None


def _pb_value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return tuple(_pb_value(x) for x in v.array_value.values)
    if kind == "kvlist_value":
        return {kv.key: _pb_value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind)


# -- JSON -------------------------------------------------------------------------------------------

def _from_json(body: bytes) -> Iterator[WireSpan]:
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PayloadError(f"not JSON: {e}") from e
    if not isinstance(doc, dict):
        raise PayloadError("an OTLP/JSON traces request is an object with resourceSpans")
    for i, rs in enumerate(_list(doc, "resourceSpans", "")):
        where_r = f"resourceSpans[{i}]"
        res = _obj(rs, "resource", where_r)
        resource = _json_attrs(res, f"{where_r}.resource")
        for j, ss in enumerate(_list(rs, "scopeSpans", where_r)):
            where_s = f"{where_r}.scopeSpans[{j}]"
            scope = _obj(ss, "scope", where_s).get("name") or ""
            for k, sp in enumerate(_list(ss, "spans", where_s)):
                where = f"{where_s}.spans[{k}]"
                if not isinstance(sp, dict):
                    raise PayloadError(f"{where}: a span is an object")
                status = _obj(sp, "status", where)
                yield WireSpan(
                    trace_id=_hex_id(sp.get("traceId"), 32, f"{where}.traceId"),
                    span_id=_hex_id(sp.get("spanId"), 16, f"{where}.spanId"),
                    parent_span_id=_hex_id(sp.get("parentSpanId"), 16, f"{where}.parentSpanId"),
                    name=str(sp.get("name") or ""),
                    kind=_int(sp.get("kind", 0), f"{where}.kind"),
                    start_ns=_int(sp.get("startTimeUnixNano", 0), f"{where}.startTimeUnixNano"),
                    end_ns=_int(sp.get("endTimeUnixNano", 0), f"{where}.endTimeUnixNano"),
                    error=_int(status.get("code", 0), f"{where}.status.code") == 2,
                    status_message=str(status.get("message") or ""),
                    attributes=_json_attrs(sp, where),
                    resource=resource,
                    scope=str(scope),
                )


def _list(obj: Any, key: str, where: str) -> list:
    v = obj.get(key) if isinstance(obj, dict) else None
    if v is None:
        return []
    if not isinstance(v, list):
        raise PayloadError(f"{where}.{key}: expected a list" if where else f"{key}: expected a list")
    return v


def _obj(obj: dict, key: str, where: str) -> dict:
    v = obj.get(key) if isinstance(obj, dict) else None
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise PayloadError(f"{where}.{key}: expected an object")
    return v


def _int(v: Any, where: str) -> int:
    if isinstance(v, bool):
        raise PayloadError(f"{where}: expected an integer, got {v!r}")
    if isinstance(v, int):
        return v
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        return int(v)
    if isinstance(v, float) and v.is_integer():
        return int(v)
    raise PayloadError(f"{where}: expected an integer, got {v!r}")


def _hex_id(v: Any, digits: int, where: str) -> int | None:
    if v in (None, ""):
        return None
    if not isinstance(v, str) or len(v) != digits:
        raise PayloadError(f"{where}: expected {digits} hex digits, got {v!r}")
    try:
        return int(v, 16) or None
    except ValueError:
        raise PayloadError(f"{where}: expected {digits} hex digits, got {v!r}") from None


def _json_attrs(obj: dict, where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n, kv in enumerate(_list(obj, "attributes", where)):
        if not isinstance(kv, dict) or not isinstance(kv.get("key"), str):
            raise PayloadError(f"{where}.attributes[{n}]: expected {{key, value}}")
        out[kv["key"]] = _json_value(kv.get("value"), f"{where}.attributes[{n}].value")
    return out


def _json_value(v: Any, where: str) -> Any:
    if v is None or v == {}:
        return None
    if not isinstance(v, dict) or len(v) != 1:
        raise PayloadError(f"{where}: expected an AnyValue object with one field")
    (kind, x), = v.items()
    if kind == "stringValue":
        return str(x)
    if kind == "boolValue":
        if not isinstance(x, bool):
            raise PayloadError(f"{where}.boolValue: expected true/false")
        return x
    if kind == "intValue":
        return _int(x, f"{where}.intValue")
    if kind == "doubleValue":
        if isinstance(x, bool) or not isinstance(x, (int, float, str)):
            raise PayloadError(f"{where}.doubleValue: expected a number")
        try:
            return float(x)
        except ValueError:
            raise PayloadError(f"{where}.doubleValue: expected a number, got {x!r}") from None
    if kind == "arrayValue":
        return tuple(_json_value(e, f"{where}.arrayValue[{n}]") for n, e in enumerate(_list(x, "values", where)))
    if kind == "kvlistValue":
        return _json_attrs({"attributes": _list(x, "values", where)}, f"{where}.kvlistValue")
    if kind == "bytesValue":
        try:
            return base64.b64decode(str(x), validate=True)
        except ValueError:
            raise PayloadError(f"{where}.bytesValue: not base64") from None
    raise PayloadError(f"{where}: unknown AnyValue field {kind!r}")

"""OTLP span encoding at a fraction of the SDK's cost, for the spans a node exports most.

The SDK's OTLP encoder builds one protobuf object per span, per attribute and
per value before serializing them: about 30 µs a span here, in the export
thread, under the interpreter lock the node's event loop needs too. At a
thousand spans a second that is a few percent of a core; at the rates of
``traces="all"`` on a busy node (tens of thousands of messages a second) the
export queue cannot keep up and spans are dropped.

`encode_spans` writes the protobuf wire format directly, with the constant
parts (names, kinds, attribute keys, resource, scope) encoded once and cached,
and returns the same ``ExportTraceServiceRequest`` the SDK's encoder would
(parsed from those bytes, in C). It takes the spans whose content it knows how
to write exactly -- attributes, link attributes and event attributes that are
strings, booleans, integers, floats or bytes, as suptrace's own spans are --
and hands any other span to the SDK's encoder, in the same request.
`suptrace.observers.otel.exporters.observed` installs it in the gRPC span
exporter it builds (the HTTP exporter encodes inside its ``export``, which has
no place to plug an encoder in).

>>> from opentelemetry.sdk.resources import Resource
>>> from opentelemetry.sdk.trace import ReadableSpan
>>> from opentelemetry.trace import SpanContext, SpanKind, TraceFlags
>>> span = ReadableSpan(
...     "process worker", SpanContext(5, 7, False, TraceFlags(1)),
...     resource=Resource({"service.name": "demo"}), attributes={"n": 1},
...     kind=SpanKind.CONSUMER, start_time=10, end_time=20)
>>> request = encode_spans([span])
>>> s = request.resource_spans[0].scope_spans[0].spans[0]
>>> s.name, s.span_id.hex(), s.attributes[0].value.int_value, s.end_time_unix_nano
('process worker', '0000000000000007', 1, 20)
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import (
    encode_spans as sdk_encode_spans,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, SpanKind, StatusCode

__all__ = ["encode_spans", "fast"]

# Wire types of the protobuf encoding.
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5

#: The OTLP span kinds by the API's.
_KINDS = {
    SpanKind.INTERNAL: 1,
    SpanKind.SERVER: 2,
    SpanKind.CLIENT: 3,
    SpanKind.PRODUCER: 4,
    SpanKind.CONSUMER: 5,
}
#: The span's ``kind`` field (number 6), by the API's kind.
_KIND_FIELDS = {kind: b"\x30" + bytes((n,)) for kind, n in _KINDS.items()}
_KIND_CONSUMER = _KIND_FIELDS[SpanKind.CONSUMER]
_KIND_SERVER = _KIND_FIELDS[SpanKind.SERVER]
_KIND_CLIENT = _KIND_FIELDS[SpanKind.CLIENT]
# Span.flags: "the context says whether it is remote", and "it is remote".
_HAS_IS_REMOTE = 0x100
_IS_REMOTE = 0x200
#: Cached encodings are forgotten past this many (names and values can be dynamic).
_CACHE_LIMIT = 4096

_pack_times = struct.Struct("<BQBQ").pack  # start (field 7) and end (field 8), fixed64
_pack_double = struct.Struct("<d").pack
#: The SDK's encoder, for the spans this one leaves to it (`encode_spans`), and for
#: the resource and scope of each group, once (`_Cache.group`).
_encode_group = sdk_encode_spans
_pack_u32 = struct.Struct("<I").pack
_pack_u64 = struct.Struct("<Q").pack


#: One-byte varints, by value.
_SMALL = [bytes((n,)) for n in range(0x80)]


def _varint(n: int) -> bytes:
    """An unsigned integer as a protobuf varint (negative int64s as two's complement)."""
    if n < 0:
        n += 1 << 64
    if n < 0x80:
        return _SMALL[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _tag(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def _len_field(field: int, payload: bytes) -> bytes:
    """A length-delimited field: its tag, the payload's length, the payload."""
    n = len(payload)
    return _tag(field, _LEN) + (_SMALL[n] if n < 0x80 else _varint(n)) + payload


class _Unsupported(Exception):
    """A value this encoder does not write (the SDK's encoder takes the span)."""


def _any_value(value: Any) -> bytes:
    """An ``AnyValue`` message's content (a oneof: written even when it is the default)."""
    t = type(value)
    if t is str:
        return _len_field(1, value.encode("utf-8"))
    if t is bool:
        return b"\x10\x01" if value else b"\x10\x00"
    if t is int:
        if not -(1 << 63) <= value < 1 << 63:
            raise _Unsupported(t)  # the SDK's encoder logs and drops it
        return b"\x18" + _varint(value)
    if t is float:
        return b"\x21" + _pack_double(value)
    if t is bytes:
        return _len_field(7, value)
    raise _Unsupported(t)


class _Cache:
    """Encodings of the parts that repeat from span to span."""

    def __init__(self) -> None:
        self.keys: dict[str, bytes] = {}
        #: Whole attribute fields (tag, length, ``KeyValue``) by (field number, key,
        #: value), for short string values: labels, not payloads.
        self.pairs: dict[tuple[int, str, str], bytes] = {}
        self.names: dict[str, bytes] = {}
        #: By the identities of a resource and a scope (their hashes are costly: the
        #: SDK's resource hashes a JSON dump of its attributes), with both kept alive.
        self.groups: dict[tuple[int, int], tuple[Any, Any, bytes, bytes]] = {}

    def attribute(self, field: int, key: str, value: Any) -> bytes:
        """One attribute as field ``field`` (``attributes``: 9 in a span, 3 in an event, 4
        in a link) holding a ``KeyValue``."""
        kv = self._key(key) + _len_field(2, _any_value(value))
        return _len_field(field, kv)

    def label(self, field: int, key: str, value: str) -> bytes:
        """`attribute` for a short string value, kept for the next span."""
        if len(self.pairs) > _CACHE_LIMIT:
            self.pairs.clear()
        found = self.pairs[(field, key, value)] = self.attribute(field, key, value)
        return found

    def _key(self, key: str) -> bytes:
        found = self.keys.get(key)
        if found is None:
            if type(key) is not str:
                raise _Unsupported(type(key))
            if len(self.keys) > _CACHE_LIMIT:
                self.keys.clear()
            found = self.keys[key] = _len_field(1, key.encode("utf-8"))
        return found

    def name(self, name: str) -> bytes:
        found = self.names.get(name)
        if found is None:
            if len(self.names) > _CACHE_LIMIT:
                self.names.clear()
            found = self.names[name] = _len_field(5, name.encode("utf-8"))
        return found

    def group(self, resource: Any, scope: Any) -> tuple[bytes, bytes]:
        """(the ``ResourceSpans`` fields but its scope spans, the ``ScopeSpans`` fields but
        its spans) for one resource and instrumentation scope, encoded by the SDK once."""
        key = (id(resource), id(scope))
        found = self.groups.get(key)
        if found is None or found[0] is not resource or found[1] is not scope:
            fake = ReadableSpan(
                "", SpanContext(1, 1, False), resource=resource, instrumentation_scope=scope
            )
            message = _encode_group([fake]).resource_spans[0]
            scope_spans = message.scope_spans[0]
            scope_spans.ClearField("spans")
            message.ClearField("scope_spans")
            if len(self.groups) > 64:
                self.groups.clear()
            found = self.groups[key] = (
                resource,
                scope,
                message.SerializeToString(),
                scope_spans.SerializeToString(),
            )
        return found[2], found[3]


_cache = _Cache()


def _attributes(field: int, attributes: Any, cache: _Cache) -> bytes:
    if not attributes:
        return b""
    out = []
    labels = cache.pairs
    for key, value in attributes.items():
        if type(value) is str and len(value) <= 64:
            found = labels.get((field, key, value))
            out.append(found if found is not None else cache.label(field, key, value))
        else:
            out.append(cache.attribute(field, key, value))
    return b"".join(out)


def _span(span: ReadableSpan, cache: _Cache) -> bytes:
    """One ``Span`` message, as the SDK's encoder would fill it."""
    sc = span.context
    if sc is None:
        raise _Unsupported(None)
    parts = [
        b"\x0a\x10",
        sc.trace_id.to_bytes(16, "big"),
        b"\x12\x08",
        sc.span_id.to_bytes(8, "big"),
    ]
    state = sc.trace_state
    if state:
        parts.append(_len_field(3, ",".join(f"{k}={v}" for k, v in state.items()).encode()))
    parent = span.parent
    flags = _HAS_IS_REMOTE
    if parent:
        parts.append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))
        if parent.is_remote:
            flags |= _IS_REMOTE
    parts.append(b"\x85\x01" + _pack_u32(flags))  # field 16, fixed32 (a two-byte tag)
    name = span.name
    if name:
        parts.append(cache.name(name))
    kind = span.kind  # compared by identity: an enum member's hash is a Python call
    parts.append(
        _KIND_CONSUMER
        if kind is SpanKind.CONSUMER
        else _KIND_SERVER
        if kind is SpanKind.SERVER
        else _KIND_CLIENT
        if kind is SpanKind.CLIENT
        else _KIND_FIELDS[kind]
    )
    start, end = span.start_time or 0, span.end_time or 0
    parts.append(_pack_times(0x39, start, 0x41, end))
    parts.append(_attributes(9, span.attributes, cache))
    dropped = span.dropped_attributes
    if dropped:
        parts.append(b"\x50" + _varint(dropped))
    for event in span.events:
        body = [b"\x09" + _pack_u64(event.timestamp)]
        if event.name:
            body.append(_len_field(2, event.name.encode("utf-8")))
        body.append(_attributes(3, event.attributes, cache))
        if event.dropped_attributes:
            body.append(b"\x20" + _varint(event.dropped_attributes))
        parts.append(_len_field(11, b"".join(body)))
    if span.dropped_events:
        parts.append(b"\x60" + _varint(span.dropped_events))
    for link in span.links:
        lc = link.context
        link_flags = _HAS_IS_REMOTE | (_IS_REMOTE if lc.is_remote else 0)
        body = [
            b"\x0a\x10",
            lc.trace_id.to_bytes(16, "big"),
            b"\x12\x08",
            lc.span_id.to_bytes(8, "big"),
            _attributes(4, link.attributes, cache),
        ]
        if link.dropped_attributes:
            body.append(b"\x28" + _varint(link.dropped_attributes))
        body.append(b"\x35" + _pack_u32(link_flags))  # field 6, fixed32
        parts.append(_len_field(13, b"".join(body)))
    if span.dropped_links:
        parts.append(b"\x70" + _varint(span.dropped_links))
    status = span.status
    if status is not None:
        body_parts = []
        if status.description:
            body_parts.append(_len_field(2, status.description.encode("utf-8")))
        code = status.status_code
        if code is StatusCode.ERROR:
            body_parts.append(b"\x18\x02")
        elif code is StatusCode.OK:
            body_parts.append(b"\x18\x01")
        elif code is not StatusCode.UNSET:
            raise _Unsupported(code)
        parts.append(_len_field(15, b"".join(body_parts)))
    return b"".join(parts)


#: What makes a span the SDK's encoder's to write.
_FALLBACK = (
    _Unsupported,
    AttributeError,
    KeyError,
    TypeError,
    ValueError,
    OverflowError,
    struct.error,
)


def encode_spans(spans: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
    """The OTLP export request of ``spans``, as the SDK's ``encode_spans`` makes it."""
    cache = _cache
    groups: dict[tuple[int, int], list[tuple[ReadableSpan, bytes]]] = {}
    others: list[ReadableSpan] = []
    for span in spans:
        try:
            encoded = _span(span, cache)
        except _FALLBACK:
            others.append(span)
            continue
        key = (id(span.resource), id(span.instrumentation_scope))
        found = groups.get(key)
        if found is None:
            groups[key] = [(span, encoded)]
        else:
            found.append((span, encoded))
    out = []
    for pairs in groups.values():
        first = pairs[0][0]
        try:
            resource_part, scope_part = cache.group(first.resource, first.instrumentation_scope)
        except Exception:  # a resource or scope the SDK's encoder may know what to do with
            others.extend(span for span, _ in pairs)
            continue
        encoded_spans = [encoded for _, encoded in pairs]
        tag = b"\x12"  # ScopeSpans.spans, field 2
        body = scope_part + b"".join(tag + _varint(len(s)) + s for s in encoded_spans)
        out.append(_len_field(1, resource_part + _len_field(2, body)))
    request: ExportTraceServiceRequest = ExportTraceServiceRequest.FromString(b"".join(out))
    if others:
        request.MergeFrom(sdk_encode_spans(others))
    return request


def fast(span: ReadableSpan) -> bool:
    """Whether `encode_spans` writes ``span`` itself (else the SDK's encoder does)."""
    try:
        _span(span, _cache)
    except _FALLBACK:
        return False
    return True

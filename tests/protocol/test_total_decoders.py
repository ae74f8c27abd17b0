"""Every decoder is total (issue 8).

"Any byte sequence given to the JSON codec, the MessagePack codec, the
handshake parser, the framing layer ... and the binder either yields a value
or raises the layer's own protocol error": ``RemoteProtocolError`` for the
codecs, the handshake, the framing and ``HubProtocolConnection``;
``BindingError`` for the binder. Any other exception (``RecursionError`` from
deep nesting, ``ValueError`` from a 5,000-digit integer, ``KeyError``,
``TypeError``...) is a bug: it escapes the read loop and takes down more than
the one connection.

Inputs: arbitrary bytes; valid-looking documents (hub message shapes built
with ``st.recursive``) and adversarial mutations of them (truncation, flipped,
inserted and deleted bytes); nesting up to 20,000 deep, bare and inside an
Invocation's arguments; integers of up to 10,000 digits; the non-JSON literals
``NaN`` and ``Infinity``; invalid UTF-8. The worst cases are also pinned as
explicit examples, so they run every time.
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Callable
from typing import Any

import attrs
import msgpack
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from voisnap.hubs.binder import BindingError, structure
from voisnap.protocol import (
    CONNECTION_CLOSED,
    NEED_DATA,
    HandshakeRequest,
    HubProtocolConnection,
    JsonHubProtocol,
    RemoteProtocolError,
    TransferFormat,
)
from voisnap.protocol.framing import BinaryFraming, TextFraming
from voisnap.protocol.handshake import parse_handshake_request
from voisnap.protocol.msgpack_codec import MessagePackHubProtocol

total = settings(max_examples=2000, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

JSON = JsonHubProtocol()
MSGPACK = MessagePackHubProtocol()
MAX_DEPTH = 20_000
MAX_DIGITS = 10_000


class Doc(bytes):
    """Bytes that Hypothesis reports in short: a falsifying example of 40 KB
    shows as its head, its tail and its length."""

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(short(self))


def short(data: bytes) -> str:
    if len(data) <= 120:
        return repr(bytes(data))
    return f"<{len(data)} bytes: {bytes(data[:48])!r} ... {bytes(data[-24:])!r}>"


def docs(strategy: st.SearchStrategy[bytes]) -> st.SearchStrategy[Doc]:
    return strategy.map(Doc)


def decodes_or_refuses(decode: Callable[[bytes], Any], data: bytes) -> None:
    """``decode(data)`` returns, or raises RemoteProtocolError; nothing else."""
    try:
        decode(bytes(data))
    except RemoteProtocolError:
        pass


# -- plain values -------------------------------------------------------------------------------

json_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12),
)
json_values = st.recursive(
    json_leaves,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=16,
)
ids = st.one_of(st.text(max_size=6), json_values)
targets = st.one_of(st.sampled_from(["Echo", "SendToGroup", "", "_secret"]), json_values)

# The properties of every message type (HubProtocol.md, "JSON Encoding"), each
# usually of the right type, sometimes of any type.
hub_documents = st.fixed_dictionaries(
    {"type": st.one_of(st.integers(-2, 11), json_values)},
    optional={
        "invocationId": ids,
        "target": targets,
        "arguments": st.one_of(st.lists(json_values, max_size=4), json_values),
        "streamIds": st.one_of(st.lists(st.text(max_size=4), max_size=3), json_values),
        "item": json_values,
        "result": json_values,
        "error": st.one_of(st.text(max_size=10), json_values),
        "headers": st.one_of(st.dictionaries(st.text(max_size=4), st.text(max_size=4)),
                             json_values),
        "allowReconnect": st.one_of(st.booleans(), json_values),
        "sequenceId": st.one_of(st.integers(), json_values),
    },
)


# -- adversarial byte documents -----------------------------------------------------------------


@st.composite
def mutated(draw: st.DrawFn, documents: st.SearchStrategy[bytes]) -> bytes:
    """A document with a few bytes flipped, inserted, deleted, or cut off."""
    data = bytearray(draw(documents))
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.integers(0, len(data)))
        match draw(st.sampled_from(["truncate", "flip", "insert", "delete", "repeat"])):
            case "truncate":
                del data[where:]
            case "flip" if where < len(data):
                data[where] ^= 1 << draw(st.integers(0, 7))
            case "insert":
                data[where:where] = draw(st.sampled_from(
                    [b"[", b"{", b"]", b"}", b",", b'"', b"\\", b"\xff", b"\xc3", b"\x00",
                     b"\x1e", b"NaN", b"1e999", b"\xdc", b"\xc1", b"\xd4\x05"]))
            case "delete" if where < len(data):
                del data[where:where + draw(st.integers(1, 8))]
            case "repeat":
                data[where:where] = data[where:where + 16] * draw(st.integers(2, 50))
            case _:
                pass
    return bytes(data)


def json_encode(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def json_invocation(arguments: bytes) -> bytes:
    return b'{"type":1,"invocationId":"1","target":"Echo","arguments":[' + arguments + b"]}"


depths = st.integers(0, MAX_DEPTH)
digit_counts = st.integers(1, MAX_DIGITS)

deep_json = st.one_of(
    depths.map(lambda n: b"[" * n + b"]" * n),
    depths.map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    depths.map(lambda n: b"[" * n),  # never closed
    depths.map(lambda n: b'[{"a":' * (n // 2) + b"0" + b"}]" * (n // 2)),
)
huge_numbers = st.one_of(
    digit_counts.map(lambda n: b"9" * n),
    digit_counts.map(lambda n: b"-" + b"1" * n),
    digit_counts.map(lambda n: b"1" * n + b".5"),
    digit_counts.map(lambda n: b"1e" + b"9" * min(n, 400)),
    digit_counts.map(lambda n: b"0." + b"0" * n + b"1"),
)
json_literals = st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999",
                                 b"nan", b"inf", b"true", b"null", b"01", b"-", b"1.", b".1"])
invalid_utf8 = st.sampled_from([b"\xff", b"\xfe\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf",
                                b"\xf4\x90\x80\x80", b"\xe2\x82", b'\\ud800', b'\\udc00\\ud800'])

json_records = st.one_of(
    st.binary(max_size=200),
    hub_documents.map(json_encode),
    mutated(hub_documents.map(json_encode)),
    deep_json,
    deep_json.map(json_invocation),
    huge_numbers.map(json_invocation),
    huge_numbers.map(lambda number: b'{"type":' + number + b"}"),
    huge_numbers.map(lambda number: b'{"type":8,"sequenceId":' + number + b"}"),
    json_literals.map(json_invocation),
    json_literals.map(lambda literal: b'{"type":' + literal + b"}"),
    invalid_utf8.map(lambda bad: json_invocation(b'"' + bad + b'"')),
    invalid_utf8.map(lambda bad: b'{"type":1,"target":"' + bad + b'","arguments":[]}'),
)

DEEP_INVOCATION = json_invocation(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH)
HUGE_INVOCATION = json_invocation(b"7" * 5_000)


@total
@given(docs(json_records))
@example(Doc(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH))
@example(Doc(DEEP_INVOCATION))
@example(Doc(b'{"type":1,"target":"Echo","arguments":[' + b'{"a":' * 15_000 + b"1" + b"}" * 15_000
         + b"]}"))
@example(Doc(HUGE_INVOCATION))
@example(Doc(json_invocation(b"9" * MAX_DIGITS)))
@example(Doc(b'{"type":' + b"1" * 5_000 + b"}"))
@example(Doc(json_invocation(b"NaN")))
@example(Doc(json_invocation(b"1e999")))
@example(Doc(json_invocation(b'"\xff"')))
def test_json_codec_parse_is_total(data: bytes) -> None:
    decodes_or_refuses(JSON.parse, data)


# -- MessagePack --------------------------------------------------------------------------------

msgpack_integers = st.integers(-(2**63), 2**64 - 1)
msgpack_leaves = st.one_of(
    st.none(), st.booleans(), msgpack_integers, st.floats(),
    st.text(max_size=12), st.binary(max_size=12),
)
msgpack_values = st.recursive(
    msgpack_leaves,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.one_of(st.text(max_size=6), msgpack_integers, st.binary(max_size=3)),
                      children, max_size=4),
    max_leaves=16,
)
# HubProtocol.md, "MessagePack (MsgPack) encoding": positional arrays per type.
msgpack_messages = st.one_of(
    st.tuples(st.just(1), st.dictionaries(st.text(max_size=4), st.text(max_size=4)),
              st.one_of(st.none(), st.text(max_size=4)),
              st.one_of(st.sampled_from(["Echo", "SendToGroup", ""]), msgpack_values),
              st.lists(msgpack_values, max_size=3), st.lists(st.text(max_size=3), max_size=2)),
    st.tuples(st.just(3), st.just({}), st.text(max_size=4), st.integers(-1, 4), msgpack_values),
    st.tuples(st.integers(-1, 10), msgpack_values, msgpack_values, msgpack_values),
    st.lists(msgpack_values, max_size=7),
    msgpack_values,
).map(lambda value: list(value) if isinstance(value, tuple) else value)


def msgpack_encode(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True, strict_types=False)


def msgpack_invocation(arguments: bytes, count: int = 1) -> bytes:
    """``[1, {}, "1", "Echo", [arguments...], []]`` around already packed arguments."""
    return (b"\x96\x01\x80\xa11\xa4Echo" + bytes((0x90 | count,)) + arguments + b"\x90")


deep_msgpack = st.one_of(
    depths.map(lambda n: b"\x91" * n + b"\xc0"),
    depths.map(lambda n: b"\x81\xa1a" * n + b"\xc0"),
    depths.map(lambda n: b"\xdd\x00\x00\x00\x01" * n + b"\x90"),  # array32 headers
    depths.map(lambda n: b"\x91" * n),  # never completed
)
msgpack_oddities = st.sampled_from([
    b"\xcf" + b"\xff" * 8,  # uint64 max
    b"\xd3\x80" + b"\x00" * 7,  # int64 min
    b"\xcb" + b"\x7f\xf8" + b"\x00" * 6,  # NaN
    b"\xcb\x7f\xf0" + b"\x00" * 6,  # Infinity
    b"\xa2\xff\xfe",  # a str that is not UTF-8
    b"\xc1",  # never used
    b"\xd6\xff\xff\xff\xff\xff",  # timestamp 32
    b"\xd7\xff" + b"\xff" * 8,  # timestamp 64 with nanoseconds over 999,999,999
    b"\xc7\x0c\xff" + b"\x00" * 4 + b"\x7f" + b"\xff" * 7,  # timestamp 96, year far away
    b"\xc7\x0c\xff" + b"\x00" * 4 + b"\x80" + b"\x00" * 7,  # timestamp 96, far in the past
    b"\xc7\x03\xff\x00\x00\x00",  # timestamp of a wrong length
    b"\xd4\x05\x00",  # an unknown extension
    b"\xdd\xff\xff\xff\xff",  # an array claiming 4G items
    b"\xdf\xff\xff\xff\xff",  # a map claiming 4G pairs
    b"\xdb\xff\xff\xff\xff",  # a str claiming 4 GB
    b"\x81\x90\x01",  # a map with an array key
    b"\x81\xc0\x01",  # a map with a nil key
])

msgpack_records = st.one_of(
    st.binary(max_size=200),
    msgpack_messages.map(msgpack_encode),
    mutated(msgpack_messages.map(msgpack_encode)),
    deep_msgpack,
    deep_msgpack.map(msgpack_invocation),
    msgpack_oddities,
    msgpack_oddities.map(msgpack_invocation),
    msgpack_oddities.map(lambda odd: b"\x96" + odd + b"\x80\xc0\xa4Echo\x90\x90"),
    msgpack_oddities.map(lambda odd: b"\x94\x03\x80\xa11" + odd),
    msgpack_oddities.map(lambda odd: b"\x92\x08" + odd),
)


@total
@given(docs(msgpack_records))
@example(Doc(b"\x91" * MAX_DEPTH + b"\xc0"))
@example(Doc(msgpack_invocation(b"\x91" * MAX_DEPTH + b"\xc0")))
@example(Doc(msgpack_invocation(b"\x91" * 399 + b"\x90")))
@example(Doc(msgpack_invocation(b"\x81\xa1a" * 5_000 + b"\xc0")))
@example(Doc(msgpack_invocation(b"\xcb\x7f\xf8" + b"\x00" * 6)))
@example(Doc(msgpack_invocation(b"\xc7\x0c\xff" + b"\x00" * 4 + b"\x7f" + b"\xff" * 7)))
def test_msgpack_codec_parse_is_total(data: bytes) -> None:
    decodes_or_refuses(MSGPACK.parse, data)


# -- the handshake ------------------------------------------------------------------------------

handshake_documents = st.fixed_dictionaries(
    {},
    optional={
        "protocol": st.one_of(st.sampled_from(["json", "messagepack", "xml", ""]), json_values),
        "version": st.one_of(st.integers(), json_values),
        "extra": json_values,
    },
)
handshake_records = st.one_of(
    st.binary(max_size=200),
    handshake_documents.map(json_encode),
    mutated(handshake_documents.map(json_encode)),
    deep_json,
    deep_json.map(lambda deep: b'{"protocol":"json","version":1,"x":' + deep + b"}"),
    huge_numbers.map(lambda number: b'{"protocol":"json","version":' + number + b"}"),
    json_literals.map(lambda literal: b'{"protocol":"json","version":' + literal + b"}"),
    invalid_utf8.map(lambda bad: b'{"protocol":"' + bad + b'","version":1}'),
)


@total
@given(docs(handshake_records))
@example(Doc(b'{"protocol":"json","version":1,"x":' + b"[" * 15_000 + b"]" * 15_000 + b"}"))
@example(Doc(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH))
@example(Doc(b'{"protocol":"json","version":' + b"1" * 5_000 + b"}"))
@example(Doc(b'{"protocol":"json","version":NaN}'))
@example(Doc(b'{"protocol":"\xff","version":1}'))
def test_handshake_parser_is_total(data: bytes) -> None:
    decodes_or_refuses(parse_handshake_request, data)


# -- framing ------------------------------------------------------------------------------------

text_chunks = st.lists(
    st.one_of(st.binary(max_size=64), st.just(b"\x1e"), st.binary(max_size=8).map(
        lambda data: data + b"\x1e")),
    max_size=12,
)
varint_prefixes = st.one_of(
    st.binary(min_size=1, max_size=6),
    st.sampled_from([b"\xff" * 5, b"\xff\xff\xff\xff\x0f", b"\x80" * 4 + b"\x08", b"\x80",
                     b"\xff\xff\xff\xff\xff\x01", b"\x00", b"\x7f"]),
)
binary_chunks = st.lists(
    st.one_of(st.binary(max_size=64), varint_prefixes,
              st.binary(max_size=20).map(lambda data: bytes((len(data),)) + data)),
    max_size=12,
)


def drain_framing(framing: TextFraming | BinaryFraming, chunks: list[bytes]) -> None:
    """Feed ``chunks`` one by one, taking every record after each; a protocol
    error ends the stream, as it ends the connection."""
    try:
        for chunk in chunks:
            framing.feed(chunk)
            while framing.next_record() is not None:
                pass
    except RemoteProtocolError:
        pass


@total
@given(text_chunks, st.integers(0, 100))
@example([Doc(b"x" * 40_000)], 32 * 1024)
def test_text_framing_is_total(chunks: list[bytes], max_message_size: int) -> None:
    drain_framing(TextFraming(max_message_size), chunks)


@total
@given(binary_chunks, st.integers(0, 100))
@example([b"\xff" * 5, b"\x01"], 32 * 1024)
@example([b"\xff\xff\xff\xff\x0f"], 2**40)
def test_binary_framing_is_total(chunks: list[bytes], max_message_size: int) -> None:
    drain_framing(BinaryFraming(max_message_size), chunks)


# -- HubProtocolConnection ----------------------------------------------------------------------

handshakes = st.one_of(
    st.sampled_from([
        b'{"protocol":"json","version":1}\x1e',
        b'{"protocol":"json","version":2}\x1e',
        b'{"protocol":"messagepack","version":1}\x1e',
        b'{"protocol":"JSON","version":1}\x1e',
        b'{"protocol":"xml","version":1}\x1e',
        b'{"protocol":"json","version":99}\x1e',
        b'{"protocol":"json","version":-1}\x1e',
    ]),
    handshake_records.map(lambda record: record + b"\x1e"),
)
connection_payloads = st.one_of(
    json_records.map(lambda record: record + b"\x1e"),
    msgpack_records.map(lambda record: bytes(BinaryFraming.frame(record))),
    st.binary(max_size=100),
)


@st.composite
def connection_streams(draw: st.DrawFn) -> list[bytes]:
    """A handshake and records, cut into arbitrary chunks."""
    stream = draw(handshakes) + b"".join(draw(st.lists(connection_payloads, max_size=4)))
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    return [Doc(stream[start:end]) for start, end in zip([0, *cuts], [*cuts, len(stream)],
                                                         strict=True)]


def drive(connection: HubProtocolConnection) -> bool:
    """Take every event now available; False once the connection is over."""
    while True:
        event = connection.next_event()
        if event is NEED_DATA:
            return True
        if event is CONNECTION_CLOSED:
            return False
        if isinstance(event, HandshakeRequest):
            try:
                connection.accept(event)
            except RemoteProtocolError as error:
                connection.reject(str(error))
                return False


@total
@given(connection_streams(), st.sampled_from([TransferFormat.BINARY, TransferFormat.TEXT]))
@example([b'{"protocol":"json","version":1}\x1e', Doc(DEEP_INVOCATION + b"\x1e")],
         TransferFormat.BINARY)
@example([b'{"protocol":"json","version":1}\x1e', Doc(HUGE_INVOCATION + b"\x1e")],
         TransferFormat.BINARY)
@example([b'{"protocol":"messagepack","version":1}\x1e',
          Doc(BinaryFraming.frame(msgpack_invocation(b"\x91" * MAX_DEPTH + b"\xc0")))],
         TransferFormat.BINARY)
@example([Doc(b'{"protocol":"json","version":1,"x":' + b"[" * 15_000 + b"]" * 15_000
              + b"}\x1e")],
         TransferFormat.BINARY)
def test_hub_protocol_connection_is_total(chunks: list[bytes],
                                          transfer_format: TransferFormat) -> None:
    connection = HubProtocolConnection(
        {"json": JSON, "messagepack": MSGPACK},
        transfer_format=transfer_format, max_message_size=32 * 1024,
    )
    try:
        for chunk in chunks:
            connection.receive_data(chunk)
            if not drive(connection):
                return
        connection.receive_data(None)
        drive(connection)
    except RemoteProtocolError:
        pass


# -- the binder ---------------------------------------------------------------------------------


@attrs.frozen
class Inner:
    label: str
    weight: float = 0.0


@attrs.frozen
class Payload:
    name: str
    count: int
    tags: list[str] = attrs.Factory(list)
    inner: Inner | None = None
    items: list[Inner] = attrs.Factory(list)
    sent_at: datetime.datetime | None = None


KINDS = [int, str, float, bool, list[int], dict[str, float], list[list[int]], int | None,
         str | None, int | float, tuple[int, ...], dict[str, list[Inner]], Payload, Inner,
         datetime.datetime, list[Payload]]


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


binder_leaves = st.one_of(
    json_leaves,
    st.floats(),  # NaN and infinities: MessagePack carries them
    st.integers(min_value=-(10**40), max_value=10**40),
    st.binary(max_size=8),  # MessagePack's bin
    st.sampled_from(["2024-02-30T00:00:00", "9999-12-31T23:59:59+14:00", "not a date", "",
                     "0001-01-01", "2024-01-01T00:00:00.1234567Z"]),
)
binder_values = st.recursive(
    binder_leaves,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["name", "Name", "NAME", "count", "tags", "inner",
                                       "items", "label", "weight", "sentAt", "sent_at", "x"])
                      | st.text(max_size=6), children, max_size=5),
    max_leaves=20,
)


def binds_or_refuses(value: Any, kind: Any) -> None:
    """``structure(value, kind)`` returns, or raises BindingError; nothing else."""
    try:
        structure(value, kind)
    except BindingError:
        pass


@total
@given(binder_values, st.sampled_from(KINDS))
@example(math.nan, float)
@example({"name": "n", "count": 1, "sentAt": "2024-02-30"}, Payload)
@example({"NAME": "n", "Count": True}, Payload)
def test_binder_structure_is_total(value: Any, kind: Any) -> None:
    binds_or_refuses(value, kind)


# Deep values and huge integers are built inside the tests from their size, so
# that a falsifying example is reported as a number, not as 20,000 brackets.


@total
@given(depths, st.sampled_from(KINDS), st.sampled_from(["bare", "tags", "items", "label"]))
@example(MAX_DEPTH, list[list[int]], "bare")
@example(MAX_DEPTH, Payload, "items")
def test_binder_structure_of_deep_values_is_total(depth: int, kind: Any, where: str) -> None:
    deep = nested(depth)
    value = {
        "bare": deep,
        "tags": {"name": "n", "count": 1, "tags": deep},
        "items": {"name": "n", "count": 1, "items": [{"label": deep}]},
        "label": {"label": deep},
    }[where]
    binds_or_refuses(value, kind)


@total
@given(digit_counts, st.booleans(), st.sampled_from(KINDS))
@example(MAX_DIGITS, False, int)
@example(5_000, True, Payload)
def test_binder_structure_of_huge_integers_is_total(digits: int, inside: bool, kind: Any) -> None:
    number = 10**digits - 1
    binds_or_refuses({"name": "n", "count": number, "weight": -number} if inside else number, kind)

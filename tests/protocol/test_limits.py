"""Decode limits (issue 8): nesting depth and integer size, checked before deep work.

System.Text.Json refuses documents nested deeper than 64 (its ``MaxDepth``);
voisnap does the same for JSON and MessagePack, counting without recursion, and
refuses integers of more than 20 digits (Python's ``int()`` would otherwise
refuse 4,300 digits with an exception no codec expects).
"""

from __future__ import annotations

import msgpack
import pytest

from voisnap.protocol import InvocationMessage, RemoteProtocolError
from voisnap.protocol.handshake import parse_handshake_request
from voisnap.protocol.json_codec import JsonHubProtocol
from voisnap.protocol.limits import (
    DecodeLimits,
    exceeds_depth,
    exceeds_json_depth,
    load_json,
)
from voisnap.protocol.msgpack_codec import MessagePackHubProtocol

JSON = JsonHubProtocol()
MSGPACK = MessagePackHubProtocol()


def nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


def echo_record(argument: str) -> bytes:
    return b'{"type":1,"invocationId":"1","target":"Echo","arguments":[' + argument.encode() + b"]}"


@pytest.mark.parametrize(
    ("document", "depth"),
    [
        (b"1", 0),
        (b"[]", 1),
        (b'{"a":[{"b":[]}]}', 4),
        (b'["[[[[[[[[[["]', 1),  # brackets inside a string do not count
        (b'["\\"[[[[[[[[[["]', 1),  # nor after an escaped quote
        (b'["\\\\", [[[]]]]', 4),  # an escaped backslash ends its escape
    ],
)
def test_limits_json_depth_counts_brackets_outside_strings(document: bytes, depth: int) -> None:
    assert not exceeds_json_depth(document, depth)
    assert exceeds_json_depth(document, depth - 1) == (depth > 0)


def test_limits_json_depth_scan_handles_15000_levels_without_recursion() -> None:
    assert exceeds_json_depth(b"[" * 15_000 + b"]" * 15_000, 64)


def test_limits_value_depth_walks_without_recursion() -> None:
    assert exceeds_depth(nested(100_000), 64)
    assert not exceeds_depth(nested(63), 64)
    assert exceeds_depth({"a": {"b": nested(63)}}, 64)


def test_limits_json_codec_accepts_the_limit_and_refuses_beyond_it() -> None:
    # The message object is depth 1 and its arguments array depth 2.
    ok = JSON.parse(echo_record("[" * 62 + "]" * 62))
    assert isinstance(ok, InvocationMessage)
    with pytest.raises(RemoteProtocolError, match="maximum nesting depth of 64"):
        JSON.parse(echo_record("[" * 63 + "]" * 63))


def test_limits_json_codec_refuses_15000_levels_inside_an_invocation() -> None:
    with pytest.raises(RemoteProtocolError, match="maximum nesting depth"):
        JSON.parse(echo_record("[" * 15_000 + "]" * 15_000))


def test_limits_depth_is_a_setting() -> None:
    with pytest.raises(RemoteProtocolError, match="maximum nesting depth of 3"):
        JSON.parse(echo_record("[[]]"), DecodeLimits(max_depth=3))


@pytest.mark.parametrize(
    ("literal", "problem"),
    [
        ("9" * 5000, "5000 digits exceeds the limit of 20"),
        ("-" + "9" * 21, "21 digits"),
        ("NaN", "'NaN' is not a JSON value"),
        ("-Infinity", "'-Infinity' is not a JSON value"),
        ("1e999", "too large"),
    ],
)
def test_limits_json_codec_refuses_numbers_json_cannot_mean(literal: str, problem: str) -> None:
    with pytest.raises(RemoteProtocolError, match=problem):
        JSON.parse(echo_record(literal))


def test_limits_json_codec_accepts_twenty_digit_integers() -> None:
    message = JSON.parse(echo_record("-18446744073709551615,18446744073709551615"))
    assert isinstance(message, InvocationMessage)
    assert message.arguments == (-18446744073709551615, 18446744073709551615)


def test_limits_handshake_refuses_deep_nesting_and_giant_versions() -> None:
    with pytest.raises(RemoteProtocolError, match="maximum nesting depth"):
        parse_handshake_request(b'{"protocol":"json","x":' + b"[" * 15_000 + b"]" * 15_000 + b"}")
    with pytest.raises(RemoteProtocolError, match="digits"):
        parse_handshake_request(b'{"protocol":"json","version":' + b"1" * 5000 + b"}")


def test_limits_messagepack_codec_refuses_deep_nesting() -> None:
    record = msgpack.packb([1, {}, "1", "Echo", [nested(400)], []])
    with pytest.raises(RemoteProtocolError, match="maximum nesting depth of 64"):
        MSGPACK.parse(record)
    shallow = msgpack.packb([1, {}, "1", "Echo", [nested(60)], []])
    assert isinstance(MSGPACK.parse(shallow), InvocationMessage)


def test_limits_load_json_wraps_syntax_errors_as_the_layers_own() -> None:
    for bad in (b"{", b"\xff\xfe", b"[1,]", b""):
        with pytest.raises(RemoteProtocolError):
            load_json(bad, DecodeLimits())

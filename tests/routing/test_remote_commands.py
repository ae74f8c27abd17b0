"""The commands one process's router sends another (``voisnap.routing.remote``). Sans-IO.

Golden cases: each command as the MessagePack array its module docstring lays out,
both ways (``encode`` gives exactly that array, ``decode`` of that array gives the
command), with a few exact byte strings. Then totality, as for the hub codecs
(tests/protocol/test_total_decoders.py): anything that can publish on the Redis
server can put bytes on a channel, so ``decode`` of any bytes returns a command or
raises ``RemoteCommandError``, never anything else. And ``encode`` refuses what
MessagePack cannot carry with ``ValueError`` or ``TypeError`` only, as documented,
because that is what its callers catch.
"""

from __future__ import annotations

import math
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from voisnap.routing import remote
from voisnap.routing.remote import (
    Close,
    CloseUser,
    Command,
    Fanout,
    Invoke,
    Join,
    Leave,
    RemoteCommandError,
    Result,
    Send,
    decode,
    encode,
)
from voisnap.routing.router import group_key, tenant_key, user_key

total = settings(max_examples=500, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def packed(items: list[Any]) -> bytes:
    return msgpack.packb(items, use_bin_type=True)


# -- golden round trips ----------------------------------------------------------------------------

GOLDEN: dict[str, tuple[Command, list[Any]]] = {
    "fanout_to_one_group": (
        Fanout("Receive", ("hi", 1)),
        [1, "Receive", ["hi", 1], [], [], 0],
    ),
    "fanout_with_exclude": (
        Fanout("Receive", (), exclude=("c1", "c2")),
        [1, "Receive", [], ["c1", "c2"], [], 0],
    ),
    "fanout_to_several_groups": (
        Fanout("Receive", ("hi",), (), (group_key("t", "a"), user_key("t", "u")), 1),
        [1, "Receive", ["hi"], [], [["group", "t", "a"], ["user", "t", "u"]], 1],
    ),
    "fanout_nested_arguments": (
        Fanout("Receive", ([1, [2, None]], {"k": b"\x00\xff"}, True, 1.5)),
        [1, "Receive", [[1, [2, None]], {"k": b"\x00\xff"}, True, 1.5], [], [], 0],
    ),
    "send": (Send("Notify", ("x",)), [2, "Notify", ["x"]]),
    "send_without_arguments": (Send("Ping", ()), [2, "Ping", []]),
    "join": (Join(group_key("t:a", "b")), [3, ["group", "t:a", "b"]]),
    "leave": (Leave(group_key("", "")), [4, ["group", "", ""]]),
    "invoke": (Invoke("GetName", (1, "two"), 2.5), [5, "GetName", [1, "two"], 2.5]),
    "close_with_error": (Close("Token revoked.", False), [6, "Token revoked.", False]),
    "close_without_error": (Close(None, True), [6, None, True]),
    "close_user": (
        CloseUser("chat", "acme", "ada", "bye", False),
        [7, "chat", "acme", "ada", "bye", False],
    ),
    "close_user_without_error": (
        CloseUser("chat", "acme", "ada", None, True),
        [7, "chat", "acme", "ada", None, True],
    ),
    "result_value": (Result({"name": "ada", "n": [1, 2]}), [8, {"name": "ada", "n": [1, 2]}]),
    "result_none": (Result(None), [8, None]),
    "result_bytes": (Result(b"\x01\x02"), [8, b"\x01\x02"]),
}


@pytest.mark.parametrize(("command", "items"), GOLDEN.values(), ids=GOLDEN.keys())
def test_remote_golden_encode(command: Command, items: list[Any]) -> None:
    assert msgpack.unpackb(encode(command), raw=False) == items
    assert encode(command) == packed(items)


@pytest.mark.parametrize(("command", "items"), GOLDEN.values(), ids=GOLDEN.keys())
def test_remote_golden_decode(command: Command, items: list[Any]) -> None:
    assert decode(packed(items)) == command
    assert decode(encode(command)) == command


def test_remote_golden_bytes() -> None:
    assert encode(Join(tenant_key("t"))) == bytes(
        [0x92, 0x03, 0x92, 0xA6, *b"tenant", 0xA1, *b"t"]
    )
    assert encode(Close(None, True)) == bytes([0x93, 0x06, 0xC0, 0xC3])
    assert encode(Result(None)) == bytes([0x92, 0x08, 0xC0])
    assert encode(Send("T", ())) == bytes([0x93, 0x02, 0xA1, *b"T", 0x90])


def test_remote_invoke_timeout_may_be_an_integer() -> None:
    assert decode(packed([5, "GetName", [], 3])) == Invoke("GetName", (), 3.0)


def test_remote_kinds_are_the_documented_numbers() -> None:
    documented = {
        Fanout: 1, Send: 2, Join: 3, Leave: 4, Invoke: 5, Close: 6, CloseUser: 7, Result: 8
    }
    assert documented == remote._KINDS


# -- malformed commands ----------------------------------------------------------------------------

MALFORMED: dict[str, bytes] = {
    "empty": b"",
    "not_msgpack": b"\xc1",
    "truncated": encode(Send("Notify", ("x",)))[:-1],
    "trailing_bytes": encode(Send("Notify", ())) + b"\x00",
    "not_an_array": packed({"kind": 1}),  # type: ignore[arg-type]
    "a_bare_integer": packed(2),  # type: ignore[arg-type]
    "empty_array": packed([]),
    "kind_zero": packed([0]),
    "kind_nine": packed([9, None]),
    "kind_negative": packed([-1]),
    "kind_text": packed(["1", "T", [], [], [], 0]),
    "kind_float": packed([1.0, "T", [], [], [], 0]),
    "kind_nil": packed([None]),
    "fanout_too_short": packed([1, "T", []]),
    "fanout_target_not_text": packed([1, 5, [], [], [], 0]),
    "fanout_arguments_not_array": packed([1, "T", "x", [], [], 0]),
    "fanout_exclude_not_text": packed([1, "T", [], [1], [], 0]),
    "fanout_key_not_array": packed([1, "T", [], [], ["group"], 0]),
    "fanout_key_part_not_text": packed([1, "T", [], [], [["group", 1, "g"]], 0]),
    "fanout_index_past_keys": packed([1, "T", [], [], [["group", "t", "g"]], 1]),
    "fanout_index_negative": packed([1, "T", [], [], [], -1]),
    "fanout_index_not_integer": packed([1, "T", [], [], [], "0"]),
    "fanout_index_boolean": packed([1, "T", [], [], [["group", "t", "g"]], False]),
    "send_missing_arguments": packed([2, "T"]),
    "join_key_not_array": packed([3, "group:t:g"]),
    "join_missing_key": packed([3]),
    "leave_key_binary": packed([4, [b"group", b"t", b"g"]]),
    "invoke_timeout_text": packed([5, "T", [], "2"]),
    "invoke_timeout_boolean": packed([5, "T", [], True]),
    "close_flag_not_boolean": packed([6, None, 1]),
    "close_error_not_text": packed([6, 5, True]),
    "close_user_missing_flag": packed([7, "chat", "acme", "ada", None]),
    "result_missing_value": packed([8]),
    "deep_nesting": b"\x91" * 100_000 + b"\xc0",
    "invalid_utf8_target": b"\x93\x02\xa1\xff\x90",
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_remote_malformed_is_a_remote_command_error(data: bytes) -> None:
    with pytest.raises(RemoteCommandError):
        decode(data)


def test_remote_error_text_names_the_problem() -> None:
    with pytest.raises(RemoteCommandError, match="unknown command kind 9"):
        decode(packed([9]))
    with pytest.raises(RemoteCommandError, match="not MessagePack"):
        decode(b"\xc1")


# -- decode is total -------------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                  max_size=3),
    max_leaves=12,
)


def decodes_or_refuses(data: bytes) -> None:
    try:
        command = decode(data)
    except RemoteCommandError:
        return
    assert isinstance(command, Fanout | Send | Join | Leave | Invoke | Close | CloseUser | Result)


@total
@given(st.binary(max_size=200))
@example(b"")
@example(b"\x91" * 100_000 + b"\xc0")
@example(b"\xdd\xff\xff\xff\xff")  # an array claiming four billion items
@example(b"\x92\x01\xd4\xff\x00")  # an extension type after the kind
def test_remote_decode_of_any_bytes_is_total(data: bytes) -> None:
    decodes_or_refuses(data)


@total
@given(st.integers(min_value=-1, max_value=10) | st.booleans() | scalars,
       st.lists(values, max_size=7))
def test_remote_decode_of_any_array_is_total(kind: Any, items: list[Any]) -> None:
    decodes_or_refuses(packed([kind, *items]))


@total
@given(st.data())
def test_remote_decode_of_mutated_commands_is_total(data: st.DataObject) -> None:
    command, _ = data.draw(st.sampled_from(list(GOLDEN.values())))
    encoded = bytearray(encode(command))
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        position = data.draw(st.integers(min_value=0, max_value=max(0, len(encoded) - 1)))
        match data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"])):
            case "flip" if encoded:
                encoded[position] ^= data.draw(st.integers(min_value=1, max_value=255))
            case "insert":
                encoded.insert(position, data.draw(st.integers(min_value=0, max_value=255)))
            case "delete" if encoded:
                del encoded[position]
            case "truncate":
                del encoded[position:]
    decodes_or_refuses(bytes(encoded))


# -- round trips of any command --------------------------------------------------------------------

# NaN is not equal to itself; tuples come back as lists, so arguments nest lists only.
plain_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.binary(max_size=8)
)
plain_values = st.recursive(
    plain_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                  max_size=3),
    max_leaves=12,
)
arguments = st.lists(plain_values, max_size=4).map(tuple)
texts = st.text(max_size=12)
keys = st.lists(texts, min_size=1, max_size=3).map(tuple)


@st.composite
def fanouts(draw: st.DrawFn) -> Fanout:
    fanout_keys = draw(st.lists(keys, max_size=4).map(tuple))
    index = draw(st.integers(min_value=0, max_value=max(0, len(fanout_keys) - 1)))
    exclude = draw(st.lists(texts, max_size=3).map(tuple))
    return Fanout(draw(texts), draw(arguments), exclude, fanout_keys, index)


commands = st.one_of(
    fanouts(),
    st.builds(Send, texts, arguments),
    st.builds(Join, keys),
    st.builds(Leave, keys),
    st.builds(Invoke, texts, arguments, st.floats(min_value=0, max_value=1e6)),
    st.builds(Close, st.none() | texts, st.booleans()),
    st.builds(CloseUser, texts, texts, texts, st.none() | texts, st.booleans()),
    st.builds(Result, plain_values),
)


@total
@given(commands)
def test_remote_any_command_round_trips(command: Command) -> None:
    assert decode(encode(command)) == command


# -- encode refuses what MessagePack cannot carry, as documented -----------------------------------

UNENCODABLE: dict[str, Command] = {
    "a_set": Send("T", ({1, 2},)),
    "an_object": Fanout("T", (object(),)),
    "a_lone_surrogate": Fanout("T", ("\ud800",)),
    "a_lone_surrogate_in_a_key": Join(group_key("t", "\ud800")),
    "an_integer_of_65_bits": Fanout("T", (2**64,)),
    "a_negative_integer_of_65_bits": Send("T", (-(2**63) - 1,)),
    "an_integer_of_70_bits_in_a_result": Result(2**70),
    "a_huge_integer": Invoke("T", (10**100,), 1.0),
}


@pytest.mark.parametrize("command", UNENCODABLE.values(), ids=UNENCODABLE.keys())
def test_remote_encode_refuses_with_value_or_type_error(command: Command) -> None:
    # scaled.BackplaneRouter catches (TypeError, ValueError) around encode; anything
    # else escapes a send_group that has already delivered locally.
    with pytest.raises((ValueError, TypeError)):
        encode(command)


def test_remote_encode_keeps_an_infinite_timeout() -> None:
    assert decode(encode(Invoke("T", (), math.inf))) == Invoke("T", (), math.inf)

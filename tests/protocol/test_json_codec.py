"""The JSON hub protocol codec: golden vectors, malformed input, round-trips.

HubProtocol.md, "JSON Encoding". The golden vectors are ASP.NET Core's
(``JsonHubProtocolTestsBase.cs``, ``ProtocolTestData`` and ``OutOfOrderJsonTestData``):
exact JSON strings, checked in both directions where the mapping is one to one.
voisnap writes ``type`` first, then ``headers`` (if any), then the fields in
ASP.NET's order. Every malformed record raises ``RemoteProtocolError`` whose text
names the problem.
"""

from __future__ import annotations

import re
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from voisnap.protocol import (
    PING,
    AckMessage,
    CancelInvocationMessage,
    CloseMessage,
    CompletionMessage,
    HubMessage,
    InvocationMessage,
    JsonHubProtocol,
    PingMessage,
    RemoteProtocolError,
    SequenceMessage,
    StreamInvocationMessage,
    StreamItemMessage,
    TransferFormat,
)
from voisnap.protocol.framing import TextFraming

JSON = JsonHubProtocol()

# JsonHubProtocolTestsBase.TestHeaders and SerializedHeaders.
TEST_HEADERS = {
    "Foo": "Bar",
    "KeyWith\nNew\r\nLines": "Still Works",
    "ValueWithNewLines": "Also\nWorks\r\nFine",
}
SERIALIZED_HEADERS = (
    '"headers":{"Foo":"Bar","KeyWith\\nNew\\r\\nLines":"Still Works",'
    '"ValueWithNewLines":"Also\\nWorks\\r\\nFine"}'
)


def with_headers(message: HubMessage) -> HubMessage:
    return attrs.evolve(message, headers=dict(TEST_HEADERS))


# (name, message, exact JSON) — written and parsed.
GOLDEN: list[tuple[str, HubMessage, str]] = [
    (
        "invocation_has_invocation_id",
        InvocationMessage(invocation_id="123", target="Target", arguments=(1, "Foo")),
        '{"type":1,"invocationId":"123","target":"Target","arguments":[1,"Foo"]}',
    ),
    (
        "invocation_with_no_arguments",
        InvocationMessage(target="Target"),
        '{"type":1,"target":"Target","arguments":[]}',
    ),
    (
        "invocation_has_bool_argument",
        InvocationMessage(target="Target", arguments=(True,)),
        '{"type":1,"target":"Target","arguments":[true]}',
    ),
    (
        "invocation_has_null_argument",
        InvocationMessage(target="Target", arguments=(None,)),
        '{"type":1,"target":"Target","arguments":[null]}',
    ),
    (
        "invocation_has_stream_argument",
        InvocationMessage(target="Target", stream_ids=("__test_id__",)),
        '{"type":1,"target":"Target","arguments":[],"streamIds":["__test_id__"]}',
    ),
    (
        "invocation_has_stream_and_normal_argument",
        InvocationMessage(target="Target", arguments=(42,), stream_ids=("__test_id__",)),
        '{"type":1,"target":"Target","arguments":[42],"streamIds":["__test_id__"]}',
    ),
    (
        "invocation_has_multiple_streams",
        InvocationMessage(target="Target", stream_ids=("__test_id__", "__test_id2__")),
        '{"type":1,"target":"Target","arguments":[],"streamIds":["__test_id__","__test_id2__"]}',
    ),
    (
        "invocation_string_iso_date_argument",
        InvocationMessage(target="Method", arguments=("2016-05-10T13:51:20+12:34",)),
        '{"type":1,"target":"Method","arguments":["2016-05-10T13:51:20+12:34"]}',
    ),
    (
        "invocation_has_non_ascii_argument",
        InvocationMessage(target="Method", arguments=("מחרוזת כלשהי",)),
        '{"type":1,"target":"Method","arguments":["מחרוזת כלשהי"]}',
    ),
    (
        "invocation_has_object_argument",
        InvocationMessage(
            target="Target",
            arguments=({"stringProp": "SignalR!", "doubleProp": 6.2831853071, "intProp": 42,
                        "nullProp": None},),
        ),
        '{"type":1,"target":"Target","arguments":[{"stringProp":"SignalR!",'
        '"doubleProp":6.2831853071,"intProp":42,"nullProp":null}]}',
    ),
    (
        "invocation_has_headers",
        with_headers(InvocationMessage(invocation_id="1", target="Target", arguments=(1,))),
        '{"type":1,' + SERIALIZED_HEADERS
        + ',"invocationId":"1","target":"Target","arguments":[1]}',
    ),
    (
        "stream_item_has_integer_item",
        StreamItemMessage(invocation_id="123", item=1),
        '{"type":2,"invocationId":"123","item":1}',
    ),
    (
        "stream_item_has_string_item",
        StreamItemMessage(invocation_id="123", item="Foo"),
        '{"type":2,"invocationId":"123","item":"Foo"}',
    ),
    (
        "stream_item_has_bool_item",
        StreamItemMessage(invocation_id="123", item=True),
        '{"type":2,"invocationId":"123","item":true}',
    ),
    (
        "stream_item_has_null_item",
        StreamItemMessage(invocation_id="123", item=None),
        '{"type":2,"invocationId":"123","item":null}',
    ),
    (
        "stream_item_has_headers",
        with_headers(StreamItemMessage(invocation_id="123", item={"intProp": 42})),
        '{"type":2,' + SERIALIZED_HEADERS + ',"invocationId":"123","item":{"intProp":42}}',
    ),
    (
        "completion_has_integer_result",
        CompletionMessage.with_result("123", 1),
        '{"type":3,"invocationId":"123","result":1}',
    ),
    (
        "completion_has_string_result",
        CompletionMessage.with_result("123", "Foo"),
        '{"type":3,"invocationId":"123","result":"Foo"}',
    ),
    (
        "completion_has_bool_result",
        CompletionMessage.with_result("123", True),
        '{"type":3,"invocationId":"123","result":true}',
    ),
    (
        "completion_has_null_result",
        CompletionMessage.with_result("123", None),
        '{"type":3,"invocationId":"123","result":null}',
    ),
    (
        "completion_has_error",
        CompletionMessage.with_error("123", "Whoops!"),
        '{"type":3,"invocationId":"123","error":"Whoops!"}',
    ),
    (
        "completion_has_error_and_headers",
        with_headers(CompletionMessage.with_error("123", "Whoops!")),
        '{"type":3,' + SERIALIZED_HEADERS + ',"invocationId":"123","error":"Whoops!"}',
    ),
    (
        "completion_is_empty",
        CompletionMessage.empty("123"),
        '{"type":3,"invocationId":"123"}',
    ),
    (
        "completion_is_empty_with_headers",
        with_headers(CompletionMessage.empty("123")),
        '{"type":3,' + SERIALIZED_HEADERS + ',"invocationId":"123"}',
    ),
    (
        "stream_invocation_has_invocation_id",
        StreamInvocationMessage(invocation_id="123", target="Target", arguments=(1, "Foo")),
        '{"type":4,"invocationId":"123","target":"Target","arguments":[1,"Foo"]}',
    ),
    (
        "stream_invocation_has_bool_argument",
        StreamInvocationMessage(invocation_id="123", target="Target", arguments=(True,)),
        '{"type":4,"invocationId":"123","target":"Target","arguments":[true]}',
    ),
    (
        "stream_invocation_has_null_argument",
        StreamInvocationMessage(invocation_id="123", target="Target", arguments=(None,)),
        '{"type":4,"invocationId":"123","target":"Target","arguments":[null]}',
    ),
    (
        "stream_invocation_has_stream_argument",
        StreamInvocationMessage(invocation_id="123", target="Target", stream_ids=("__test_id__",)),
        '{"type":4,"invocationId":"123","target":"Target","arguments":[],"streamIds":["__test_id__"]}',
    ),
    (
        "stream_invocation_has_headers",
        with_headers(StreamInvocationMessage(invocation_id="123", target="Target")),
        '{"type":4,' + SERIALIZED_HEADERS
        + ',"invocationId":"123","target":"Target","arguments":[]}',
    ),
    (
        "cancel_invocation_has_invocation_id",
        CancelInvocationMessage(invocation_id="123"),
        '{"type":5,"invocationId":"123"}',
    ),
    (
        "cancel_invocation_has_headers",
        with_headers(CancelInvocationMessage(invocation_id="123")),
        '{"type":5,' + SERIALIZED_HEADERS + ',"invocationId":"123"}',
    ),
    ("ping", PingMessage(), '{"type":6}'),
    ("close", CloseMessage(), '{"type":7}'),
    ("close_has_error", CloseMessage(error="Error!"), '{"type":7,"error":"Error!"}'),
    ("close_has_error_empty_string", CloseMessage(error=""), '{"type":7,"error":""}'),
    (
        "close_has_allow_reconnect",
        CloseMessage(allow_reconnect=True),
        '{"type":7,"allowReconnect":true}',
    ),
    (
        "close_has_error_and_allow_reconnect",
        CloseMessage(error="Error!", allow_reconnect=True),
        '{"type":7,"error":"Error!","allowReconnect":true}',
    ),
    ("ack", AckMessage(sequence_id=1394), '{"type":8,"sequenceId":1394}'),
    ("sequence", SequenceMessage(sequence_id=1394), '{"type":9,"sequenceId":1394}'),
]

# ASP.NET's OutOfOrderJsonTestData plus a few read-only shapes: parsed, never written.
PARSE_ONLY: list[tuple[str, str, HubMessage]] = [
    (
        "invocation_arguments_first",
        '{ "arguments": [1,2], "type":1, "target": "Method" }',
        InvocationMessage(target="Method", arguments=(1, 2)),
    ),
    (
        "stream_invocation_arguments_first",
        '{ "type":4, "arguments": [1,2], "target": "Method", "invocationId": "3" }',
        StreamInvocationMessage(invocation_id="3", target="Method", arguments=(1, 2)),
    ),
    (
        "completion_result_first",
        '{ "type":3, "result": 10, "invocationId": "15" }',
        CompletionMessage.with_result("15", 10),
    ),
    (
        "stream_item_item_first",
        '{ "item": "foo", "invocationId": "1a", "type":2 }',
        StreamItemMessage(invocation_id="1a", item="foo"),
    ),
    (
        "extra_properties_are_ignored",
        '{"type":1,"invocationId":"42","target":"foo","arguments":[],"extraParameter":"1"}',
        InvocationMessage(invocation_id="42", target="foo"),
    ),
    (
        "invocation_with_empty_invocation_id_is_non_blocking",
        '{"type":1,"invocationId":"","target":"foo","arguments":[]}',
        InvocationMessage(invocation_id=None, target="foo"),
    ),
    (
        "invocation_with_null_invocation_id_is_non_blocking",
        '{"type":1,"invocationId":null,"target":"foo","arguments":[]}',
        InvocationMessage(invocation_id=None, target="foo"),
    ),
    (
        "empty_headers_are_no_headers",
        '{"type":5,"headers":{},"invocationId":"1"}',
        CancelInvocationMessage(invocation_id="1"),
    ),
    (
        "null_stream_ids_are_no_stream_ids",
        '{"type":1,"target":"foo","arguments":[],"streamIds":null}',
        InvocationMessage(target="foo"),
    ),
    (
        "completion_null_error_with_result",
        '{"type":3,"invocationId":"1","error":null,"result":5}',
        CompletionMessage.with_result("1", 5),
    ),
    (
        "close_allow_reconnect_false",
        '{"type":7,"allowReconnect":false}',
        CloseMessage(),
    ),
    ("ping_with_unknown_properties", '{"type":6,"x":[1,2,{"y":null}]}', PING),
]

# (name, record, exact error text)
MALFORMED: list[tuple[str, bytes, str]] = [
    ("not_an_object_null", b"null", "Expected a JSON object."),
    ("not_an_object_string", b'"foo"', "Expected a JSON object."),
    ("not_an_object_array", b"[42]", "Expected a JSON object."),
    ("missing_type", b"{}", "Missing required property 'type'."),
    ("null_type", b'{"type":null}', "Missing required property 'type'."),
    ("type_is_a_string", b'{"type":"1"}', "Expected 'type' to be of type Integer."),
    ("type_is_a_float", b'{"type":1.0}', "Expected 'type' to be of type Integer."),
    ("type_is_a_bool", b'{"type":true}', "Expected 'type' to be of type Integer."),
    ("unknown_type_zero", b'{"type":0}', "Unknown message type '0'."),
    ("unknown_type_ten", b'{"type":10}', "Unknown message type '10'."),
    ("invocation_missing_target", b'{"type":1}', "Missing required property 'target'."),
    (
        "invocation_invocation_id_not_a_string",
        b'{"type":1,"invocationId":42}',
        "Expected 'invocationId' to be of type String.",
    ),
    (
        "invocation_target_not_a_string",
        b'{"type":1,"invocationId":"42","target":42}',
        "Expected 'target' to be of type String.",
    ),
    (
        "invocation_missing_arguments",
        b'{"type":1,"invocationId":"42","target":"foo"}',
        "Missing required property 'arguments'.",
    ),
    (
        "invocation_arguments_not_an_array",
        b'{"type":1,"invocationId":"42","target":"foo","arguments":{}}',
        "Expected 'arguments' to be of type Array.",
    ),
    (
        "invocation_stream_ids_not_an_array",
        b'{"type":1,"target":"foo","arguments":[],"streamIds":"a"}',
        "Expected 'streamIds' to be of type Array.",
    ),
    (
        "invocation_stream_ids_not_strings",
        b'{"type":1,"target":"foo","arguments":[],"streamIds":["a",1]}',
        "Expected 'streamIds' to be an array of strings.",
    ),
    (
        "invocation_header_value_not_a_string",
        b'{"type":1,"headers":{"Foo":42},"target":"test","arguments":[]}',
        "Expected 'headers' to be an object of strings.",
    ),
    (
        "invocation_header_value_null",
        b'{"type":1,"headers":{"Foo":null},"target":"test","arguments":[]}',
        "Expected 'headers' to be an object of strings.",
    ),
    (
        "invocation_headers_not_an_object",
        b'{"type":1,"headers":["Foo"],"target":"test","arguments":[]}',
        "Expected 'headers' to be an object of strings.",
    ),
    (
        "stream_item_missing_invocation_id",
        b'{"type":2}',
        "Missing required property 'invocationId'.",
    ),
    (
        "stream_item_invocation_id_not_a_string",
        b'{"type":2,"invocationId":42}',
        "Expected 'invocationId' to be of type String.",
    ),
    (
        "stream_item_missing_item",
        b'{"type":2,"invocationId":"42"}',
        "Missing required property 'item'.",
    ),
    (
        "completion_missing_invocation_id",
        b'{"type":3}',
        "Missing required property 'invocationId'.",
    ),
    (
        "completion_invocation_id_not_a_string",
        b'{"type":3,"invocationId":42}',
        "Expected 'invocationId' to be of type String.",
    ),
    (
        "completion_error_not_a_string",
        b'{"type":3,"invocationId":"42","error":[]}',
        "Expected 'error' to be of type String.",
    ),
    (
        "completion_has_result_and_error",
        b'{"type":3,"invocationId":"42","error":"foo","result":true}',
        "The 'error' and 'result' properties are mutually exclusive.",
    ),
    (
        "completion_has_null_result_and_error",
        b'{"type":3,"invocationId":"42","error":"foo","result":null}',
        "The 'error' and 'result' properties are mutually exclusive.",
    ),
    (
        "stream_invocation_missing_invocation_id",
        b'{"type":4}',
        "Missing required property 'invocationId'.",
    ),
    (
        "stream_invocation_target_not_a_string",
        b'{"type":4,"invocationId":"42","target":42}',
        "Expected 'target' to be of type String.",
    ),
    (
        "stream_invocation_missing_arguments",
        b'{"type":4,"invocationId":"42","target":"foo"}',
        "Missing required property 'arguments'.",
    ),
    (
        "stream_invocation_arguments_not_an_array",
        b'{"type":4,"invocationId":"42","target":"foo","arguments":{}}',
        "Expected 'arguments' to be of type Array.",
    ),
    (
        "cancel_invocation_missing_invocation_id",
        b'{"type":5}',
        "Missing required property 'invocationId'.",
    ),
    ("close_error_not_a_string", b'{"type":7,"error":1}', "Expected 'error' to be of type String."),
    (
        "close_allow_reconnect_not_a_bool",
        b'{"type":7,"allowReconnect":1}',
        "Expected 'allowReconnect' to be of type Boolean.",
    ),
    ("ack_missing_sequence_id", b'{"type":8}', "Missing required property 'sequenceId'."),
    (
        "ack_sequence_id_not_an_integer",
        b'{"type":8,"sequenceId":"1"}',
        "Expected 'sequenceId' to be of type Integer.",
    ),
    (
        "sequence_sequence_id_is_a_bool",
        b'{"type":9,"sequenceId":true}',
        "Expected 'sequenceId' to be of type Integer.",
    ),
]

# Python's own JSON error text follows the prefix; only the prefix is voisnap's.
BAD_JSON: list[tuple[str, bytes]] = [
    ("truncated", b'{"type":3,"invocationId":"42","result":true'),
    ("unquoted_property", b'{"type":1,"target":"test",arguments:[]}'),
    ("empty_record", b""),
    ("trailing_garbage", b'{"type":6}x'),
    ("invalid_utf8", b'{"type":1,"target":"\xff","arguments":[]}'),
]


def ids(cases: list[tuple[Any, ...]]) -> list[str]:
    return [case[0] for case in cases]


# -- golden vectors ----------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "message", "expected"), GOLDEN, ids=ids(GOLDEN))
def test_json_codec_writes_golden_vector(name: str, message: HubMessage, expected: str) -> None:
    assert JSON.write(message) == expected.encode() + b"\x1e"


@pytest.mark.parametrize(("name", "message", "expected"), GOLDEN, ids=ids(GOLDEN))
def test_json_codec_parses_golden_vector(name: str, message: HubMessage, expected: str) -> None:
    assert JSON.parse(expected.encode()) == message


@pytest.mark.parametrize(("name", "record", "expected"), PARSE_ONLY, ids=ids(PARSE_ONLY))
def test_json_codec_parses_read_only_shape(name: str, record: str, expected: HubMessage) -> None:
    assert JSON.parse(record.encode()) == expected


def test_json_codec_writes_bytes_argument_as_base64() -> None:
    # System.Text.Json writes byte[] as base64 ("ByteArrProp":"AQID" in ASP.NET's vectors).
    message = InvocationMessage(target="Target", arguments=(b"\x01\x02\x03",))
    assert JSON.write(message) == b'{"type":1,"target":"Target","arguments":["AQID"]}\x1e'


def test_json_codec_writes_empty_invocation_id_as_non_blocking() -> None:
    message = InvocationMessage(invocation_id="", target="Target")
    assert JSON.write(message) == b'{"type":1,"target":"Target","arguments":[]}\x1e'


def test_json_codec_escapes_record_separator_inside_strings() -> None:
    record = JSON.write(InvocationMessage(target="T", arguments=("a\x1eb",)))
    assert record == b'{"type":1,"target":"T","arguments":["a\\u001eb"]}\x1e'
    assert JSON.parse(record[:-1]).arguments == ("a\x1eb",)


def test_json_codec_describes_itself() -> None:
    assert (JSON.name, JSON.version) == ("json", 1)
    assert JSON.transfer_format is TransferFormat.TEXT
    assert JSON.framing_class is TextFraming


# -- malformed input ---------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "record", "expected"), MALFORMED, ids=ids(MALFORMED))
def test_json_codec_rejects_malformed_record(name: str, record: bytes, expected: str) -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        JSON.parse(record)
    assert str(caught.value) == expected


@pytest.mark.parametrize(("name", "record"), BAD_JSON, ids=ids(BAD_JSON))
def test_json_codec_rejects_bad_json(name: str, record: bytes) -> None:
    with pytest.raises(RemoteProtocolError, match=re.compile(r"^Error reading JSON: .+\.$")):
        JSON.parse(record)


# -- round-trips -------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20) + 1, max_value=10**20 - 1)  # at most 20 digits
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=12,
)
headers = st.none() | st.dictionaries(st.text(), st.text(), min_size=1, max_size=3)
arguments = st.lists(json_values, max_size=4).map(tuple)
stream_ids = st.lists(st.text(), max_size=3).map(tuple)


def _completion(invocation_id: str, kind: str, payload: Any, error: str,
                head: dict[str, str] | None) -> CompletionMessage:
    match kind:
        case "result":
            message = CompletionMessage.with_result(invocation_id, payload)
        case "error":
            message = CompletionMessage.with_error(invocation_id, error)
        case _:
            message = CompletionMessage.empty(invocation_id)
    return attrs.evolve(message, headers=head)


MESSAGES: dict[str, st.SearchStrategy[HubMessage]] = {
    "invocation": st.builds(
        InvocationMessage,
        headers=headers,
        # "" is not round-trippable on purpose: it means non-blocking, like None.
        invocation_id=st.none() | st.text(min_size=1),
        target=st.text(),
        arguments=arguments,
        stream_ids=stream_ids,
    ),
    "stream_invocation": st.builds(
        StreamInvocationMessage,
        headers=headers,
        invocation_id=st.text(),
        target=st.text(),
        arguments=arguments,
        stream_ids=stream_ids,
    ),
    "stream_item": st.builds(
        StreamItemMessage, headers=headers, invocation_id=st.text(), item=json_values
    ),
    "completion": st.builds(
        _completion,
        st.text(),
        st.sampled_from(["result", "error", "empty"]),
        json_values,
        st.text(),
        headers,
    ),
    "cancel_invocation": st.builds(
        CancelInvocationMessage, headers=headers, invocation_id=st.text()
    ),
    "ping": st.just(PING),
    "close": st.builds(
        CloseMessage, error=st.none() | st.text(), allow_reconnect=st.booleans()
    ),
    "ack": st.builds(AckMessage, sequence_id=st.integers(min_value=0, max_value=2**63)),
    "sequence": st.builds(SequenceMessage, sequence_id=st.integers(min_value=0, max_value=2**63)),
}


@pytest.mark.parametrize("kind", list(MESSAGES))
@given(data=st.data())
def test_json_codec_round_trips_every_message_type(kind: str, data: st.DataObject) -> None:
    message = data.draw(MESSAGES[kind])
    record = JSON.write(message)
    # One record, one separator: nothing inside may look like a record end.
    assert record.index(b"\x1e") == len(record) - 1
    assert JSON.parse(record[:-1]) == message

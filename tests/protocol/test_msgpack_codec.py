"""The MessagePack hub protocol codec: golden vectors, malformed input, round-trips, clients.

HubProtocol.md, "MessagePack (MsgPack) encoding". The golden vectors are ASP.NET Core's
(``MessagePackHubProtocolTestBase.cs`` ``BaseTestData`` and ``MessagePackHubProtocolTests.cs``
``TestData``, base64 there, hex here, names kept), checked in both directions where voisnap
writes the same bytes, plus the spec's examples and the whole frames of the wire reference
(section 5). Every malformed record raises ``RemoteProtocolError`` with an exact text
(``BaseInvalidPayloads`` and more). Hypothesis round-trips every message type and fuzzes the
reader; framing is split at every byte boundary; a ``HubProtocolConnection`` shakes hands
for "messagepack" and reads records from the same bytes. Finally the codecs of the real
clients read what voisnap writes and write what voisnap reads: the official JS client's
(``msgpack_crosscheck.mjs`` under Node), pysignalr's and signalrcore's.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.support.node import JS_DIR, node_executable
from voisnap.protocol import (
    PING,
    AckMessage,
    CancelInvocationMessage,
    CloseMessage,
    CompletionMessage,
    EncodeError,
    HandshakeRequest,
    HubMessage,
    HubProtocolConnection,
    InvocationMessage,
    JsonHubProtocol,
    LocalProtocolError,
    PingMessage,
    RemoteProtocolError,
    SequenceMessage,
    StreamInvocationMessage,
    StreamItemMessage,
    TransferFormat,
)
from voisnap.protocol.connection import NEED_DATA
from voisnap.protocol.framing import BinaryFraming, encode_varint
from voisnap.protocol.msgpack_codec import MessagePackHubProtocol

MSGPACK = MessagePackHubProtocol()

# MessagePackHubProtocolTestBase.TestHeaders, and the map ASP.NET writes for them.
TEST_HEADERS = {
    "Foo": "Bar",
    "KeyWith\nNew\r\nLines": "Still Works",
    "ValueWithNewLines": "Also\nWorks\r\nFine",
}
H = (
    "83 a3 46 6f 6f a3 42 61 72 b2 4b 65 79 57 69 74 68 0a 4e 65 77 0d 0a 4c 69 6e 65 73 "
    "ab 53 74 69 6c 6c 20 57 6f 72 6b 73 b1 56 61 6c 75 65 57 69 74 68 4e 65 77 4c 69 6e 65 "
    "73 b0 41 6c 73 6f 0a 57 6f 72 6b 73 0d 0a 46 69 6e 65"
)
XYZ = "a3 78 79 7a"  # the string "xyz"
METHOD = "a6 6d 65 74 68 6f 64"  # "method"
TARGET = "a6 54 61 72 67 65 74"  # "Target"
TEST_ID = "ab 5f 5f 74 65 73 74 5f 69 64 5f 5f"  # "__test_id__"
TEST_ID2 = "ac 5f 5f 74 65 73 74 5f 69 64 32 5f 5f"  # "__test_id2__"
STRING = "a6 73 74 72 69 6e 67"  # "string"
ONE = "a3 4f 6e 65"  # TestEnum.One, which ASP.NET writes by name
ERROR_NOT_FOUND = "b0 45 72 72 6f 72 20 6e 6f 74 20 66 6f 75 6e 64 21"  # "Error not found!"
ERROR = "a6 45 72 72 6f 72 21"  # "Error!"
# MessagePackHubProtocolTests' CustomObject: six properties; DateTimeProp is a timestamp.
CUSTOM_OBJECT = (
    "86 aa 53 74 72 69 6e 67 50 72 6f 70 a8 53 69 67 6e 61 6c 52 21 aa 44 6f 75 62 6c 65 50 "
    "72 6f 70 cb 40 19 21 fb 54 42 cf 12 a7 49 6e 74 50 72 6f 70 2a ac 44 61 74 65 54 69 6d "
    "65 50 72 6f 70 d6 ff 58 ec 1c 80 a8 4e 75 6c 6c 50 72 6f 70 c0 ab 42 79 74 65 41 72 72 "
    "50 72 6f 70 c4 03 01 02 03"
)
CUSTOM_OBJECT_VALUE = {
    "StringProp": "SignalR!",
    "DoubleProp": 6.2831853071,
    "IntProp": 42,
    "DateTimeProp": "2017-04-11T00:00:00Z",  # new DateTime(2017, 4, 11), UTC
    "NullProp": None,
    "ByteArrProp": b"\x01\x02\x03",
}


def with_headers(message: HubMessage) -> HubMessage:
    return attrs.evolve(message, headers=dict(TEST_HEADERS))


def record(hex_text: str) -> bytes:
    return bytes.fromhex(hex_text)


def frame(hex_text: str) -> bytes:
    return BinaryFraming.frame(record(hex_text))


def ids(cases: list[tuple[Any, ...]]) -> list[str]:
    return [case[0] for case in cases]


# (ASP.NET's name, message, unframed record) — written and parsed.
GOLDEN: list[tuple[str, HubMessage, str]] = [
    (
        "InvocationWithNoHeadersAndNoArgs",
        InvocationMessage(invocation_id="xyz", target="method"),
        f"96 01 80 {XYZ} {METHOD} 90 90",
    ),
    (
        "InvocationWithNoHeadersNoIdAndNoArgs",
        InvocationMessage(target="method"),
        f"96 01 80 c0 {METHOD} 90 90",
    ),
    (
        "InvocationWithNoHeadersNoIdAndSingleIntArg",
        InvocationMessage(target="method", arguments=(42,)),
        f"96 01 80 c0 {METHOD} 91 2a 90",
    ),
    (
        "InvocationWithNoHeadersNoIdIntAndStringArgs",
        InvocationMessage(target="method", arguments=(42, "string")),
        f"96 01 80 c0 {METHOD} 92 2a {STRING} 90",
    ),
    (
        "InvocationWithStreamArgument",
        InvocationMessage(target="Target", stream_ids=("__test_id__",)),
        f"96 01 80 c0 {TARGET} 90 91 {TEST_ID}",
    ),
    (
        "InvocationWithStreamAndNormalArgument",
        InvocationMessage(target="Target", arguments=(42,), stream_ids=("__test_id__",)),
        f"96 01 80 c0 {TARGET} 91 2a 91 {TEST_ID}",
    ),
    (
        "InvocationWithMultipleStreams",
        InvocationMessage(target="Target", stream_ids=("__test_id__", "__test_id2__")),
        f"96 01 80 c0 {TARGET} 90 92 {TEST_ID} {TEST_ID2}",
    ),
    (
        "InvocationWithNoHeadersNoIdAndSingleNullArg",
        InvocationMessage(target="method", arguments=(None,)),
        f"96 01 80 c0 {METHOD} 91 c0 90",
    ),
    (
        "InvocationWithNoHeadersNoIdIntAndEnumArgs",
        InvocationMessage(target="method", arguments=(42, "One")),
        f"96 01 80 c0 {METHOD} 92 2a {ONE} 90",
    ),
    (
        "StreamItemWithNoHeadersAndIntItem",
        StreamItemMessage(invocation_id="xyz", item=42),
        f"94 02 80 {XYZ} 2a",
    ),
    (
        "StreamItemWithNoHeadersAndStringItem",
        StreamItemMessage(invocation_id="xyz", item="string"),
        f"94 02 80 {XYZ} {STRING}",
    ),
    (
        "StreamItemWithNoHeadersAndBoolItem",
        StreamItemMessage(invocation_id="xyz", item=True),
        f"94 02 80 {XYZ} c3",
    ),
    (
        "StreamItemWithNoHeadersAndNullItem",
        StreamItemMessage(invocation_id="xyz", item=None),
        f"94 02 80 {XYZ} c0",
    ),
    (
        "StreamItemWithNoHeadersAndEnumItem",
        StreamItemMessage(invocation_id="xyz", item="One"),
        f"94 02 80 {XYZ} {ONE}",
    ),
    (
        "CompletionWithNoHeadersAndError",
        CompletionMessage.with_error("xyz", "Error not found!"),
        f"95 03 80 {XYZ} 01 {ERROR_NOT_FOUND}",
    ),
    (
        "CompletionWithHeadersAndError",
        with_headers(CompletionMessage.with_error("xyz", "Error not found!")),
        f"95 03 {H} {XYZ} 01 {ERROR_NOT_FOUND}",
    ),
    (
        "CompletionWithNoHeadersAndNoResult",
        CompletionMessage.empty("xyz"),
        f"94 03 80 {XYZ} 02",
    ),
    (
        "CompletionWithHeadersAndNoResult",
        with_headers(CompletionMessage.empty("xyz")),
        f"94 03 {H} {XYZ} 02",
    ),
    (
        "CompletionWithNoHeadersAndIntResult",
        CompletionMessage.with_result("xyz", 42),
        f"95 03 80 {XYZ} 03 2a",
    ),
    (
        "CompletionWithNoHeadersAndStringResult",
        CompletionMessage.with_result("xyz", "string"),
        f"95 03 80 {XYZ} 03 {STRING}",
    ),
    (
        "CompletionWithNoHeadersAndBooleanResult",
        CompletionMessage.with_result("xyz", True),
        f"95 03 80 {XYZ} 03 c3",
    ),
    (
        # A result of null is a value, ResultKind 3 with nil, not a void completion.
        "CompletionWithNoHeadersAndNullResult",
        CompletionMessage.with_result("xyz", None),
        f"95 03 80 {XYZ} 03 c0",
    ),
    (
        "CompletionWithNoHeadersAndEnumResult",
        CompletionMessage.with_result("xyz", "One"),
        f"95 03 80 {XYZ} 03 {ONE}",
    ),
    (
        "SerializerCanSerializeTypesWithNoDefaultCtor",
        CompletionMessage.with_result("0", [42]),
        "95 03 80 a1 30 03 91 2a",
    ),
    (
        "StreamInvocationWithNoHeadersAndNoArgs",
        StreamInvocationMessage(invocation_id="xyz", target="method"),
        f"96 04 80 {XYZ} {METHOD} 90 90",
    ),
    (
        "StreamInvocationWithNoHeadersAndIntArg",
        StreamInvocationMessage(invocation_id="xyz", target="method", arguments=(42,)),
        f"96 04 80 {XYZ} {METHOD} 91 2a 90",
    ),
    (
        "StreamInvocationWithStreamArgument",
        StreamInvocationMessage(invocation_id="xyz", target="method", stream_ids=("__test_id__",)),
        f"96 04 80 {XYZ} {METHOD} 90 91 {TEST_ID}",
    ),
    (
        "StreamInvocationWithStreamAndNormalArgument",
        StreamInvocationMessage(
            invocation_id="xyz", target="method", arguments=(42,), stream_ids=("__test_id__",)
        ),
        f"96 04 80 {XYZ} {METHOD} 91 2a 91 {TEST_ID}",
    ),
    (
        "StreamInvocationWithNoHeadersAndIntAndStringArgs",
        StreamInvocationMessage(invocation_id="xyz", target="method", arguments=(42, "string")),
        f"96 04 80 {XYZ} {METHOD} 92 2a {STRING} 90",
    ),
    (
        "StreamInvocationWithNoHeadersAndEnumArg",
        StreamInvocationMessage(invocation_id="xyz", target="method", arguments=("One",)),
        f"96 04 80 {XYZ} {METHOD} 91 {ONE} 90",
    ),
    (
        "StreamInvocationWithNoHeadersAndNullArg",
        StreamInvocationMessage(invocation_id="xyz", target="method", arguments=(None,)),
        f"96 04 80 {XYZ} {METHOD} 91 c0 90",
    ),
    (
        "CancelInvocationWithNoHeaders",
        CancelInvocationMessage(invocation_id="xyz"),
        f"93 05 80 {XYZ}",
    ),
    (
        "CancelInvocationWithHeaders",
        with_headers(CancelInvocationMessage(invocation_id="xyz")),
        f"93 05 {H} {XYZ}",
    ),
    ("Ping", PING, "91 06"),
    ("CloseMessage", CloseMessage(), "93 07 c0 c2"),
    ("CloseMessage_HasError", CloseMessage(error="Error!"), f"93 07 {ERROR} c2"),
    ("CloseMessage_HasAllowReconnect", CloseMessage(allow_reconnect=True), "93 07 c0 c3"),
    (
        "CloseMessage_HasErrorAndAllowReconnect",
        CloseMessage(error="Error!", allow_reconnect=True),
        f"93 07 {ERROR} c3",
    ),
    # HubProtocol.md's Ack and Sequence examples use a uint8 (cc 24) "any unsigned int
    # size is fine"; a writer takes the smallest, the positive fixint.
    ("Ack", AckMessage(sequence_id=36), "92 08 24"),
    ("Sequence", SequenceMessage(sequence_id=1394), "92 09 cd 05 72"),
]

# Records voisnap reads but writes differently (or never writes): (name, record, message).
PARSE_ONLY: list[tuple[str, str, HubMessage]] = [
    # ASP.NET writes C# float as float32; voisnap's floats are float64.
    (
        "StreamItemWithNoHeadersAndFloatItem",
        f"94 02 80 {XYZ} ca 42 28 00 00",
        StreamItemMessage(invocation_id="xyz", item=42.0),
    ),
    (
        "CompletionWithNoHeadersAndFloatResult",
        f"95 03 80 {XYZ} 03 ca 42 28 00 00",
        CompletionMessage.with_result("xyz", 42.0),
    ),
    # A .NET DateTime is a timestamp on the wire and an ISO string in voisnap.
    (
        "CompletionWithNoHeadersAndCustomObjectResult",
        f"95 03 80 {XYZ} 03 {CUSTOM_OBJECT}",
        CompletionMessage.with_result("xyz", CUSTOM_OBJECT_VALUE),
    ),
    (
        "CompletionWithHeadersAndCustomObjectArrayResult",
        f"95 03 {H} {XYZ} 03 92 {CUSTOM_OBJECT} {CUSTOM_OBJECT}",
        with_headers(CompletionMessage.with_result("xyz", [CUSTOM_OBJECT_VALUE] * 2)),
    ),
    (
        "InvocationWithNoHeadersNoIdAndCustomObjectArg",
        f"96 01 80 c0 {METHOD} 93 2a {STRING} {CUSTOM_OBJECT} 90",
        InvocationMessage(target="method", arguments=(42, "string", CUSTOM_OBJECT_VALUE)),
    ),
    (
        "InvocationWithHeadersNoIdAndArrayOfCustomObjectArgs",
        f"96 01 {H} c0 {METHOD} 92 {CUSTOM_OBJECT} {CUSTOM_OBJECT} 90",
        with_headers(
            InvocationMessage(target="method", arguments=(CUSTOM_OBJECT_VALUE, CUSTOM_OBJECT_VALUE))
        ),
    ),
    (
        "StreamItemWithHeadersAndCustomObjectArrayItem",
        f"94 02 {H} {XYZ} 92 {CUSTOM_OBJECT} {CUSTOM_OBJECT}",
        with_headers(StreamItemMessage(invocation_id="xyz", item=[CUSTOM_OBJECT_VALUE] * 2)),
    ),
    (
        "StreamInvocationWithNoHeadersAndIntStringAndCustomObjectArgs",
        f"96 04 80 {XYZ} {METHOD} 93 2a {STRING} {CUSTOM_OBJECT} 90",
        StreamInvocationMessage(
            invocation_id="xyz", target="method", arguments=(42, "string", CUSTOM_OBJECT_VALUE)
        ),
    ),
    # ASP.NET's ParseMessageWithExtraData: items after the known ones are ignored.
    (
        "ParseMessageWithExtraData",
        f"98 01 80 {XYZ} {METHOD} 90 90 c3 a2 65 78",
        InvocationMessage(invocation_id="xyz", target="method"),
    ),
    # HubProtocol.md examples.
    (
        "spec_invocation_with_headers",
        f"96 01 82 a1 78 a1 79 a1 7a a1 7a {XYZ} {METHOD} 91 2a 90",
        InvocationMessage(
            headers={"x": "y", "z": "z"}, invocation_id="xyz", target="method", arguments=(42,)
        ),
    ),
    (
        "spec_completion_error",
        f"95 03 80 {XYZ} 01 a5 45 72 72 6f 72",
        CompletionMessage.with_error("xyz", "Error"),
    ),
    ("spec_close", f"92 07 {XYZ}", CloseMessage(error="xyz")),
    (
        "spec_close_allow_reconnect",
        f"93 07 {XYZ} c3",
        CloseMessage(error="xyz", allow_reconnect=True),
    ),
    ("spec_ack", "92 08 cc 24", AckMessage(sequence_id=36)),
    ("spec_sequence", "92 09 cc 13", SequenceMessage(sequence_id=19)),
    # What the JS client writes: five items when there are no upload streams, [7, nil].
    (
        "js_invocation_without_stream_ids",
        "95 01 80 a1 30 a3 41 64 64 92 28 02",
        InvocationMessage(invocation_id="0", target="Add", arguments=(40, 2)),
    ),
    (
        "js_stream_invocation_without_stream_ids",
        f"95 04 80 a1 31 {METHOD} 90",
        StreamInvocationMessage(invocation_id="1", target="method"),
    ),
    ("js_close", "92 07 c0", CloseMessage()),
    # Shapes the writer never makes.
    (
        "invocation_empty_invocation_id_is_non_blocking",
        f"96 01 80 a0 {METHOD} 90 90",
        InvocationMessage(target="method"),
    ),
    (
        "invocation_nil_stream_ids_are_none",
        f"96 01 80 c0 {METHOD} 90 c0",
        InvocationMessage(target="method"),
    ),
    ("close_nil_allow_reconnect_is_false", "93 07 c0 c0", CloseMessage()),
    ("close_empty_error_is_kept", "93 07 a0 c2", CloseMessage(error="")),
    ("ping_with_extra_items", "93 06 80 c0", PING),
    ("ack_uint64", "92 08 cf ff ff ff ff ff ff ff ff", AckMessage(sequence_id=2**64 - 1)),
    ("sequence_negative", "92 09 ff", SequenceMessage(sequence_id=-1)),
    (
        "completion_void_with_extra_result_ignored",
        f"95 03 80 {XYZ} 02 2a",
        CompletionMessage.empty("xyz"),
    ),
    # Timestamps (msgpack spec, "Timestamp extension type"): 32, 64 and 96-bit forms.
    (
        "timestamp32",
        f"94 02 80 {XYZ} d6 ff 00 00 00 00",
        StreamItemMessage(invocation_id="xyz", item="1970-01-01T00:00:00Z"),
    ),
    (
        "timestamp64_milliseconds",  # JS Date 2024-05-06T07:08:09.123Z
        f"94 02 80 {XYZ} d7 ff 1d 53 53 00 66 38 81 d9",
        StreamItemMessage(invocation_id="xyz", item="2024-05-06T07:08:09.123Z"),
    ),
    (
        "timestamp64_ticks",  # .NET ticks are 100 ns: 7 digits
        f"94 02 80 {XYZ} d7 ff 75 b3 c4 d0 66 38 81 d9",
        StreamItemMessage(invocation_id="xyz", item="2024-05-06T07:08:09.4936789Z"),
    ),
    (
        "timestamp96_before_1970",
        f"94 02 80 {XYZ} c7 0c ff 00 00 00 01 ff ff ff ff f4 82 70 28",
        StreamItemMessage(invocation_id="xyz", item="1963-11-22T18:30:00.000000001Z"),
    ),
    (
        "timestamp96_year_one",
        f"94 02 80 {XYZ} c7 0c ff 00 00 00 00 ff ff ff f1 88 6e 09 00",
        StreamItemMessage(invocation_id="xyz", item="0001-01-01T00:00:00Z"),
    ),
    (
        "timestamp_inside_map_and_array",
        f"94 02 80 {XYZ} 81 a1 74 91 d6 ff 00 00 00 3c",
        StreamItemMessage(invocation_id="xyz", item={"t": ["1970-01-01T00:01:00Z"]}),
    ),
    (
        "bin_is_bytes_and_str_is_text",
        f"94 02 80 {XYZ} 92 c4 02 00 ff a2 c3 a9",
        StreamItemMessage(invocation_id="xyz", item=[b"\x00\xff", "é"]),
    ),
]

# (name, record, exact error text). ASP.NET's BaseInvalidPayloads come first: voisnap checks
# the item count before the items, so several of them fail on their length.
MALFORMED: list[tuple[str, str, str]] = [
    (
        "MessageTypeString",
        "91 a3 66 6f 6f",
        "Expected 'messageType' to be of type Integer, got String.",
    ),
    (
        "HeadersNotAMap",
        "92 01 a3 66 6f 6f",
        "Expected at least 5 items in an Invocation message, got 2.",
    ),
    (
        "HeaderKeyInt",
        "92 01 82 2a a3 66 6f 6f",
        "Error reading MessagePack: truncated or malformed data (Unpack failed: incomplete input).",
    ),
    (
        "HeaderValueArray",
        "92 01 84 a3 66 6f 6f a3 66 6f 6f a3 66 6f 6f 90",
        "Error reading MessagePack: truncated or malformed data (Unpack failed: incomplete input).",
    ),
    (
        "InvocationMissingId",
        "92 01 80",
        "Expected at least 5 items in an Invocation message, got 2.",
    ),
    (
        "InvocationIdBoolean",
        "91 01 80 c2",
        "Error reading MessagePack: unexpected bytes after the message array.",
    ),
    (
        "InvocationTargetInt",
        "94 01 80 a3 61 62 63 2a",
        "Expected at least 5 items in an Invocation message, got 4.",
    ),
    (
        "StreamInvocationIdBoolean",
        "93 04 80 c2",
        "Expected at least 5 items in a StreamInvocation message, got 3.",
    ),
    (
        "StreamItemMissingId",
        "92 02 80",
        "Expected at least 4 items in a StreamItem message, got 2.",
    ),
    (
        "CompletionMissingId",
        "92 03 80",
        "Expected at least 4 items in a Completion message, got 2.",
    ),
    (
        "CompletionResultKindString",
        f"94 03 80 {XYZ} {XYZ}",
        "Expected 'resultKind' to be of type Integer, got String.",
    ),
    (
        "CompletionResultKindOutOfRange",
        f"94 03 80 {XYZ} 2a",
        "Invalid invocation result kind '42'.",
    ),
    (
        "CompletionErrorMissing",
        f"94 03 80 {XYZ} 01",
        "Expected at least 5 items in a non-void Completion message, got 4.",
    ),
    (
        "CompletionErrorInt",
        f"95 03 80 {XYZ} 01 2a",
        "Expected 'error' to be of type String, got Integer.",
    ),
    (
        "CompletionResultMissing",
        f"94 03 80 {XYZ} 03",
        "Expected at least 5 items in a non-void Completion message, got 4.",
    ),
    (
        "InvocationArgumentArrayNotAnArray",
        f"95 01 80 a3 61 62 63 {XYZ} 2a",
        "Expected 'arguments' to be of type Array, got Integer.",
    ),
    (
        "StreamInvocationArgumentArrayNotAnArray",
        f"95 04 80 a3 61 62 63 {XYZ} 2a",
        "Expected 'arguments' to be of type Array, got Integer.",
    ),
    # The same checks on records with all their items.
    ("not_an_array_map", "80", "Expected a MessagePack array, got Map."),
    ("not_an_array_int", "06", "Expected a MessagePack array, got Integer."),
    ("not_an_array_nil", "c0", "Expected a MessagePack array, got Nil."),
    ("empty_array", "90", "Expected a MessagePack array with a message type, got []."),
    ("message_type_bool", "91 c3", "Expected 'messageType' to be of type Integer, got Boolean."),
    (
        "message_type_float",
        "91 cb 3f f0 00 00 00 00 00 00",
        "Expected 'messageType' to be of type Integer, got Float.",
    ),
    ("unknown_type_zero", "91 00", "Unknown message type '0'."),
    ("unknown_type_ten", "91 0a", "Unknown message type '10'."),
    ("unknown_type_negative", "91 ff", "Unknown message type '-1'."),
    (
        "headers_nil",
        f"96 01 c0 c0 {METHOD} 90 90",
        "Expected 'headers' to be of type Map, got Nil.",
    ),
    (
        "headers_array",
        f"96 01 91 a1 78 c0 {METHOD} 90 90",
        "Expected 'headers' to be of type Map, got Array.",
    ),
    (
        "header_key_int",
        f"96 01 81 2a a1 78 c0 {METHOD} 90 90",
        "Expected map keys to be of type String, got Integer.",
    ),
    (
        "header_value_int",
        f"96 01 81 a1 78 2a c0 {METHOD} 90 90",
        "Expected header values to be of type String, got Integer.",
    ),
    (
        "invocation_id_bool",
        f"96 01 80 c2 {METHOD} 90 90",
        "Expected 'invocationId' to be of type String, got Boolean.",
    ),
    (
        "invocation_id_int",
        f"96 01 80 2a {METHOD} 90 90",
        "Expected 'invocationId' to be of type String, got Integer.",
    ),
    (
        "invocation_target_nil",
        "96 01 80 c0 c0 90 90",
        "Expected 'target' to be of type String, got Nil.",
    ),
    (
        "invocation_target_bin",
        "96 01 80 c0 c4 01 61 90 90",
        "Expected 'target' to be of type String, got Binary.",
    ),
    (
        "invocation_arguments_map",
        f"96 01 80 c0 {METHOD} 80 90",
        "Expected 'arguments' to be of type Array, got Map.",
    ),
    (
        "invocation_stream_ids_string",
        f"96 01 80 c0 {METHOD} 90 a1 31",
        "Expected 'streamIds' to be of type Array, got String.",
    ),
    (
        "invocation_stream_ids_not_strings",
        f"96 01 80 c0 {METHOD} 90 92 a1 31 02",
        "Expected stream ids to be of type String, got Integer.",
    ),
    (
        "stream_invocation_id_nil",
        f"96 04 80 c0 {METHOD} 90 90",
        "Expected 'invocationId' to be of type String, got Nil.",
    ),
    (
        "stream_invocation_target_int",
        f"96 04 80 {XYZ} 2a 90 90",
        "Expected 'target' to be of type String, got Integer.",
    ),
    (
        "stream_item_missing_item",
        f"93 02 80 {XYZ}",
        "Expected at least 4 items in a StreamItem message, got 3.",
    ),
    (
        "stream_item_id_nil",
        "94 02 80 c0 2a",
        "Expected 'invocationId' to be of type String, got Nil.",
    ),
    (
        "completion_id_nil",
        "94 03 80 c0 02",
        "Expected 'invocationId' to be of type String, got Nil.",
    ),
    (
        "completion_result_kind_bool",
        f"94 03 80 {XYZ} c3",
        "Expected 'resultKind' to be of type Integer, got Boolean.",
    ),
    ("completion_result_kind_zero", f"94 03 80 {XYZ} 00", "Invalid invocation result kind '0'."),
    (
        "completion_error_nil",
        f"95 03 80 {XYZ} 01 c0",
        "Expected 'error' to be of type String, got Nil.",
    ),
    (
        "cancel_invocation_missing_id",
        "92 05 80",
        "Expected at least 3 items in a CancelInvocation message, got 2.",
    ),
    (
        "cancel_invocation_id_int",
        "93 05 80 01",
        "Expected 'invocationId' to be of type String, got Integer.",
    ),
    ("close_missing_error", "91 07", "Expected at least 2 items in a Close message, got 1."),
    ("close_error_int", "92 07 01", "Expected 'error' to be of type String, got Integer."),
    # pysignalr writes Close as [7, {}]: its headers land where the error belongs.
    (
        "close_error_map",
        "92 07 80",
        "Expected 'error' to be of type String, got Map.",
    ),
    (
        "close_allow_reconnect_int",
        "93 07 c0 01",
        "Expected 'allowReconnect' to be of type Boolean, got Integer.",
    ),
    ("ack_missing_sequence_id", "91 08", "Expected at least 2 items in an Ack message, got 1."),
    (
        "ack_sequence_id_string",
        "92 08 a1 31",
        "Expected 'sequenceId' to be of type Integer, got String.",
    ),
    (
        "sequence_missing_sequence_id",
        "91 09",
        "Expected at least 2 items in a Sequence message, got 1.",
    ),
    (
        "sequence_sequence_id_bool",
        "92 09 c2",
        "Expected 'sequenceId' to be of type Integer, got Boolean.",
    ),
    (
        "sequence_sequence_id_float",
        "92 09 ca 3f 80 00 00",
        "Expected 'sequenceId' to be of type Integer, got Float.",
    ),
    # Values: map keys, extension types, timestamps.
    (
        "argument_map_key_int",
        f"96 01 80 c0 {METHOD} 91 81 01 02 90",
        "Expected map keys to be of type String, got Integer.",
    ),
    (
        "argument_map_key_bin",
        f"96 01 80 c0 {METHOD} 91 81 c4 01 61 02 90",
        "Expected map keys to be of type String, got Binary.",
    ),
    (
        "argument_map_key_nil",
        f"96 01 80 c0 {METHOD} 91 81 c0 02 90",
        "Expected map keys to be of type String, got Nil.",
    ),
    (
        "argument_map_key_array",
        f"96 01 80 c0 {METHOD} 91 81 90 02 90",
        "Expected map keys to be of type String, got Array.",
    ),
    (
        "argument_ext_type",
        f"96 01 80 c0 {METHOD} 91 d4 05 00 90",
        "Unsupported MessagePack extension type 5.",
    ),
    (
        "item_ext_type_negative",
        f"94 02 80 {XYZ} d5 80 00 00",
        "Unsupported MessagePack extension type -128.",
    ),
    (
        "timestamp_year_10000",
        f"94 02 80 {XYZ} c7 0c ff 00 00 00 00 00 00 00 3a ff f4 41 80",
        "A timestamp is outside the years 1 to 9999.",
    ),
    (
        "timestamp_before_year_one",
        f"94 02 80 {XYZ} c7 0c ff 00 00 00 00 ff ff ff f1 88 6e 08 ff",
        "A timestamp is outside the years 1 to 9999.",
    ),
    (
        "timestamp_wrong_size",
        f"94 02 80 {XYZ} d4 ff 00",
        "Error reading MessagePack: truncated or malformed data (Unpack failed: error = -1).",
    ),
    (
        "timestamp_nanoseconds_too_large",
        f"94 02 80 {XYZ} d7 ff ff ff ff ff 00 00 00 00",
        "Error reading MessagePack: truncated or malformed data (nanoseconds must be a "
        "non-negative integer less than 999999999.).",
    ),
    # Bytes that are not MessagePack, or more than one value.
    (
        "empty_record",
        "",
        "Error reading MessagePack: truncated or malformed data (Unpack failed: incomplete input).",
    ),
    (
        "truncated_array",
        f"94 02 80 {XYZ}",
        "Error reading MessagePack: truncated or malformed data (Unpack failed: incomplete input).",
    ),
    (
        "truncated_string",
        "92 07 a5 45 72",
        "Error reading MessagePack: truncated or malformed data (Unpack failed: incomplete input).",
    ),
    (
        "trailing_garbage",
        "91 06 00",
        "Error reading MessagePack: unexpected bytes after the message array.",
    ),
    (
        "two_arrays",
        "91 06 91 06",
        "Error reading MessagePack: unexpected bytes after the message array.",
    ),
    ("reserved_type_byte", "91 c1", "Error reading MessagePack: invalid type byte."),
    ("invalid_utf8", "92 07 a1 ff", "Error reading MessagePack: a string is not UTF-8."),
    (
        "too_deep",
        "92 02" + " 91" * 2000 + " c0",
        "Error reading MessagePack: values nested too deeply.",
    ),
]

# ASP.NET's MessageSizeData: whole frames, length prefix included.
MESSAGE_SIZES: list[tuple[str, HubMessage, int]] = [
    (
        "InvocationMessage_WithoutInvocationId",
        InvocationMessage(target="Target", arguments=(1,)),
        15,
    ),
    (
        "InvocationMessage_WithInvocationId",
        InvocationMessage(invocation_id="1", target="Target", arguments=(1,)),
        16,
    ),
    (
        "InvocationMessage_WithInvocationIdAndStreamId",
        InvocationMessage(invocation_id="1", target="Target", arguments=(1,), stream_ids=("2",)),
        18,
    ),
    ("CloseMessage_Empty", CloseMessage(), 5),
    ("CloseMessage_WithError", CloseMessage(error="error"), 10),
    ("StreamItemMessage_WithNullItem", StreamItemMessage(invocation_id="1", item=None), 7),
    ("StreamItemMessage_WithItem", StreamItemMessage(invocation_id="1", item=1), 7),
    ("CompletionMessage_Empty", CompletionMessage.empty("1"), 7),
    ("CompletionMessage_WithResult", CompletionMessage.with_result("1", 1), 8),
    ("CompletionMessage_WithError", CompletionMessage.with_error("1", "error"), 13),
    ("StreamInvocationMessage", StreamInvocationMessage(invocation_id="1", target="target"), 15),
    (
        "StreamInvocationMessage_WithStreamId",
        StreamInvocationMessage(invocation_id="1", target="target", stream_ids=("2",)),
        17,
    ),
    ("CancelInvocationMessage", CancelInvocationMessage(invocation_id="1"), 6),
    ("PingMessage", PING, 3),
]


# -- golden vectors ----------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "message", "expected"), GOLDEN, ids=ids(GOLDEN))
def test_msgpack_codec_writes_golden_vector(name: str, message: HubMessage, expected: str) -> None:
    assert MSGPACK.write(message).hex(" ") == frame(expected).hex(" ")


@pytest.mark.parametrize(("name", "message", "expected"), GOLDEN, ids=ids(GOLDEN))
def test_msgpack_codec_parses_golden_vector(name: str, message: HubMessage, expected: str) -> None:
    assert MSGPACK.parse(record(expected)) == message


@pytest.mark.parametrize(("name", "data", "expected"), PARSE_ONLY, ids=ids(PARSE_ONLY))
def test_msgpack_codec_parses_read_only_shape(name: str, data: str, expected: HubMessage) -> None:
    parsed = MSGPACK.parse(record(data))
    assert parsed == expected
    assert repr(parsed) == repr(expected)  # 42.0 stays a float, True stays a bool


@pytest.mark.parametrize(("name", "message", "size"), MESSAGE_SIZES, ids=ids(MESSAGE_SIZES))
def test_msgpack_codec_writes_asp_net_message_size(
    name: str, message: HubMessage, size: int
) -> None:
    assert len(MSGPACK.write(message)) == size


def test_msgpack_codec_writes_wire_reference_frames() -> None:
    # signalr-wire.md section 5, "Whole frames on the wire".
    assert MSGPACK.write(PING).hex(" ") == "02 91 06"
    assert MSGPACK.write(PingMessage()).hex(" ") == "02 91 06"
    assert MSGPACK.write(CompletionMessage.empty("xyz")).hex(" ") == "08 94 03 80 a3 78 79 7a 02"


def test_msgpack_codec_reads_wire_reference_close_and_writes_asp_net_close() -> None:
    # The wire reference's Close, "03 92 07 c0", is what the JS client sends; voisnap
    # writes ASP.NET's three-item form (see the module docstring of msgpack_codec).
    framing = BinaryFraming(max_message_size=100)
    framing.feed(bytes.fromhex("03 92 07 c0"))
    assert MSGPACK.parse(framing.next_record()) == CloseMessage()
    assert MSGPACK.write(CloseMessage()).hex(" ") == "04 93 07 c0 c2"


def test_msgpack_codec_writes_empty_invocation_id_as_nil() -> None:
    message = InvocationMessage(invocation_id="", target="method")
    assert MSGPACK.write(message) == frame(f"96 01 80 c0 {METHOD} 90 90")


def test_msgpack_codec_writes_empty_close_error_as_empty_string() -> None:
    assert MSGPACK.write(CloseMessage(error="")) == frame("93 07 a0 c2")


def test_msgpack_codec_completion_error_wins_over_result() -> None:
    message = CompletionMessage(invocation_id="xyz", error="boom", result=1, has_result=True)
    assert MSGPACK.write(message) == frame(f"95 03 80 {XYZ} 01 a4 62 6f 6f 6d")


def test_msgpack_codec_writes_plain_values_in_their_smallest_form() -> None:
    item = [b"\x01\x02", 1.5, -1, 2**63, "é", {"k": None}, False]
    written = MSGPACK.write(StreamItemMessage(invocation_id="xyz", item=item))
    assert written == frame(
        f"94 02 80 {XYZ} 97 c4 02 01 02 cb 3f f8 00 00 00 00 00 00 ff "
        "cf 80 00 00 00 00 00 00 00 a2 c3 a9 81 a1 6b c0 c2"
    )


def _item_of_record_length(length: int) -> StreamItemMessage:
    """A StreamItem whose record (without prefix) is exactly ``length`` bytes long."""
    for size in range(max(0, length - 10), length + 1):
        message = StreamItemMessage(invocation_id="", item=b"\x00" * size)
        if len(MSGPACK.write(message)) - len(encode_varint(length)) == length:
            return message
    raise AssertionError(f"no StreamItem record of {length} bytes")


@pytest.mark.parametrize("length", [6, 0x7F, 0x80, 0x3FFF, 0x4000, 0x1FFFFF, 0x200000])
def test_msgpack_codec_prefixes_every_length_like_binary_framing(length: int) -> None:
    # The writer looks one-byte prefixes up; at each VarInt size step it must agree
    # with encode_varint, and BinaryFraming must take the record back whole.
    message = _item_of_record_length(length)
    written = MSGPACK.write(message)
    prefix = encode_varint(length)
    assert written[: len(prefix)] == prefix
    framing = BinaryFraming(max_message_size=2**30)
    framing.feed(written)
    inner = framing.next_record()
    assert inner is not None and len(inner) == length and framing.buffered == 0
    assert MSGPACK.parse(inner) == message


def test_msgpack_codec_failed_write_leaves_the_shared_packer_clean() -> None:
    codec = MessagePackHubProtocol()
    with pytest.raises(EncodeError, match="can not serialize"):
        codec.write(StreamItemMessage(invocation_id="xyz", item=[1, object()]))
    with pytest.raises(EncodeError, match="out of range"):
        codec.write(StreamItemMessage(invocation_id="xyz", item=2**64))
    assert codec.write(CompletionMessage.empty("xyz")).hex(" ") == "08 94 03 80 a3 78 79 7a 02"


def test_msgpack_codec_refuses_to_write_a_non_message() -> None:
    with pytest.raises(LocalProtocolError, match="Can't write a HandshakeRequest"):
        MSGPACK.write(HandshakeRequest("messagepack", 1))  # type: ignore[arg-type]


def test_msgpack_codec_describes_itself() -> None:
    assert (MSGPACK.name, MSGPACK.version) == ("messagepack", 1)
    assert MSGPACK.transfer_format is TransferFormat.BINARY
    assert MSGPACK.framing_class is BinaryFraming


# -- malformed input ---------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "data", "expected"), MALFORMED, ids=ids(MALFORMED))
def test_msgpack_codec_rejects_malformed_record(name: str, data: str, expected: str) -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        MSGPACK.parse(record(data))
    assert str(caught.value) == expected


def _parse_or_refuse(data: bytes) -> None:
    try:
        MSGPACK.parse(data)
    except RemoteProtocolError as error:
        assert str(error)


@given(st.binary(max_size=64))
@example(b"\xdd\xff\xff\xff\xff")  # an array header claiming 4 G items
@example(b"\xc7\x00\xff")  # an empty timestamp
def test_msgpack_codec_parse_raises_only_remote_protocol_error(data: bytes) -> None:
    _parse_or_refuse(data)


@given(
    st.sampled_from([case[2] for case in GOLDEN] + [case[1] for case in PARSE_ONLY]),
    st.integers(min_value=0),
    st.integers(min_value=0, max_value=255),
)
def test_msgpack_codec_parse_of_a_damaged_record_raises_only_remote_protocol_error(
    hex_text: str, position: int, byte: int
) -> None:
    damaged = bytearray(record(hex_text))
    damaged[position % len(damaged)] = byte
    _parse_or_refuse(bytes(damaged))
    _parse_or_refuse(bytes(damaged[: position % len(damaged)]))


# -- round-trips -------------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.binary(max_size=8)
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=12,
)
headers = st.none() | st.dictionaries(st.text(), st.text(), min_size=1, max_size=3)
arguments = st.lists(values, max_size=4).map(tuple)
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
        StreamItemMessage, headers=headers, invocation_id=st.text(), item=values
    ),
    "completion": st.builds(
        _completion,
        st.text(),
        st.sampled_from(["result", "error", "empty"]),
        values,
        st.text(),
        headers,
    ),
    "cancel_invocation": st.builds(
        CancelInvocationMessage, headers=headers, invocation_id=st.text()
    ),
    "ping": st.just(PING),
    "close": st.builds(CloseMessage, error=st.none() | st.text(), allow_reconnect=st.booleans()),
    "ack": st.builds(AckMessage, sequence_id=st.integers(min_value=0, max_value=2**64 - 1)),
    "sequence": st.builds(
        SequenceMessage, sequence_id=st.integers(min_value=0, max_value=2**64 - 1)
    ),
}


@pytest.mark.parametrize("kind", list(MESSAGES))
@given(data=st.data())
def test_msgpack_codec_round_trips_every_message_type(kind: str, data: st.DataObject) -> None:
    message = data.draw(MESSAGES[kind])
    framing = BinaryFraming(max_message_size=2**20)
    framing.feed(MSGPACK.write(message))
    inner = framing.next_record()
    assert inner is not None and framing.buffered == 0  # exactly one whole record
    parsed = MSGPACK.parse(inner)
    assert parsed == message
    # == alone would let True become 1 or 1.0 become 1; repr tells them apart.
    assert repr(parsed) == repr(message)


# -- framing -----------------------------------------------------------------------------------

STREAM_MESSAGES: list[HubMessage] = [
    InvocationMessage(invocation_id="1", target="Send", arguments=("x" * 300, b"\x1e\x80")),
    PING,
    StreamItemMessage(invocation_id="2", item={"n": [1, 2.5, None]}),
    CompletionMessage.with_result("3", None),
    CloseMessage(error="bye", allow_reconnect=True),
]


def _drain(framing: BinaryFraming) -> list[HubMessage]:
    messages = []
    while (inner := framing.next_record()) is not None:
        messages.append(MSGPACK.parse(inner))
    return messages


def test_msgpack_codec_reads_several_records_from_one_buffer() -> None:
    framing = BinaryFraming(max_message_size=2**20)
    framing.feed(b"".join(MSGPACK.write(message) for message in STREAM_MESSAGES))
    assert _drain(framing) == STREAM_MESSAGES
    assert framing.buffered == 0


def test_msgpack_codec_reads_records_split_at_every_byte() -> None:
    stream = b"".join(MSGPACK.write(message) for message in STREAM_MESSAGES)
    assert MSGPACK.write(STREAM_MESSAGES[0])[0] & 0x80  # a two-byte prefix to split too
    for cut in range(len(stream) + 1):
        framing = BinaryFraming(max_message_size=2**20)
        framing.feed(stream[:cut])
        first = _drain(framing)
        framing.feed(stream[cut:])
        assert first + _drain(framing) == STREAM_MESSAGES, f"split at byte {cut}"


# -- the handshake, then MessagePack, through HubProtocolConnection ------------------------------

HANDSHAKE = b'{"protocol":"messagepack","version":1}\x1e'


def _connection(transfer_format: TransferFormat = TransferFormat.BINARY) -> HubProtocolConnection:
    return HubProtocolConnection(
        {"json": JsonHubProtocol(), "messagepack": MSGPACK},
        transfer_format=transfer_format,
        max_message_size=32 * 1024,
    )


def _events(connection: HubProtocolConnection) -> list[Any]:
    """Every event until more bytes are needed; the handshake is accepted on the way."""
    out = []
    while (event := connection.next_event()) is not NEED_DATA:
        out.append(event)
        if isinstance(event, HandshakeRequest):
            assert connection.accept(event) == b"{}\x1e"
    return out


def test_msgpack_codec_connection_handshake_then_records_in_the_same_bytes() -> None:
    messages = [InvocationMessage(invocation_id="0", target="Add", arguments=(40, 2)), PING]
    stream = HANDSHAKE + b"".join(MSGPACK.write(message) for message in messages)
    for cut in range(len(stream) + 1):
        connection = _connection()
        connection.receive_data(stream[:cut])
        events = _events(connection)
        connection.receive_data(stream[cut:])
        events += _events(connection)
        assert events == [HandshakeRequest("messagepack", 1), *messages], f"split at byte {cut}"
        assert connection.protocol is MSGPACK
    assert connection.send(CompletionMessage.with_result("0", 42)) == frame("95 03 80 a1 30 03 2a")


def test_msgpack_codec_connection_accepts_version_two() -> None:
    connection = _connection()
    connection.receive_data(b'{"protocol":"MessagePack","version":2}\x1e' + MSGPACK.write(PING))
    assert _events(connection) == [HandshakeRequest("MessagePack", 2), PING]
    assert connection.version == 2


def test_msgpack_codec_connection_refuses_a_text_transport() -> None:
    connection = _connection(TransferFormat.TEXT)
    connection.receive_data(HANDSHAKE)
    request = connection.next_event()
    with pytest.raises(RemoteProtocolError, match="does not support 'Binary' transfer format"):
        connection.accept(request)


def test_msgpack_codec_connection_reports_a_malformed_record() -> None:
    connection = _connection()
    connection.receive_data(HANDSHAKE + frame("91 0a"))
    assert _events_until_error(connection) == "Unknown message type '10'."


def _events_until_error(connection: HubProtocolConnection) -> str:
    try:
        _events(connection)
    except RemoteProtocolError as error:
        return str(error)
    raise AssertionError("no RemoteProtocolError")


# -- the Python clients' decoders read what voisnap writes ---------------------------------------

SERVER_TO_CLIENT: list[HubMessage] = [
    InvocationMessage(target="ReceiveMessage", arguments=("ann", "hi")),
    InvocationMessage(invocation_id="s1", target="GetAnswer", arguments=()),
    StreamItemMessage(invocation_id="1", item=7),
    CompletionMessage.with_result("0", 42),
    CompletionMessage.with_error("0", "boom"),
    CompletionMessage.empty("1"),
    PING,
    CloseMessage(error="bye", allow_reconnect=True),
]


def _fields(message: Any) -> dict[str, Any]:
    names = ("invocation_id", "target", "arguments", "item", "result", "error", "allow_reconnect")
    return {name: getattr(message, name) for name in names if hasattr(message, name)}


def test_msgpack_codec_pysignalr_decodes_what_voisnap_writes() -> None:
    from pysignalr.protocol.messagepack import MessagepackProtocol

    decoded = MessagepackProtocol().decode(b"".join(map(MSGPACK.write, SERVER_TO_CLIENT)))
    assert [_fields(message) for message in decoded] == [
        {"invocation_id": None, "target": "ReceiveMessage", "arguments": ["ann", "hi"]},
        {"invocation_id": "s1", "target": "GetAnswer", "arguments": []},
        {"invocation_id": "1", "item": 7},
        {"invocation_id": "0", "result": 42, "error": None},
        {"invocation_id": "0", "result": None, "error": "boom"},
        {"invocation_id": "1", "result": None, "error": None},
        {},
        {"error": "bye", "allow_reconnect": True},
    ]


def test_msgpack_codec_signalrcore_decodes_what_voisnap_writes() -> None:
    from signalrcore.protocol.messagepack_protocol import MessagePackHubProtocol as Signalrcore

    # parse_messages logs and drops what it cannot read, so the count is the check.
    decoded = Signalrcore().parse_messages(b"".join(map(MSGPACK.write, SERVER_TO_CLIENT)))
    assert [type(message).__name__ for message in decoded] == [
        "InvocationMessage",
        "InvocationMessage",
        "StreamItemMessage",
        "CompletionMessage",
        "CompletionMessage",
        "CompletionMessage",
        "PingMessage",
        "CloseMessage",
    ]
    assert [_fields(message) for message in decoded][1:5] == [
        {"invocation_id": "s1", "target": "GetAnswer", "arguments": []},
        {"invocation_id": "1", "item": 7},
        {"invocation_id": "0", "result": 42, "error": None},
        {"invocation_id": "0", "result": None, "error": "boom"},
    ]


# -- the official JS client's codec, under Node ------------------------------------------------

CROSSCHECK_SCRIPT = Path(__file__).with_name("msgpack_crosscheck.mjs")
MSGPACK_PACKAGE = JS_DIR / "node_modules" / "@microsoft" / "signalr-protocol-msgpack"

# (voisnap message, what the JS client's parseMessages makes of it). JS fills in
# `headers: {}` and `streamIds: []`; `undefined` fields are left out.
TO_JS: list[tuple[HubMessage, list[dict[str, Any]]]] = [
    (
        InvocationMessage(
            target="Send",
            arguments=(1, "two", 3.5, None, True, {"k": [1, {"n": None}]}, b"\x00\xff", -(2**31)),
        ),
        [{"type": 1, "headers": {}, "target": "Send", "streamIds": [],
          "arguments": [1, "two", 3.5, None, True, {"k": [1, {"n": None}]},
                        {"$bytes": "00ff"}, -(2**31)]}],
    ),
    (
        with_headers(
            InvocationMessage(invocation_id="s1", target="GetAnswer", arguments=("x" * 200,))
        ),
        [{"type": 1, "headers": TEST_HEADERS, "invocationId": "s1", "target": "GetAnswer",
          "arguments": ["x" * 200], "streamIds": []}],
    ),
    (
        StreamItemMessage(invocation_id="1", item=2**53 - 1),
        [{"type": 2, "headers": {}, "invocationId": "1", "item": 2**53 - 1}],
    ),
    (
        CompletionMessage.empty("1"),
        [{"type": 3, "headers": {}, "invocationId": "1"}],
    ),
    (
        CompletionMessage.with_result("2", None),
        [{"type": 3, "headers": {}, "invocationId": "2", "result": None}],
    ),
    (
        CompletionMessage.with_result("3", {"héllo": "✓", "f": 0.1}),
        [{"type": 3, "headers": {}, "invocationId": "3", "result": {"héllo": "✓", "f": 0.1}}],
    ),
    (
        CompletionMessage.with_error("4", "boom"),
        [{"type": 3, "headers": {}, "invocationId": "4", "error": "boom"}],
    ),
    # Parsed faithfully, but HubConnection tests `if (completionMessage.error)`: an empty
    # error resolves invoke() with undefined instead of rejecting it.
    (
        CompletionMessage.with_error("4", ""),
        [{"type": 3, "headers": {}, "invocationId": "4", "error": ""}],
    ),
    # The JS client reads no StreamInvocation or CancelInvocation: it logs and skips them.
    (StreamInvocationMessage(invocation_id="5", target="Counter"), []),
    (CancelInvocationMessage(invocation_id="5"), []),
    (PING, [{"type": 6}]),
    (CloseMessage(), [{"type": 7, "error": None, "allowReconnect": False}]),
    (
        CloseMessage(error="Server shut down.", allow_reconnect=True),
        [{"type": 7, "error": "Server shut down.", "allowReconnect": True}],
    ),
    (AckMessage(sequence_id=1394), [{"type": 8, "sequenceId": 1394}]),
    (SequenceMessage(sequence_id=2**32), [{"type": 9, "sequenceId": 2**32}]),
]

TO_JS_MESSAGES = [message for message, _ in TO_JS]
SKIPPED_BY_JS = {StreamInvocationMessage: 4, CancelInvocationMessage: 5}

# (message as the JS client's HubConnection builds it, what voisnap makes of its bytes).
FROM_JS: list[tuple[dict[str, Any], HubMessage]] = [
    (
        {"type": 1, "invocationId": "0", "target": "Add", "arguments": [40, 2]},
        InvocationMessage(invocation_id="0", target="Add", arguments=(40, 2)),
    ),
    (
        {"type": 1, "target": "Notify", "arguments": [
            {"$date": "2024-05-06T07:08:09.123Z"}, {"$date": "1969-07-20T20:17:40Z"},
            {"$bytes": "01ff"}, 1.5, -7, 2**40, None, True, "é", {"a": [1, {"b": None}]}]},
        InvocationMessage(target="Notify", arguments=(
            "2024-05-06T07:08:09.123Z", "1969-07-20T20:17:40Z", b"\x01\xff", 1.5, -7, 2**40,
            None, True, "é", {"a": [1, {"b": None}]})),
    ),
    (
        {"type": 1, "headers": {"a": "b"}, "invocationId": "1", "target": "Upload",
         "arguments": [], "streamIds": ["2"]},
        InvocationMessage(
            headers={"a": "b"}, invocation_id="1", target="Upload", stream_ids=("2",)
        ),
    ),
    (
        {"type": 4, "invocationId": "3", "target": "Counter", "arguments": [3]},
        StreamInvocationMessage(invocation_id="3", target="Counter", arguments=(3,)),
    ),
    (
        {"type": 4, "invocationId": "4", "target": "Sum", "arguments": [], "streamIds": ["5"]},
        StreamInvocationMessage(invocation_id="4", target="Sum", stream_ids=("5",)),
    ),
    (
        {"type": 2, "invocationId": "5", "item": {"x": 1}},
        StreamItemMessage(invocation_id="5", item={"x": 1}),
    ),
    ({"type": 3, "invocationId": "5"}, CompletionMessage.empty("5")),
    ({"type": 3, "invocationId": "s1", "result": 42}, CompletionMessage.with_result("s1", 42)),
    ({"type": 3, "invocationId": "s2", "result": None}, CompletionMessage.with_result("s2", None)),
    (
        {"type": 3, "invocationId": "s3", "error": "Client didn't provide a result."},
        CompletionMessage.with_error("s3", "Client didn't provide a result."),
    ),
    # The JS writer picks the result kind with `completionMessage.error ?`: "" is no error.
    ({"type": 3, "invocationId": "s4", "error": ""}, CompletionMessage.empty("s4")),
    ({"type": 5, "invocationId": "3"}, CancelInvocationMessage(invocation_id="3")),
    ({"type": 6}, PING),
    # The JS client writes [7, nil] whatever the message says.
    ({"type": 7, "error": "ignored", "allowReconnect": True}, CloseMessage()),
    ({"type": 8, "sequenceId": 5}, AckMessage(sequence_id=5)),
    ({"type": 9, "sequenceId": 2**33}, SequenceMessage(sequence_id=2**33)),
]


def _run_crosscheck(document: dict[str, Any]) -> dict[str, Any]:
    node = node_executable()
    if not (MSGPACK_PACKAGE / "package.json").is_file():
        pytest.fail(
            f"The npm package @microsoft/signalr-protocol-msgpack is not installed "
            f"({MSGPACK_PACKAGE} is missing). Run `npm ci` in {JS_DIR}.",
            pytrace=False,
        )
    try:
        result = subprocess.run(
            [node, str(CROSSCHECK_SCRIPT)],
            input=json.dumps(document),
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{CROSSCHECK_SCRIPT.name} did not finish within 60 s", pytrace=False)
    if result.returncode != 0:
        pytest.fail(
            f"{CROSSCHECK_SCRIPT.name} exited with {result.returncode}: {result.stderr}",
            pytrace=False,
        )
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def crosscheck() -> dict[str, Any]:
    written = [MSGPACK.write(message) for message in TO_JS_MESSAGES]
    return _run_crosscheck({
        "parse": [data.hex() for data in written] + [b"".join(written).hex()],
        "write": [message for message, _ in FROM_JS],
    })


def test_msgpack_codec_js_client_version(crosscheck: dict[str, Any]) -> None:
    assert crosscheck["version"] == "10.0.11"


@pytest.mark.parametrize("index", range(len(TO_JS)), ids=[type(m).__name__ for m in TO_JS_MESSAGES])
def test_msgpack_codec_js_client_parses_what_voisnap_writes(
    crosscheck: dict[str, Any], index: int
) -> None:
    message, expected = TO_JS[index]
    parsed = crosscheck["parsed"][index]
    assert parsed.get("messages") == expected, parsed
    if not expected:
        assert parsed["logs"] == [f"Unknown message type '{SKIPPED_BY_JS[type(message)]}' ignored."]


def test_msgpack_codec_js_client_parses_every_record_of_one_buffer(
    crosscheck: dict[str, Any]
) -> None:
    everything = crosscheck["parsed"][len(TO_JS)]
    assert everything.get("messages") == [m for _, expected in TO_JS for m in expected]


@pytest.mark.parametrize("index", range(len(FROM_JS)), ids=[str(m["type"]) for m, _ in FROM_JS])
def test_msgpack_codec_parses_what_the_js_client_writes(
    crosscheck: dict[str, Any], index: int
) -> None:
    written = crosscheck["written"][index]
    assert isinstance(written, str), written
    framing = BinaryFraming(max_message_size=2**20)
    framing.feed(bytes.fromhex(written))
    inner = framing.next_record()
    assert inner is not None and framing.buffered == 0
    parsed = MSGPACK.parse(inner)
    assert parsed == FROM_JS[index][1]
    assert repr(parsed) == repr(FROM_JS[index][1])

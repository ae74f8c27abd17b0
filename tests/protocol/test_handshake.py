"""The handshake record: parsing HandshakeRequest, writing HandshakeResponse.

HubProtocol.md, "Overview" (the handshake is always JSON ended by 0x1E, whatever
the hub protocol); the wire reference, section 3. Covered: valid requests
(unknown properties ignored), invalid JSON, not an object, missing or mistyped
``protocol``/``version``; the response bytes ``{}\\x1e`` and ``{"error":"..."}\\x1e``.
"""

from __future__ import annotations

import json

import pytest

from voisnap.protocol import HandshakeRequest, HandshakeResponse, RemoteProtocolError
from voisnap.protocol.handshake import parse_handshake_request, write_handshake_response

PROTOCOL_ERROR = "Missing required property 'protocol'. Expected a string."
VERSION_ERROR = "Missing required property 'version'. Expected an integer."


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (b'{"protocol":"json","version":1}', HandshakeRequest("json", 1)),
        (b'{"protocol":"messagepack","version":1}', HandshakeRequest("messagepack", 1)),
        (b'{"version":2,"protocol":"json"}', HandshakeRequest("json", 2)),
        (b'{ "protocol" : "JSON", "version" : 1 }', HandshakeRequest("JSON", 1)),
        (b'{"protocol":"json","version":1,"extra":[1,{"a":null}]}', HandshakeRequest("json", 1)),
    ],
    ids=["json", "messagepack", "version_first", "whitespace_and_case", "unknown_property"],
)
def test_handshake_parses_valid_request(record: bytes, expected: HandshakeRequest) -> None:
    assert parse_handshake_request(record) == expected


@pytest.mark.parametrize(
    "record",
    [b'{"protocol":"json","version":1', b"", b"\xff\xfe", b"protocol=json", b'{"type":6}x'],
    ids=["truncated", "empty", "not_utf8", "not_json", "trailing_garbage"],
)
def test_handshake_rejects_invalid_json(record: bytes) -> None:
    not_json = r"^The handshake request is not valid JSON: .+\.$"
    with pytest.raises(RemoteProtocolError, match=not_json):
        parse_handshake_request(record)


@pytest.mark.parametrize("record", [b"[]", b'"json"', b"1", b"null"])
def test_handshake_rejects_non_object(record: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        parse_handshake_request(record)
    assert str(caught.value) == "The handshake request must be a JSON object."


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (b'{"version":1}', PROTOCOL_ERROR),
        (b'{"protocol":null,"version":1}', PROTOCOL_ERROR),
        (b'{"protocol":1,"version":1}', PROTOCOL_ERROR),
        (b'{"protocol":["json"],"version":1}', PROTOCOL_ERROR),
        (b'{"protocol":"json"}', VERSION_ERROR),
        (b'{"protocol":"json","version":"1"}', VERSION_ERROR),
        (b'{"protocol":"json","version":1.5}', VERSION_ERROR),
        (b'{"protocol":"json","version":1.0}', VERSION_ERROR),
        (b'{"protocol":"json","version":true}', VERSION_ERROR),
        (b'{"protocol":"json","version":null}', VERSION_ERROR),
        (b"{}", PROTOCOL_ERROR),
    ],
    ids=[
        "missing_protocol", "null_protocol", "int_protocol", "array_protocol",
        "missing_version", "string_version", "float_version", "integral_float_version",
        "bool_version", "null_version", "empty_object",
    ],
)
def test_handshake_rejects_missing_or_mistyped_property(record: bytes, expected: str) -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        parse_handshake_request(record)
    assert str(caught.value) == expected


def test_handshake_success_response_is_empty_object() -> None:
    assert write_handshake_response(HandshakeResponse()) == b"{}\x1e"


def test_handshake_error_response_carries_the_error() -> None:
    response = HandshakeResponse(error="The protocol 'xml' is not supported.")
    assert write_handshake_response(response) == (
        b'{"error":"The protocol \'xml\' is not supported."}\x1e'
    )


def test_handshake_error_response_is_valid_json_for_any_text() -> None:
    text = 'quote " backslash \\ newline \n separator \x1e non-ascii é'
    data = write_handshake_response(HandshakeResponse(error=text))
    assert data.endswith(b"\x1e")
    assert data.count(b"\x1e") == 1
    assert json.loads(data[:-1]) == {"error": text}

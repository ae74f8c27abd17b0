"""The handshake: the first record each way, always JSON ended by 0x1E.

HubProtocol.md, "Overview": "the client sends a HandshakeRequest ... The server
replies with a HandshakeResponse", whatever hub protocol is chosen. An empty
response object means success; ``{"error": "..."}`` means the server refuses,
and closes the connection after sending it.
"""

from __future__ import annotations

import json

import attrs

from .errors import RemoteProtocolError
from .framing import RECORD_SEPARATOR_BYTES
from .limits import DEFAULT_LIMITS, DecodeLimits, InvalidJson, load_json


@attrs.frozen
class HandshakeRequest:
    protocol: str
    version: int


@attrs.frozen
class HandshakeResponse:
    error: str | None = None


def parse_handshake_request(
    record: bytes, limits: DecodeLimits = DEFAULT_LIMITS
) -> HandshakeRequest:
    """Parse one handshake record (without its separator)."""
    try:
        document = load_json(record, limits)
    except InvalidJson as error:
        raise RemoteProtocolError(f"The handshake request is not valid JSON: {error}.") from None
    if not isinstance(document, dict):
        raise RemoteProtocolError("The handshake request must be a JSON object.")
    protocol = document.get("protocol")
    version = document.get("version")
    if not isinstance(protocol, str):
        raise RemoteProtocolError("Missing required property 'protocol'. Expected a string.")
    if not isinstance(version, int) or isinstance(version, bool):
        raise RemoteProtocolError("Missing required property 'version'. Expected an integer.")
    return HandshakeRequest(protocol=protocol, version=version)


def write_handshake_response(response: HandshakeResponse) -> bytes:
    body = {} if response.error is None else {"error": response.error}
    return json.dumps(body, separators=(",", ":")).encode() + RECORD_SEPARATOR_BYTES

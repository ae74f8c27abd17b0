"""Tools for the hostile-input suite (issue 8): tokens, a strict JSON hub client,
the neighbour that proves a hostile case hurt nobody else, a MessagePack client,
raw HTTP on a socket, and hand-built WebSocket frames.

Everything here waits on the server, never on the wall clock: callers bound it
with ``trio.fail_after``.
"""

from __future__ import annotations

import base64
import itertools
import json
import struct
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import jwt
import msgpack
import trio
import trio_websocket

from tests.support.server import ServerProcess
from tests.support.ws_client import (
    CLOSE,
    COMPLETION,
    INVOCATION,
    MAX_WEBSOCKET_MESSAGE,
    RECEIVE_SIZE,
    RECORD_SEPARATOR,
    HttpResponse,
    HttpResponseReader,
    HubClient,
    with_query,
)

SECRET = "the-hostile-suite-secret-of-at-least-32-bytes"
OTHER_SECRET = "a-different-secret-of-at-least-32-bytes!!!!!"
HUB_PATH = "/hubs/playground"
NEIGHBOURS = "neighbours"
TIMEOUT = 10
# HubProtocol.md, "Close": what voisnap (like ASP.NET Core) says when a client's
# bytes are not a valid hub message.
INVALID_DATA = "Connection closed with an error. InvalidDataException:"
MESSAGEPACK_HANDSHAKE = '{"protocol":"messagepack","version":1}' + RECORD_SEPARATOR

_unique = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_unique)}"


# -- tokens -------------------------------------------------------------------------------------


def claims(user: str = "alice", tenant: str = "acme", ttl: float = 3600) -> dict[str, Any]:
    return {"sub": user, "tid": tenant, "roles": [], "exp": int(time.time() + ttl)}


def make_token(user: str = "alice", tenant: str = "acme", *, ttl: float = 3600,
               secret: str = SECRET, drop: Iterable[str] = ()) -> str:
    """An HS256 access token signed with the suite's secret (the server is
    started with ``VOISNAP_JWT_SECRET`` set to it); ``drop`` removes claims."""
    document = claims(user, tenant, ttl)
    for name in drop:
        document.pop(name)
    return jwt.encode(document, secret, algorithm="HS256")


def unsigned_token(user: str = "alice") -> str:
    """``alg: none`` with an empty signature."""

    def part(document: dict[str, Any]) -> str:
        raw = json.dumps(document, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims(user))}."


# -- a JSON hub client that accepts only JSON ---------------------------------------------------


def strict_loads(text: str) -> Any:
    """``json.loads`` without Python's extensions: NaN and Infinity are not JSON
    (RFC 8259 section 6), and a browser's ``JSON.parse`` throws on them."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"the server sent {constant!r}, which is not JSON")

    return json.loads(text, parse_constant=refuse)


class StrictHubClient(HubClient):
    """``HubClient`` whose records must be strict JSON."""

    async def _next_parsed(self) -> dict[str, Any]:
        if self._kept:
            return self._kept.popleft()
        return strict_loads(await self.receive_record())


@asynccontextmanager
async def open_client(server: ServerProcess, token: str | None, *, handshake: bool = True,
                      connection_token: str | None = None) -> AsyncIterator[StrictHubClient]:
    """A JSON hub client on a new WebSocket to the playground hub."""
    url = with_query(f"{server.ws_url}{HUB_PATH}", id=connection_token, access_token=token)
    async with trio_websocket.open_websocket_url(
        url, max_message_size=MAX_WEBSOCKET_MESSAGE, receive_buffer_size=RECEIVE_SIZE,
        message_queue_size=16, connect_timeout=TIMEOUT, disconnect_timeout=2,
    ) as websocket:
        client = StrictHubClient(websocket)
        if handshake:
            await client.handshake()
        yield client


async def receive_json_close(client: HubClient) -> dict[str, Any]:
    """The server's Close message: Completions, Receives and Pings before it
    are allowed (the server may have answered earlier records)."""
    while True:
        try:
            message = await client.receive_message()
        except trio_websocket.ConnectionClosed as error:
            raise AssertionError(f"the WebSocket ended without a Close message: {error}") from None
        if message.get("type") == CLOSE:
            return message


def assert_invalid_data_close(close: dict[str, Any], *mentions: str) -> None:
    """A Close for a client's bad bytes (HubProtocol.md, "Close"; ASP.NET's text)."""
    error = close.get("error", "")
    assert error.startswith(INVALID_DATA), close
    for text in mentions:
        assert text.lower() in error.lower(), (text, close)
    assert close.get("allowReconnect") is True, close


async def wait_ws_closed(client: HubClient) -> None:
    """The server ends the WebSocket (or resets the TCP connection)."""
    try:
        while True:
            await client.websocket.get_message()
    except trio_websocket.ConnectionClosed:
        return


# -- the neighbour ------------------------------------------------------------------------------


class Neighbour:
    """A well-behaved client (bob of tenant acme) in group "neighbours".

    ``check()`` is the proof every hostile case ends with: the server process
    is alive, the neighbour's Echo answers, and a group message sent by a fresh
    connection (carol, same tenant) reaches it.
    """

    def __init__(self, server: ServerProcess, client: StrictHubClient) -> None:
        self.server = server
        self.client = client
        self.checked = False

    def assert_server_alive(self) -> None:
        assert self.server.process is not None
        code = self.server.process.poll()
        assert code is None, (
            f"the server process exited with {code}:\n" + "".join(self.server.stderr_lines[-60:])
        )

    async def check(self) -> None:
        self.checked = True
        self.assert_server_alive()
        with trio.fail_after(TIMEOUT):
            probe = unique("echo")
            assert await self.client.call("Echo", probe) == probe
            payload = {"probe": unique("group")}
            async with open_client(self.server, make_token("carol")) as sender:
                await sender.call("SendToGroup", NEIGHBOURS, payload)
            await self._receive(payload)
        self.assert_server_alive()

    async def _receive(self, payload: Any) -> None:
        while True:
            message = await self.client.receive_message()
            assert message.get("type") != CLOSE, f"the neighbour was closed: {message}"
            if message.get("target") == "Receive" and message.get("arguments") == [payload]:
                return


@asynccontextmanager
async def open_neighbour(server: ServerProcess) -> AsyncIterator[Neighbour]:
    async with open_client(server, make_token("bob"), handshake=False) as client:
        with trio.fail_after(TIMEOUT):
            await client.handshake()
            await client.join_group(NEIGHBOURS)
        yield Neighbour(server, client)


# -- the server's log ---------------------------------------------------------------------------


def log_mark(server: ServerProcess) -> int:
    return len(server.stderr_lines)


def assert_quiet_log(server: ServerProcess, mark: int) -> None:
    """A client-caused error is logged at info level, in one line: no
    traceback, nothing at ERROR or CRITICAL, since ``mark``."""
    lines = server.stderr_lines[mark:]
    text = "".join(lines)
    assert "Traceback" not in text, text
    loud = [line for line in lines if " ERROR " in line or " CRITICAL " in line]
    assert not loud, text


# -- documents ----------------------------------------------------------------------------------


def nested_list(depth: int) -> Any:
    """``[[...[]...]]``: ``depth`` arrays, the innermost empty."""
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


def nested_json(depth: int) -> str:
    return "[" * depth + "]" * depth


def invocation_text(arguments_json: str, invocation_id: str = "1", target: str = "Echo") -> str:
    """An Invocation record whose arguments are given as raw JSON text."""
    return (f'{{"type":{INVOCATION},"invocationId":"{invocation_id}","target":"{target}",'
            f'"arguments":[{arguments_json}]}}{RECORD_SEPARATOR}')


def completion_for(messages: Iterable[dict[str, Any]], invocation_id: str) -> dict[str, Any] | None:
    for message in messages:
        if message.get("type") == COMPLETION and message.get("invocationId") == invocation_id:
            return message
    return None


# -- MessagePack over a WebSocket ---------------------------------------------------------------


def varint(value: int) -> bytes:
    """HubProtocol.md, "MessagePack (MsgPack) encoding": the record length prefix."""
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def read_varint(buffer: bytes) -> tuple[int, int] | None:
    """(length, prefix size) of a record's VarInt prefix, or None if incomplete."""
    length = 0
    for index, byte in enumerate(buffer[:5]):
        length |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            return length, index + 1
    return None


def split_binary_records(buffer: bytes) -> tuple[list[bytes], bytes]:
    """The complete length-prefixed records in ``buffer``, and the rest."""
    records = []
    while (prefix := read_varint(buffer)) is not None:
        length, used = prefix
        if len(buffer) < used + length:
            break
        records.append(buffer[used:used + length])
        buffer = buffer[used + length:]
    return records, buffer


def msgpack_invocation(invocation_id: str | None, target: str, arguments_packed: bytes,
                       count: int) -> bytes:
    """An Invocation ``[1, {}, id, target, [arguments], []]`` whose ``count``
    arguments are given already packed (so they may be nested at will)."""
    head = b"\x96" + msgpack.packb(1) + b"\x80" + msgpack.packb(invocation_id)
    head += msgpack.packb(target)
    assert count < 16
    return head + bytes((0x90 | count,)) + arguments_packed + b"\x90"


class MessagePackClient:
    """A hub client speaking MessagePack on a trio-websocket connection."""

    def __init__(self, websocket: trio_websocket.WebSocketConnection) -> None:
        self.websocket = websocket
        self._buffer = b""
        self._records: deque[list[Any]] = deque()

    async def handshake(self) -> None:
        await self.websocket.send_message(MESSAGEPACK_HANDSHAKE)
        response = await self.websocket.get_message()
        text = response.decode() if isinstance(response, bytes) else response
        assert text == "{}" + RECORD_SEPARATOR, text

    async def send_record(self, record: bytes) -> None:
        await self.websocket.send_message(varint(len(record)) + record)

    async def receive(self) -> list[Any]:
        """The next message that is not a Ping, as its MessagePack array."""
        while True:
            while not self._records:
                data = await self.websocket.get_message()
                assert isinstance(data, bytes), f"a text message on MessagePack: {data!r}"
                records, self._buffer = split_binary_records(self._buffer + data)
                self._records.extend(msgpack.unpackb(record, raw=False, strict_map_key=False)
                                     for record in records)
            message = self._records.popleft()
            if message[0] != 6:
                return message

    async def invoke(self, invocation_id: str, target: str, arguments_packed: bytes,
                     count: int = 1) -> list[Any]:
        """Send an Invocation; return its Completion ``[3, headers, id, kind, result?]``
        (fails on a Close)."""
        await self.send_record(msgpack_invocation(invocation_id, target, arguments_packed, count))
        while True:
            message = await self.receive()
            assert message[0] != 7, f"closed while waiting for a Completion: {message}"
            if message[0] == 3 and message[2] == invocation_id:
                return message

    async def receive_close(self) -> list[Any]:
        while True:
            try:
                message = await self.receive()
            except trio_websocket.ConnectionClosed as error:
                raise AssertionError(f"the WebSocket ended without a Close: {error}") from None
            if message[0] == 7:
                return message


@asynccontextmanager
async def open_msgpack_client(server: ServerProcess, token: str) -> AsyncIterator[
        MessagePackClient]:
    url = with_query(f"{server.ws_url}{HUB_PATH}", access_token=token)
    async with trio_websocket.open_websocket_url(
        url, max_message_size=MAX_WEBSOCKET_MESSAGE, connect_timeout=TIMEOUT,
        disconnect_timeout=2,
    ) as websocket:
        client = MessagePackClient(websocket)
        await client.handshake()
        yield client


# -- raw HTTP -----------------------------------------------------------------------------------


async def open_tcp(server: ServerProcess) -> trio.SocketStream:
    return await trio.open_tcp_stream("127.0.0.1", server.port)


def request_head(method: str, target: str, server: ServerProcess,
                 headers: Iterable[tuple[str, str]] = ()) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{server.port}"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def read_to_end(stream: trio.abc.ReceiveStream) -> bytes:
    """Everything until the server closes (a reset counts as a close)."""
    data = bytearray()
    while True:
        try:
            chunk = await stream.receive_some(RECEIVE_SIZE)
        except trio.BrokenResourceError:
            return bytes(data)
        if not chunk:
            return bytes(data)
        data += chunk


async def assert_closed_after(reader: HttpResponseReader) -> None:
    """The server closes the connection after the response just read: nothing
    more arrives, then EOF (or a reset)."""
    rest = bytes(reader.buffer) + await read_to_end(reader.stream)
    assert rest == b"", f"the server sent more after the response: {rest[:300]!r}"


async def read_response_or_eof(stream: trio.abc.ReceiveStream) -> HttpResponse | None:
    """One response, or None if the server closes without one."""
    reader = HttpResponseReader(stream)
    try:
        return await reader.read_response()
    except (EOFError, trio.BrokenResourceError):
        return None


# -- WebSocket frames by hand (RFC 6455 section 5.2) --------------------------------------------

CONTINUATION, TEXT, BINARY, CLOSE_FRAME, PING_FRAME, PONG_FRAME = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
SAMPLE_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 section 1.3
MASKING_KEY = b"\x37\xfa\x21\x3d"


def ws_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, masked: bool = True,
             key: bytes = MASKING_KEY) -> bytes:
    """One frame: FIN bit, opcode, MASK bit, 7/16/64-bit length, masking key, payload."""
    head = bytearray([(0x80 if fin else 0) | opcode])
    mask_bit = 0x80 if masked else 0
    length = len(payload)
    if length < 126:
        head.append(mask_bit | length)
    elif length < 1 << 16:
        head.append(mask_bit | 126)
        head += struct.pack("!H", length)
    else:
        head.append(mask_bit | 127)
        head += struct.pack("!Q", length)
    if not masked:
        return bytes(head) + payload
    body = bytes(byte ^ key[index % 4] for index, byte in enumerate(payload))
    return bytes(head) + key + body


class FrameSocket:
    """A WebSocket on a raw TCP stream after an upgrade by hand: frames out as
    given, server frames (unmasked) parsed one by one."""

    def __init__(self, stream: trio.SocketStream, buffered: bytes = b"") -> None:
        self.stream = stream
        self._buffer = bytearray(buffered)
        self._records: deque[dict[str, Any]] = deque()
        self.eof = False

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def _fill(self) -> bool:
        try:
            chunk = await self.stream.receive_some(RECEIVE_SIZE)
        except trio.BrokenResourceError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self._buffer += chunk
        return True

    async def _take(self, count: int) -> bytes | None:
        while len(self._buffer) < count:
            if not await self._fill():
                return None
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data

    async def next_frame(self) -> tuple[bool, int, bytes] | None:
        """(fin, opcode, payload) of the server's next frame; None at EOF."""
        head = await self._take(2)
        if head is None:
            return None
        fin, opcode, length = bool(head[0] & 0x80), head[0] & 0x0F, head[1] & 0x7F
        assert not head[1] & 0x80, "a server frame must not be masked"
        if length == 126:
            extended = await self._take(2)
            assert extended is not None, "EOF inside a frame header"
            (length,) = struct.unpack("!H", extended)
        elif length == 127:
            extended = await self._take(8)
            assert extended is not None, "EOF inside a frame header"
            (length,) = struct.unpack("!Q", extended)
        payload = await self._take(length)
        assert payload is not None, "EOF inside a frame"
        return fin, opcode, payload

    async def next_records(self) -> list[dict[str, Any]]:
        """The JSON records of the server's next data message (control frames
        other than Close are skipped; fails at a Close or EOF)."""
        parts: list[bytes] = []
        while True:
            frame = await self.next_frame()
            assert frame is not None, "the server closed the connection"
            fin, opcode, payload = frame
            assert opcode != CLOSE_FRAME, f"the server closed the WebSocket: {payload!r}"
            if opcode in (TEXT, BINARY, CONTINUATION):
                parts.append(payload)
                if fin:
                    text = b"".join(parts).decode()
                    return [strict_loads(r) for r in text.split(RECORD_SEPARATOR) if r]

    async def receive_completion(self, invocation_id: str) -> dict[str, Any]:
        """Read records until the Completion of ``invocation_id``; the records
        after it in the same message are kept for the next call."""
        while True:
            while not self._records:
                self._records.extend(await self.next_records())
            record = self._records.popleft()
            if completion_for([record], invocation_id) is not None:
                return record

    async def close_code(self) -> int | None:
        """The code of the server's WebSocket Close frame (data frames before
        it are skipped); fails if the connection ends without one."""
        while True:
            frame = await self.next_frame()
            assert frame is not None, "the server closed the TCP connection without a Close frame"
            _, opcode, payload = frame
            if opcode == CLOSE_FRAME:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None

    async def aclose(self) -> None:
        await self.stream.aclose()


async def open_frame_socket(server: ServerProcess, token: str) -> FrameSocket:
    """A raw TCP connection upgraded by hand to a WebSocket on the playground
    hub, with the JSON handshake done."""
    stream = await open_tcp(server)
    target = with_query(HUB_PATH, access_token=token)
    await stream.send_all(request_head("GET", target, server, [
        ("Upgrade", "websocket"), ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", SAMPLE_KEY), ("Sec-WebSocket-Version", "13"),
    ]))
    reader = HttpResponseReader(stream)
    response = await reader.read_response()
    assert response.status == 101, response
    socket = FrameSocket(stream, bytes(reader.buffer))
    await socket.send(ws_frame(TEXT, b'{"protocol":"json","version":1}\x1e'))
    assert await socket.next_records() == [{}]
    return socket

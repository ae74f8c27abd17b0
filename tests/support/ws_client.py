"""A small trio client for voisnap hubs over WebSockets (JSON hub protocol).

For the tests, the bench and the examples: it speaks just enough SignalR to
drive a hub by hand and to look at exactly what the server sends.

- ``negotiate()``: TransportProtocols.md, "POST [endpoint-base]/negotiate",
  over httpx;
- ``open_hub_client()``: a WebSocket (trio-websocket) to a hub path, with the
  ``access_token`` and ``id`` query parameters, and the JSON handshake
  (HubProtocol.md, "Overview");
- ``HubClient``: sends records, receives them split on the 0x1E record
  separator (HubProtocol.md, "JSON Encoding"; one WebSocket message may carry
  several records), and offers ``invoke``/``call``/``send``/``join_group``;
- ``RawWebSocket``: the same client side on a stream you own (wsproto on a trio
  stream), for what trio-websocket hides: a socket with a small receive
  buffer that stops reading (a slow consumer, ``open_raw_websocket``), or an
  upgrade sent on an HTTP keep-alive connection that has already served a
  request (``open_websocket_after_request``: voisnap serves it on the ASGI path);
- ``HttpResponseReader``: successive HTTP/1.1 responses off a raw stream;
- ``get_stats``/``wait_for_stats``: voisnap's ``GET /stats`` counters.

Typical use::

    async with open_hub_client(f"{server.ws_url}/hubs/playground", token=token) as client:
        assert await client.call("Echo", "hi") == "hi"
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

import httpx
import trio
import trio_websocket
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState as WSState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

RECORD_SEPARATOR = "\x1e"
HANDSHAKE = '{"protocol":"json","version":1}' + RECORD_SEPARATOR

# HubProtocol.md, "Message Types".
INVOCATION = 1
STREAM_ITEM = 2
COMPLETION = 3
STREAM_INVOCATION = 4
CANCEL_INVOCATION = 5
PING = 6
CLOSE = 7

# The server merges queued records into one WebSocket message, up to its
# outbox byte cap (1 MiB by default): accept far more than that.
MAX_WEBSOCKET_MESSAGE = 64 * 1024 * 1024
RECEIVE_SIZE = 256 * 1024


class HandshakeFailed(Exception):
    """The server answered the handshake with ``{"error": ...}``."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


class InvocationFailed(Exception):
    """A Completion came back with an ``error``."""

    def __init__(self, target: str, error: str) -> None:
        super().__init__(f"{target}: {error}")
        self.target = target
        self.error = error


# -- records ----------------------------------------------------------------------------------


def encode_record(document: Mapping[str, Any]) -> str:
    """One JSON record, separator included."""
    return json.dumps(document, separators=(",", ":")) + RECORD_SEPARATOR


def split_records(buffer: str) -> tuple[list[str], str]:
    """The complete records in ``buffer`` (without separators), and the rest."""
    *records, rest = buffer.split(RECORD_SEPARATOR)
    return records, rest


def with_query(base_url: str, **query: str | None) -> str:
    """``base_url`` (a URL or a path) with the query parameters that are not None added."""
    given = {name: value for name, value in query.items() if value is not None}
    if not given:
        return base_url
    joiner = "&" if urlsplit(base_url).query else "?"
    return base_url + joiner + urlencode(given)


# -- negotiate --------------------------------------------------------------------------------


async def negotiate(
    hub_http_url: str, token: str | None, *, version: int | str | None = 1
) -> httpx.Response:
    """POST ``{hub}/negotiate`` (``negotiateVersion`` omitted when ``version`` is None)."""
    params = {} if version is None else {"negotiateVersion": str(version)}
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient() as http:
        return await http.post(f"{hub_http_url}/negotiate", params=params, headers=headers)


# -- the hub client ---------------------------------------------------------------------------


class MessageSocket(Protocol):
    """What ``HubClient`` needs from a WebSocket: trio-websocket's
    ``WebSocketConnection`` and ``RawWebSocket`` both offer it."""

    async def send_message(self, message: str | bytes) -> None: ...

    async def get_message(self) -> str | bytes: ...

    async def aclose(self) -> None: ...


class HubClient:
    """One hub connection's client side, on an open WebSocket.

    Received records are parsed in arrival order; a message somebody waited
    past (``invoke`` skipping a ``Receive``) is kept for ``receive_message``.
    """

    def __init__(self, websocket: MessageSocket) -> None:
        self.websocket = websocket
        self._partial = ""
        self._records: deque[str] = deque()  # split, not yet parsed
        self._kept: deque[dict[str, Any]] = deque()  # parsed, not yet returned
        self._next_id = 0
        self.pings_received = 0

    # -- sending --

    async def send_raw(self, data: str | bytes) -> None:
        """Send ``data`` as one WebSocket message, exactly as given."""
        await self.websocket.send_message(data)

    async def send_record(self, document: Mapping[str, Any]) -> None:
        await self.send_raw(encode_record(document))

    async def handshake(self, protocol: str = "json", version: int = 1) -> dict[str, Any]:
        """Send the HandshakeRequest; return the (successful) HandshakeResponse."""
        await self.send_raw(encode_record({"protocol": protocol, "version": version}))
        response = json.loads(await self.receive_record())
        if "error" in response:
            raise HandshakeFailed(response["error"])
        return response

    async def send(self, target: str, *arguments: Any) -> None:
        """A non-blocking Invocation: no invocationId, no Completion."""
        await self.send_record({"type": INVOCATION, "target": target, "arguments": arguments})

    async def invoke(self, target: str, *arguments: Any) -> dict[str, Any]:
        """A blocking Invocation; returns its Completion message."""
        self._next_id += 1
        invocation_id = str(self._next_id)
        await self.send_record({
            "type": INVOCATION, "invocationId": invocation_id,
            "target": target, "arguments": arguments,
        })
        return await self.receive_completion(invocation_id)

    async def call(self, target: str, *arguments: Any) -> Any:
        """``invoke``, returning the result or raising ``InvocationFailed``."""
        completion = await self.invoke(target, *arguments)
        if "error" in completion:
            raise InvocationFailed(target, completion["error"])
        return completion.get("result")

    async def join_group(self, name: str) -> None:
        await self.call("JoinGroup", name)

    async def leave_group(self, name: str) -> None:
        await self.call("LeaveGroup", name)

    # -- receiving --

    async def receive_record(self) -> str:
        """The next record's text, without its separator."""
        while not self._records:
            message = await self.websocket.get_message()
            text = message.decode() if isinstance(message, bytes) else message
            records, self._partial = split_records(self._partial + text)
            self._records.extend(records)
        return self._records.popleft()

    async def _next_parsed(self) -> dict[str, Any]:
        if self._kept:
            return self._kept.popleft()
        return json.loads(await self.receive_record())

    async def receive_message(self, *, skip_pings: bool = True) -> dict[str, Any]:
        """The next hub message (Pings counted and skipped unless asked for)."""
        while True:
            message = await self._next_parsed()
            if message.get("type") == PING:
                self.pings_received += 1
                if skip_pings:
                    continue
            return message

    async def receive_completion(self, invocation_id: str) -> dict[str, Any]:
        """Read until the Completion for ``invocation_id``; keep what comes before it."""
        skipped: list[dict[str, Any]] = []
        try:
            while True:
                message = await self.receive_message()
                kind = message.get("type")
                if kind == COMPLETION and message.get("invocationId") == invocation_id:
                    return message
                if kind == CLOSE:
                    raise AssertionError(f"closed while waiting for a Completion: {message}")
                skipped.append(message)
        finally:
            self._kept.extendleft(reversed(skipped))

    async def receive_close(self) -> dict[str, Any]:
        """Read until the server's Close message; fail if anything but Pings and
        Receives comes first, or if the socket ends without one."""
        while True:
            try:
                message = await self.receive_message()
            except trio_websocket.ConnectionClosed as error:
                raise AssertionError(f"the WebSocket ended without a Close: {error}") from None
            if message.get("type") == CLOSE:
                return message
            if message.get("target") != "Receive":
                raise AssertionError(f"expected a Close message, got {message}")

    async def wait_closed(self) -> None:
        """Read (and drop) until the WebSocket is closed by the server."""
        try:
            while True:
                await self.websocket.get_message()
        except trio_websocket.ConnectionClosed:
            return

    async def aclose(self) -> None:
        await self.websocket.aclose()


@asynccontextmanager
async def open_hub_client(
    url: str,
    *,
    token: str | None = None,
    connection_token: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    handshake: bool = True,
) -> AsyncIterator[HubClient]:
    """A ``HubClient`` on a new WebSocket to ``url`` (``ws://host:port/hubs/name``).

    ``token`` goes in ``access_token`` (as browsers send it), ``connection_token``
    in ``id``. Raises ``trio_websocket.ConnectionRejected`` (with ``status_code``
    and ``body``) when the upgrade is refused.
    """
    target = with_query(url, id=connection_token, access_token=token)
    extra = [(name.encode(), value.encode()) for name, value in headers]
    async with trio_websocket.open_websocket_url(
        target,
        extra_headers=extra,
        max_message_size=MAX_WEBSOCKET_MESSAGE,
        receive_buffer_size=RECEIVE_SIZE,
        message_queue_size=16,
        connect_timeout=10,
        disconnect_timeout=5,
    ) as websocket:
        client = HubClient(websocket)
        if handshake:
            await client.handshake()
        yield client


# -- a client WebSocket on a stream you own ---------------------------------------------------


class UpgradeRefused(Exception):
    def __init__(self, status_code: int, body: bytes) -> None:
        super().__init__(f"upgrade refused with {status_code}: {body!r}")
        self.status_code = status_code
        self.body = body


class RawWebSocket:
    """The client side of a WebSocket (wsproto) on a trio stream the caller owns.

    ``upgrade()`` sends the request on ``stream`` whatever it carried before;
    ``get_message``/``send_message`` then work like trio-websocket's (one
    reader at a time). Nothing reads in the background: a ``RawWebSocket``
    nobody reads from leaves the server's data in the kernel buffers, which is
    what a slow consumer looks like.
    """

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self._messages: deque[str | bytes] = deque()
        self._parts: list[str | bytes] = []
        self.close_event: CloseConnection | None = None

    async def upgrade(
        self, host: str, target: str, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        extra = [(name.encode(), value.encode()) for name, value in headers]
        await self.stream.send_all(self.ws.send(Request(host=host, target=target,
                                                        extra_headers=extra)))
        status, body = 0, b""
        while True:
            for event in await self._events():
                match event:
                    case AcceptConnection():
                        return
                    case RejectConnection():
                        status = event.status_code
                        if not event.has_body:
                            raise UpgradeRefused(status, body)
                    case RejectData():
                        body += event.data
                        if event.body_finished:
                            raise UpgradeRefused(status, body)

    async def send_message(self, message: str | bytes) -> None:
        if isinstance(message, str):
            event: TextMessage | BytesMessage = TextMessage(data=message)
        else:
            event = BytesMessage(data=message)
        await self.stream.send_all(self.ws.send(event))

    async def get_message(self) -> str | bytes:
        """The next whole message; ``trio_websocket.ConnectionClosed`` once the
        server closed the WebSocket (or the TCP connection) and nothing is left."""
        while not self._messages:
            if self.close_event is not None:
                raise trio_websocket.ConnectionClosed(None)
            for event in await self._events():
                self._handle(event)
            if self.ws.state is WSState.REMOTE_CLOSING:
                # RFC 6455 5.5.1: answer the server's Close with a Close.
                await self.stream.send_all(self.ws.send(CloseConnection(code=1000)))
        return self._messages.popleft()

    def _handle(self, event: object) -> None:
        match event:
            case TextMessage() | BytesMessage():
                self._parts.append(event.data)
                if event.message_finished:
                    joiner = "" if isinstance(event, TextMessage) else b""
                    self._messages.append(joiner.join(self._parts))  # type: ignore[arg-type]
                    self._parts = []
            case CloseConnection():
                self.close_event = event
            # The server sends no WebSocket Pings (it keeps alive with hub Pings).

    async def _events(self) -> list[object]:
        data = await self.stream.receive_some(RECEIVE_SIZE)
        if not data:
            self.close_event = self.close_event or CloseConnection(code=1006)
            return []
        self.ws.receive_data(data)
        return list(self.ws.events())

    async def aclose(self) -> None:
        await self.stream.aclose()


async def open_raw_websocket(
    host: str,
    port: int,
    target: str,
    *,
    receive_buffer: int | None = None,
    headers: Iterable[tuple[str, str]] = (),
) -> RawWebSocket:
    """A TCP connection to ``host:port`` upgraded to a WebSocket on ``target``.

    ``receive_buffer`` sets SO_RCVBUF before connecting (it has to be set before
    the handshake to shrink the TCP window), so a client that stops reading
    fills up quickly.
    """
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    if receive_buffer is not None:
        sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, receive_buffer)
    try:
        await sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    websocket = RawWebSocket(trio.SocketStream(sock))
    await websocket.upgrade(f"{host}:{port}", target, headers)
    return websocket


async def open_websocket_after_request(
    host: str, port: int, target: str, *, first_target: str = "/healthz"
) -> tuple[RawWebSocket, HttpResponse]:
    """A keep-alive connection that first serves ``GET first_target`` and then
    upgrades to a WebSocket on ``target``: voisnap's front door has handed such
    a connection to hypercorn, so the WebSocket takes the ASGI path. Returns
    the WebSocket and the first response."""
    stream = await trio.open_tcp_stream(host, port)
    try:
        reader = HttpResponseReader(stream)
        await stream.send_all(
            f"GET {first_target} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
        )
        first = await reader.read_response()
        assert not reader.buffer, "nothing may follow the first response"
        websocket = RawWebSocket(stream)
        await websocket.upgrade(f"{host}:{port}", target)
    except BaseException:
        await stream.aclose()
        raise
    return websocket, first


# -- raw HTTP/1.1 responses -------------------------------------------------------------------


class HttpResponse:
    """One HTTP/1.1 response read off a raw stream (header names lower-cased)."""

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (the last one if repeated), or None."""
        values = [value for key, value in self.headers if key == name.lower()]
        return values[-1] if values else None

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"HttpResponse({self.status}, {self.headers}, {self.body[:200]!r})"


class HttpResponseReader:
    """Reads successive responses from one keep-alive connection: a status
    line, headers, and a ``Content-Length`` body (101 and 204 have none)."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def _fill(self) -> None:
        data = await self.stream.receive_some(RECEIVE_SIZE)
        if not data:
            raise EOFError(f"connection closed; unparsed: {bytes(self.buffer)!r}")
        self.buffer += data

    async def read_response(self) -> HttpResponse:
        while b"\r\n\r\n" not in self.buffer:
            await self._fill()
        head, _, rest = bytes(self.buffer).partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ")[1])
        headers = []
        for line in lines:
            name, _, value = line.partition(":")
            headers.append((name.strip().lower(), value.strip()))
        response = HttpResponse(status, headers, b"")
        length = 0 if status in (101, 204, 304) else int(response.header("content-length") or 0)
        self.buffer = bytearray(rest)
        while len(self.buffer) < length:
            await self._fill()
        response.body = bytes(self.buffer[:length])
        del self.buffer[:length]
        return response


# -- voisnap's counters -----------------------------------------------------------------------


async def get_stats(http_url: str) -> dict[str, Any]:
    """``GET /stats``: connections, negotiated tokens, and per-hub router counters."""
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{http_url}/stats")
    response.raise_for_status()
    return response.json()


async def wait_for_stats(
    http_url: str, condition: Callable[[dict[str, Any]], bool], *, poll_interval: float = 0.02
) -> dict[str, Any]:
    """Poll ``/stats`` until ``condition(stats)`` holds; return those stats.
    Unbounded: call it under ``trio.fail_after``."""
    while True:
        stats = await get_stats(http_url)
        if condition(stats):
            return stats
        await trio.sleep(poll_interval)

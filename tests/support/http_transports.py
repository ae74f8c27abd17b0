"""The client side of the HTTP transports, by hand, for tests that look at the wire.

TransportProtocols.md, "Long Polling" and "Server-Sent Events"; the statuses
and headers the official clients rely on are in the wire reference, section 2.

- ``negotiate_connection()``: ``POST {hub}/negotiate?negotiateVersion=1`` (httpx),
  the document as a dict;
- ``LongPollingClient``: polls (GET), sends (POST) and ends (DELETE) one
  connection with httpx, and speaks the JSON hub protocol over them
  (handshake, invocations, received records);
- ``EventStream``: a Server-Sent Events GET on a raw socket, parsed with h11 so
  that the test sees the response head and each chunk the server wrote;
  sends go through ``post_records()`` (POST), as the clients do;
- ``RawPoll``: a poll on a raw socket; the test knows when the server holds
  it (``Expect: 100-continue``), and can reset it mid-request.

Nothing here sleeps: every method waits for the server, and callers bound it
with ``trio.fail_after``.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
from collections import deque
from typing import Any
from urllib.parse import urlencode, urlsplit

import h11
import httpx
import trio

from tests.support.ws_client import (
    RECORD_SEPARATOR,
    HttpResponse,
    HttpResponseReader,
    encode_record,
    split_records,
)

HANDSHAKE_JSON = '{"protocol":"json","version":1}' + RECORD_SEPARATOR
LINGER_ABORT = struct.pack("ii", 1, 0)
# Polls are held by the server; the test's own deadline bounds them, not httpx's.
NO_TIMEOUT = httpx.Timeout(None)
INVOCATION, COMPLETION, PING = 1, 3, 6  # HubProtocol.md, "Message Types"


def bearer(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


async def negotiate_connection(
    http: httpx.AsyncClient, hub_url: str, token: str, **query: str
) -> dict[str, Any]:
    """A successful negotiate (version 1): the response document."""
    response = await http.post(
        f"{hub_url}/negotiate", params={"negotiateVersion": "1", **query}, headers=bearer(token)
    )
    assert response.status_code == 200, (response.status_code, response.text)
    return response.json()


class LongPollingClient:
    """One long-polling connection, negotiated and started (first poll done)."""

    def __init__(self, http: httpx.AsyncClient, hub_url: str, token: str,
                 connection_token: str) -> None:
        self.http = http
        self.hub_url = hub_url
        self.token = token
        self.connection_token = connection_token
        self._partial = ""
        self._records: deque[dict[str, Any]] = deque()
        self._next_id = 0
        self.connection_id = ""

    @classmethod
    async def open(cls, http: httpx.AsyncClient, hub_url: str, token: str,
                   *, handshake: bool = True) -> LongPollingClient:
        """Negotiate, send the first poll (which starts the connection) and,
        unless told not to, complete the JSON handshake."""
        document = await negotiate_connection(http, hub_url, token)
        client = cls(http, hub_url, token, document["connectionToken"])
        client.connection_id = document["connectionId"]
        first = await client.poll()
        assert (first.status_code, first.content) == (200, b""), first
        if handshake:
            await client.handshake()
        return client

    # -- requests ---------------------------------------------------------------------------------

    def params(self, **extra: str) -> dict[str, str]:
        return {"id": self.connection_token, **extra}

    async def poll(self, token: str | None = None) -> httpx.Response:
        """One poll, as the JS client sends it (with its ``_`` cache-buster)."""
        return await self.http.get(
            self.hub_url, params=self.params(_="1"), headers=bearer(token or self.token),
            timeout=NO_TIMEOUT,
        )

    async def post(self, data: str | bytes, token: str | None = None) -> httpx.Response:
        content = data.encode() if isinstance(data, str) else data
        return await self.http.post(
            self.hub_url, params=self.params(), content=content,
            headers={**bearer(token or self.token), "Content-Type": "text/plain;charset=UTF-8"},
        )

    async def delete(self, token: str | None = None) -> httpx.Response:
        return await self.http.delete(
            self.hub_url, params=self.params(), headers=bearer(token or self.token)
        )

    # -- the JSON hub protocol over polls ---------------------------------------------------------

    async def handshake(self) -> None:
        sent = await self.post(HANDSHAKE_JSON)
        assert sent.status_code == 200, sent
        response = await self.receive_message(skip_pings=False)
        assert response == {}, response

    async def send_record(self, document: dict[str, Any]) -> None:
        sent = await self.post(encode_record(document))
        assert sent.status_code == 200, (sent.status_code, sent.text)

    async def invoke(self, target: str, *arguments: Any) -> dict[str, Any]:
        """A blocking Invocation; its Completion (records before it are kept)."""
        self._next_id += 1
        invocation_id = str(self._next_id)
        await self.send_record({"type": INVOCATION, "invocationId": invocation_id,
                                "target": target, "arguments": list(arguments)})
        kept: list[dict[str, Any]] = []
        try:
            while True:
                message = await self.receive_message()
                completes = message.get("invocationId") == invocation_id
                if message.get("type") == COMPLETION and completes:
                    return message
                kept.append(message)
        finally:
            self._records.extendleft(reversed(kept))

    async def call(self, target: str, *arguments: Any) -> Any:
        completion = await self.invoke(target, *arguments)
        assert "error" not in completion, completion
        return completion.get("result")

    async def receive_message(self, *, skip_pings: bool = True) -> dict[str, Any]:
        """The next record, polling as often as it takes."""
        while True:
            while not self._records:
                response = await self.poll()
                assert response.status_code == 200, (response.status_code, response.text)
                records, self._partial = split_records(self._partial + response.text)
                self._records.extend(json.loads(record) for record in records)
            message = self._records.popleft()
            if skip_pings and message.get("type") == PING:
                continue
            return message


class EventStream:
    """A Server-Sent Events GET on a raw socket; h11 parses the response."""

    def __init__(self, stream: trio.SocketStream, sock: trio.socket.SocketType) -> None:
        self.stream = stream
        self.sock = sock
        self.h11 = h11.Connection(h11.CLIENT)
        self.response: h11.Response | None = None
        self.chunks: list[bytes] = []  # body pieces as h11 parsed them, while record_chunks
        self.record_chunks = True
        self.received_bytes = 0
        self.ended = False
        self._buffer = b""

    @classmethod
    async def open(cls, hub_url: str, connection_token: str | None, token: str | None,
                   *, receive_buffer: int | None = None,
                   accept: str = "text/event-stream") -> EventStream:
        """Connect, send the GET and read the response head."""
        parts = urlsplit(hub_url)
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
        if receive_buffer is not None:
            sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, receive_buffer)
        await sock.connect((parts.hostname, parts.port))
        events = cls(trio.SocketStream(sock), sock)
        query = {} if connection_token is None else {"id": connection_token}
        target = parts.path + ("?" + urlencode(query) if query else "")
        headers = [("Host", parts.netloc), ("Accept", accept), *bearer(token).items()]
        await events.stream.send_all(events.h11.send(h11.Request(
            method="GET", target=target, headers=headers)))
        await events.stream.send_all(events.h11.send(h11.EndOfMessage()))
        while events.response is None:
            await events._next()
        return events

    @property
    def status(self) -> int:
        assert self.response is not None
        return self.response.status_code

    def header(self, name: str) -> str | None:
        assert self.response is not None
        for key, value in self.response.headers:
            if key.decode() == name.lower():
                return value.decode()
        return None

    async def _next(self) -> None:
        """Parse one more h11 event (reading from the socket if needed)."""
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError:  # the body was cut off
                self.ended = True
                return
            if event is h11.NEED_DATA:
                try:
                    data = await self.stream.receive_some(65536)
                except trio.BrokenResourceError:  # reset
                    data = b""
                self.h11.receive_data(data)
                continue
            break
        match event:
            case h11.Response() | h11.InformationalResponse():
                self.response = event  # type: ignore[assignment]
            case h11.Data():
                data = bytes(event.data)
                self.received_bytes += len(data)
                if self.record_chunks:
                    self.chunks.append(data)
                self._buffer += data
            case h11.EndOfMessage() | h11.ConnectionClosed():
                self.ended = True

    async def read_bytes(self, count: int) -> bytes:
        """At least ``count`` body bytes from the start of the body (all so far)."""
        while self.received_bytes < count and not self.ended:
            await self._next()
        return b"".join(self.chunks)

    async def next_event(self) -> str | None:
        """The next event's data (its ``data:`` lines joined with "\\n"), or None
        once the stream ended."""
        while True:
            head, separator, rest = self._buffer.partition(b"\r\n\r\n")
            if separator:
                self._buffer = rest
                lines = [line for line in head.split(b"\r\n") if line.startswith(b"data:")]
                if lines:
                    return "\n".join(line[5:].removeprefix(b" ").decode() for line in lines)
                continue  # a comment (":") or an empty event
            if self.ended:
                return None
            await self._next()

    async def next_records(self) -> list[dict[str, Any]]:
        """The hub records of the next event."""
        data = await self.next_event()
        assert data is not None, "the event stream ended"
        records, rest = split_records(data)
        assert rest == "", f"an event ended inside a record: {data!r}"
        return [json.loads(record) for record in records]

    async def wait_ended(self) -> None:
        while not self.ended:
            await self._next()

    async def aclose(self) -> None:
        await self.stream.aclose()


async def post_records(http: httpx.AsyncClient, hub_url: str, connection_token: str,
                       token: str, *documents: dict[str, Any], raw: str = "") -> httpx.Response:
    """POST records (or ``raw`` text) to a connection, as the JS client does."""
    body = raw + "".join(encode_record(document) for document in documents)
    return await http.post(hub_url, params={"id": connection_token}, content=body.encode(),
                           headers={**bearer(token), "Content-Type": "text/plain;charset=UTF-8"})


class RawPoll:
    """A poll on a raw socket: the test knows when the server holds it, and may
    reset it while it is held.

    It is sent with ``Expect: 100-continue`` and a one-byte body that never
    comes. hypercorn answers ``100 Continue`` right after it has parsed the
    request and started voisnap's handler, which registers the poll before its
    first wait (``LongPolling.poll``): once ``send`` returns, any request the
    test makes next reaches the server after this poll is held. No clock is
    involved.
    """

    def __init__(self, sock: trio.socket.SocketType, stream: trio.SocketStream) -> None:
        self.sock = sock
        self.stream = stream
        self.reader = HttpResponseReader(stream)

    @classmethod
    async def send(cls, hub_url: str, connection_token: str, token: str) -> RawPoll:
        parts = urlsplit(hub_url)
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
        await sock.connect((parts.hostname, parts.port))
        poll = cls(sock, trio.SocketStream(sock))
        target = f"{parts.path}?{urlencode({'id': connection_token, '_': '1'})}"
        request = (f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                   f"Authorization: Bearer {token}\r\n"
                   "Expect: 100-continue\r\nContent-Length: 1\r\n\r\n")
        await poll.stream.send_all(request.encode())
        interim = await poll.reader.read_response()
        assert interim.status == 100, interim
        return poll

    async def read_response(self) -> HttpResponse:
        """The poll's final response."""
        return await self.reader.read_response()

    def reset(self) -> None:
        """Vanish: an abortive close (RST), with the poll still held by the server."""
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ABORT)
        self.sock.close()

    async def aclose(self) -> None:
        await self.stream.aclose()

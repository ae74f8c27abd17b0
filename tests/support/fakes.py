"""In-process test doubles for the hub framework: a memory transport and a test client.

Like aspnetcore's ``Tests.Utils/TestClient.cs``: the test client writes the raw
handshake and raw JSON hub messages (HubProtocol.md, "JSON Encoding") into a
real ``HubConnection`` and reads back what the server wrote, parsed with
voisnap's own ``TextFraming`` and ``JsonHubProtocol``. Nothing touches a socket,
so every test can run under ``trio.testing.MockClock(autojump_threshold=0)``
(pytest-trio's ``autojump_clock`` fixture) and timeouts cost no real time.

::

    async with connect(PlaygroundHub) as client:
        completion = await client.invoke("Echo", 42)
        assert completion == CompletionMessage.with_result("0", 42)

``MemoryTransport`` implements ``voisnap.transports.base.Transport``: bytes from
the client arrive through one memory channel, and the single writer drains the
connection's ``Outbox`` into another. ``client_buffer`` is the capacity of that
second channel: with 0, a client that stops reading stalls the writer, so the
outbox fills up as it would behind a stalled socket.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

import trio

from voisnap.config import Settings
from voisnap.errors import ConnectionClosed
from voisnap.hubs.connection import HubConnection
from voisnap.hubs.endpoint import HubEndpoint
from voisnap.hubs.heartbeat import run_heartbeat
from voisnap.principal import Principal
from voisnap.protocol import (
    CompletionMessage,
    HubMessage,
    JsonHubProtocol,
    PingMessage,
    TransferFormat,
)
from voisnap.protocol.framing import TextFraming
from voisnap.transports.base import QueuedTransport, TransportInfo, TransportType
from voisnap.transports.frames import Frame, RecordFramer
from voisnap.transports.outbox import Outbox

RS = b"\x1e"
JSON_HANDSHAKE = b'{"protocol":"json","version":1}' + RS
DEFAULT_PRINCIPAL = Principal(user_id="user", tenant_id="tenant")


PLAIN_FRAMER = RecordFramer()  # a record is its own frame: memory has no framing of its own


class MemoryTransport(QueuedTransport):
    """The Transport protocol over two trio memory channels and an ``Outbox``."""

    info = TransportInfo(
        kind=TransportType.WEB_SOCKETS,
        transfer_format=TransferFormat.BINARY,  # carries text and binary, like WebSockets
        resumable=True,
        polled=False,
        text_framer=PLAIN_FRAMER,
        binary_framer=PLAIN_FRAMER,
    )

    def __init__(
        self, *, capacity: int = 100, max_bytes: int = 1 << 20, client_buffer: float = math.inf
    ) -> None:
        self.outbox: Outbox[Frame] = Outbox(capacity, max_bytes)
        self.frames_accepted = 0
        self.aborted = False
        self.on_closed: Callable[[], None] | None = None
        self.last_frame: Frame | None = None
        """The frame handed to ``aclose``/``abort`` (the Close the server attempted)."""
        self._closed = False
        self.to_server, self._incoming = trio.open_memory_channel[bytes](math.inf)
        self._to_client, self.from_server = trio.open_memory_channel[bytes](client_buffer)

    @property
    def closed(self) -> bool:
        return self._closed

    async def receive_some(self) -> bytes:
        try:
            return await self._incoming.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise ConnectionClosed("the test client is gone") from None

    def _start(self, nursery: trio.Nursery) -> None:
        self.outbox.start_writer(nursery, self._write_batch)

    async def _write_batch(self, frames: list[Frame]) -> None:
        try:
            for frame in frames:
                await self._to_client.send(frame.data)
        except trio.BrokenResourceError:
            self.abort()  # the client is gone, as a socket write would find out
        except trio.ClosedResourceError:
            pass  # the transport was closed

    async def aclose(self, last_frame: Frame | None, timeout: float) -> None:
        if self._closed:
            return
        self.last_frame = last_frame
        with trio.move_on_after(timeout):
            if last_frame is not None:
                await self.send(last_frame)
            await self.outbox.wait_empty()
        self._shut()

    def abort(self, last_frame: Frame | None = None) -> None:
        """Close at once; ``last_frame`` reaches the client only if it is reading now."""
        if self._closed:
            return
        self.aborted = True
        self.last_frame = last_frame
        if last_frame is not None:
            with suppress(trio.WouldBlock, trio.BrokenResourceError):
                self._to_client.send_nowait(last_frame.data)
        self._shut()

    def _shut(self) -> None:
        self._closed = True
        self.outbox.close()
        self._to_client.close()  # the client reads what was delivered, then EOF
        self._incoming.close()  # wakes a pending receive_some
        on_closed, self.on_closed = self.on_closed, None
        if on_closed is not None:
            on_closed()


class ServerClosed(Exception):
    """The server closed the transport while the test client was reading."""


def make_endpoint(
    hub_class: type, settings: Settings | None = None, *, services: Any = None
) -> HubEndpoint:
    return HubEndpoint("/hub", hub_class, settings or Settings(), services=services)


class TestClient:
    """One client of a hub endpoint, speaking raw JSON hub protocol.

    Invocation ids count "0", "1", ... as the JS client's do. ``invoke`` and
    ``stream`` skip Pings and keep any other message that arrives before their
    answer in ``unread``, where ``receive`` finds it first.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        endpoint: HubEndpoint,
        principal: Principal = DEFAULT_PRINCIPAL,
        *,
        client_buffer: float = math.inf,
        timeout: float = 60.0,
    ) -> None:
        settings = endpoint.settings
        self.endpoint = endpoint
        self.transport = MemoryTransport(
            capacity=settings.outbox_capacity,
            max_bytes=settings.outbox_max_bytes,
            client_buffer=client_buffer,
        )
        self.connection = HubConnection(
            endpoint=endpoint, transport=self.transport, principal=principal
        )
        self.timeout = timeout
        self.finished = trio.Event()
        """Set once the server's side of the connection has ended."""
        self.unread: deque[HubMessage] = deque()
        self._framing = TextFraming(max_message_size=1 << 30)
        self._protocol = JsonHubProtocol()
        self._ids = itertools.count()

    # -- sending ---------------------------------------------------------------------------------

    async def send_raw(self, data: bytes) -> None:
        await self.transport.to_server.send(data)

    async def send_json(self, document: dict[str, Any]) -> None:
        await self.send_raw(json.dumps(document).encode() + RS)

    async def handshake(self, request: bytes = JSON_HANDSHAKE) -> dict[str, Any]:
        """Send a handshake request; the server's response as a dict."""
        await self.send_raw(request)
        return await self.receive_handshake()

    def next_id(self) -> str:
        return str(next(self._ids))

    async def send_invocation(
        self,
        target: str,
        *args: Any,
        invocation_id: str | None = None,
        stream_ids: tuple[str, ...] = (),
    ) -> None:
        document: dict[str, Any] = {"type": 1, "target": target, "arguments": list(args)}
        if invocation_id is not None:
            document["invocationId"] = invocation_id
        if stream_ids:
            document["streamIds"] = list(stream_ids)
        await self.send_json(document)

    async def send_stream_invocation(
        self, target: str, *args: Any, invocation_id: str, stream_ids: tuple[str, ...] = ()
    ) -> None:
        document: dict[str, Any] = {
            "type": 4, "invocationId": invocation_id, "target": target, "arguments": list(args)
        }
        if stream_ids:
            document["streamIds"] = list(stream_ids)
        await self.send_json(document)

    async def send_item(self, invocation_id: str, item: Any) -> None:
        await self.send_json({"type": 2, "invocationId": invocation_id, "item": item})

    async def send_completion(
        self, invocation_id: str, *, result: Any = None, error: str | None = None,
        has_result: bool = False,
    ) -> None:
        document: dict[str, Any] = {"type": 3, "invocationId": invocation_id}
        if error is not None:
            document["error"] = error
        elif has_result or result is not None:
            document["result"] = result
        await self.send_json(document)

    async def cancel(self, invocation_id: str) -> None:
        await self.send_json({"type": 5, "invocationId": invocation_id})

    async def ping(self) -> None:
        await self.send_json({"type": 6})

    async def send_close(self) -> None:
        await self.send_json({"type": 7})

    # -- receiving -------------------------------------------------------------------------------
    # Each public read has one deadline (``timeout``) for the whole read, so
    # that skipping keep-alive Pings cannot go on forever under an autojump clock.

    async def receive_record(self) -> bytes:
        """The next record the server wrote, without its separator."""
        with trio.fail_after(self.timeout):
            return await self._read_record()

    async def receive_handshake(self) -> dict[str, Any]:
        return json.loads(await self.receive_record())

    async def receive(self, *, pings: bool = False) -> HubMessage:
        """The next hub message; Pings are skipped unless ``pings``."""
        if self.unread:
            return self.unread.popleft()
        with trio.fail_after(self.timeout):
            return await self._read_message(pings=pings)

    async def receive_until_closed(self, *, pings: bool = False) -> list[HubMessage]:
        """Every message until the server closes the transport."""
        messages = list(self.unread)
        self.unread.clear()
        with trio.fail_after(self.timeout):
            while True:
                try:
                    messages.append(await self._read_message(pings=pings))
                except ServerClosed:
                    return messages

    async def receive_completion(self, invocation_id: str) -> CompletionMessage:
        """Read until the Completion for ``invocation_id``; others go to ``unread``."""
        held: list[HubMessage] = []
        try:
            with trio.fail_after(self.timeout):
                while True:
                    message = await self._read_message()
                    if isinstance(message, CompletionMessage) and (
                        message.invocation_id == invocation_id
                    ):
                        return message
                    held.append(message)
        finally:
            self.unread.extend(held)

    async def receive_stream(self, invocation_id: str) -> list[HubMessage]:
        """Read the StreamItems and the Completion of ``invocation_id``; others go to ``unread``."""
        mine: list[HubMessage] = []
        held: list[HubMessage] = []
        try:
            with trio.fail_after(self.timeout):
                while True:
                    message = await self._read_message()
                    if getattr(message, "invocation_id", None) != invocation_id:
                        held.append(message)
                        continue
                    mine.append(message)
                    if isinstance(message, CompletionMessage):
                        return mine
        finally:
            self.unread.extend(held)

    async def _read_message(self, *, pings: bool = False) -> HubMessage:
        while True:
            message = self._protocol.parse(await self._read_record())
            if pings or not isinstance(message, PingMessage):
                return message

    async def _read_record(self) -> bytes:
        while (record := self._framing.next_record()) is None:
            try:
                self._framing.feed(await self.transport.from_server.receive())
            except (trio.EndOfChannel, trio.ClosedResourceError):
                raise ServerClosed("the server closed the connection") from None
        return record

    # -- calls -----------------------------------------------------------------------------------

    async def invoke(self, target: str, *args: Any) -> CompletionMessage:
        """A blocking Invocation; its Completion."""
        invocation_id = self.next_id()
        await self.send_invocation(target, *args, invocation_id=invocation_id)
        return await self.receive_completion(invocation_id)

    async def stream(self, target: str, *args: Any) -> list[HubMessage]:
        """A StreamInvocation; every message for it, StreamItems then the Completion."""
        invocation_id = self.next_id()
        await self.send_stream_invocation(target, *args, invocation_id=invocation_id)
        return await self.receive_stream(invocation_id)

    # -- ending ----------------------------------------------------------------------------------

    async def run_server_side(self) -> None:
        try:
            await self.connection.run()
        finally:
            self.finished.set()

    async def stop(self) -> None:
        """Leave (the client closes its end both ways, as closing a socket does)
        and wait for the server to finish."""
        self.transport.to_server.close()
        self.transport.from_server.close()
        with trio.fail_after(self.timeout):
            await self.finished.wait()


@asynccontextmanager
async def connect(
    hub: type | HubEndpoint,
    settings: Settings | None = None,
    *,
    principal: Principal = DEFAULT_PRINCIPAL,
    handshake: bool = True,
    client_buffer: float = math.inf,
) -> AsyncIterator[TestClient]:
    """A running connection to ``hub`` (a hub class, or an endpoint that
    several clients share), handshaken unless ``handshake=False``. On exit the
    client leaves and the connection's nursery must finish."""
    endpoint = hub if isinstance(hub, HubEndpoint) else make_endpoint(hub, settings)
    client = TestClient(endpoint, principal, client_buffer=client_buffer)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.run_server_side)
        # The server's heartbeat (keep-alive, client timeout, expiry), for this connection.
        nursery.start_soon(run_heartbeat, lambda: [client.connection], endpoint.settings)
        if handshake:
            response = await client.handshake()
            assert response == {}, response
        yield client
        await client.stop()
        nursery.cancel_scope.cancel()

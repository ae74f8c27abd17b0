"""The owner's side of a relay: requests for its connection that arrived elsewhere.

While a process serves a negotiated connection, it listens on the connection's
relay channel (``names.relay_channel``) with a ``TransportListener``. Another
process that receives a request for the connection (no sticky sessions: a poll,
a POST, a DELETE, or a stateful client's new WebSocket) relays it there
(``server.relay``), and the listener does here what the request would have done
here, checked as strictly:

- ``Poll``, ``Post``, ``Delete``: the long-polling or event-stream transport
  answers as for a local request, and the HTTP status and body go back;
- ``Attach``: a stateful client came back on a WebSocket to another process.
  The connection adopts a ``RelayedTransport``, whose input is the ``Data``
  the relaying process forwards and whose output goes back to it as
  ``Frames``, in order; ``Detach`` (the client left again) ends it, as a
  dropped WebSocket would.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import trio

from ..backplane import Backplane, BackplaneError
from ..errors import ConnectionClosed
from ..principal import Principal
from ..protocol import TransferFormat
from ..routing import names
from ..transports.base import QueuedTransport, TransportInfo, TransportType
from ..transports.frames import OPCODE_BINARY, OPCODE_TEXT, Frame, RecordFramer
from ..transports.long_polling import LongPolling
from ..transports.outbox import Outbox
from . import relay_commands as commands
from .connections import NO_CONNECTION, NegotiatedConnection, check_owner
from .http import HttpError

if TYPE_CHECKING:
    from .hub_server import HubServer

log = logging.getLogger(__name__)

RELAYED_INPUT = 64
"""Chunks of client bytes a relayed WebSocket holds for its reader; a client
that sends more before the hub reads them is cut off."""
GOODBYE_TIMEOUT = 1.0


class TransportListener:
    """Requests relayed to one of this process's connections."""

    def __init__(self, hubs: HubServer, negotiated: NegotiatedConnection) -> None:
        self._hubs = hubs
        self._negotiated = negotiated
        self._relays: dict[str, RelayedTransport] = {}

    def message(self, payload: bytes) -> None:
        command = _decode(payload)
        match command:
            case commands.Data(relay_id=relay_id, data=data):
                relayed = self._relays.get(relay_id)
                if relayed is not None:
                    relayed.feed(data)
            case commands.Detach(relay_id=relay_id):
                relayed = self._relays.pop(relay_id, None)
                if relayed is not None:
                    relayed.peer_gone()
            case commands.EndPoll():
                transport = self._negotiated.transport
                if isinstance(transport, LongPolling):
                    transport.end_poll()

    async def request(self, payload: bytes) -> bytes:
        command = _decode(payload)
        try:
            answer = await self._answer(command)
        except HttpError as error:
            answer = commands.Answer(error.status, error.text.encode())
        return commands.encode(answer)

    async def _answer(self, command: commands.RelayCommand | None) -> commands.Answer:
        match command:
            case commands.Poll(asker=asker):
                return await self._poll(self._checked(asker, LongPolling))
            case commands.Post(asker=asker, body=body):
                return await self._post(self._checked(asker), body)
            case commands.Delete(asker=asker):
                self._checked(asker, LongPolling).delete()
                return commands.Answer(202)
            case commands.Attach(asker=asker, relay_id=relay_id):
                return self._attach(asker, relay_id)
            case commands.Probe(asker=asker):
                self._checked(asker)
                return commands.Answer(200)
        return commands.Answer(400, b"Not a relay request.")

    def _checked(self, asker: commands.Asker, kind: type | None = None) -> object:
        """The connection's transport, if the asker may use it (as a local
        request is checked), and it is of ``kind``."""
        negotiated = self._negotiated
        if not self._hubs.registry.is_active(negotiated.connection_token):
            # The connection has ended; this listener's subscription goes a
            # moment later, and a request must not find it alive till then.
            raise HttpError(404, NO_CONNECTION)
        if asker.hub != negotiated.hub_path:
            raise HttpError(404, NO_CONNECTION)
        check_owner(negotiated.principal.user_id, negotiated.principal.tenant_id, _who(asker))
        transport = negotiated.transport
        if transport is None or (kind is not None and not isinstance(transport, kind)):
            raise HttpError(400, "Cannot change transports mid-connection")
        return transport

    async def _poll(self, transport: LongPolling) -> commands.Answer:
        answered: list[bytes] = []

        async def respond(body: bytes) -> None:
            answered.append(body)

        ended = await transport.poll(respond)
        if ended is not None or not answered:
            return commands.Answer(204)
        return commands.Answer(200, answered[0])

    async def _post(self, transport: object, body: bytes) -> commands.Answer:
        posting = self._negotiated.posting_transport()
        if posting is None:
            raise HttpError(405, "POST requests are not allowed for WebSocket connections.")
        try:
            await posting.posts.post(_one_chunk(body))
        except ConnectionClosed:
            raise HttpError(404, NO_CONNECTION) from None
        return commands.Answer(200)

    def _attach(self, asker: commands.Asker, relay_id: str) -> commands.Answer:
        self._checked(asker)
        connection = self._negotiated.connection
        if connection is None or not connection.resumable:
            raise HttpError(409, "Another transport is already using this connection.")
        relayed = RelayedTransport(
            relay_id,
            self._hubs.cluster.backplane,
            capacity=self._hubs.settings.outbox_capacity,
            max_bytes=self._hubs.settings.outbox_max_bytes,
        )
        self._relays[relay_id] = relayed
        self._hubs.adopt_in_background(self._negotiated, relayed)
        return commands.Answer(101)


def _who(asker: commands.Asker) -> Principal:
    return Principal(user_id=asker.user_id, tenant_id=asker.tenant_id)


async def _one_chunk(body: bytes) -> AsyncIterator[bytes]:
    yield body


def _decode(payload: bytes) -> commands.RelayCommand | None:
    try:
        return commands.decode(payload)
    except commands.RelayCommandError as error:
        log.info("a malformed relay command was dropped: %s", error)
        return None


class RelayedTransport(QueuedTransport):
    """A WebSocket that lives in another process: bytes in by ``feed``, frames
    out through the backplane to the process that holds the socket."""

    info = TransportInfo(
        kind=TransportType.WEB_SOCKETS,
        transfer_format=TransferFormat.BINARY,
        resumable=True,
        polled=False,
        text_framer=RecordFramer(OPCODE_TEXT),
        binary_framer=RecordFramer(OPCODE_BINARY),
    )

    def __init__(
        self, relay_id: str, backplane: Backplane, *, capacity: int, max_bytes: int
    ) -> None:
        self.outbox: Outbox[Frame] = Outbox(capacity, max_bytes)
        self.frames_accepted = 0
        self.on_closed: Callable[[], None] | None = None
        self._closed = False
        self._backplane = backplane
        self._back = names.relay_back_channel(relay_id)
        self._input, self._received = trio.open_memory_channel[bytes](RELAYED_INPUT)
        self._nursery: trio.Nursery | None = None
        self._said_goodbye = False

    def _start(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self.outbox.start_writer(nursery, self._write_batch)

    # -- the client's side, through the relaying process ----------------------------------------

    def feed(self, data: bytes) -> None:
        try:
            self._input.send_nowait(data)
        except (trio.WouldBlock, trio.ClosedResourceError):
            self.abort()  # a client far ahead of its hub: cut off, as a full outbox is

    def peer_gone(self) -> None:
        self._input.close()

    async def receive_some(self) -> bytes:
        try:
            return await self._received.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            self._mark_closed()
            raise ConnectionClosed("the relayed client is gone") from None

    # -- the owner's output ---------------------------------------------------------------------

    async def _write_batch(self, frames: list[Frame]) -> None:
        batch = tuple((frame.opcode or OPCODE_TEXT, bytes(frame.payload)) for frame in frames)
        try:
            await self._backplane.publish(self._back, commands.encode(commands.Frames(batch)))
        except BackplaneError:
            self.abort()

    async def _say_goodbye(self) -> None:
        self._said_goodbye = True
        await self._publish_end()

    async def _publish_end(self) -> None:
        try:
            await self._backplane.publish(self._back, commands.encode(commands.End()))
        except BackplaneError:
            pass  # the relaying process will find its client's socket on its own

    def _release(self) -> None:
        self._input.close()
        if not self._said_goodbye and self._nursery is not None:
            self._said_goodbye = True
            self._nursery.start_soon(self._end_shielded)

    async def _end_shielded(self) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(GOODBYE_TIMEOUT):
            await self._publish_end()


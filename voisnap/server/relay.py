"""The relaying side: a request for a connection another process owns.

No sticky sessions (``server.shared``): a poll, a POST, a DELETE or a stateful
client's new WebSocket may arrive at any process. When it arrives at one that
does not own the connection, ``Relay`` hands it to the owner on the
connection's relay channel and answers with what the owner answered
(``server.relayed`` is the other side). A POST for a connection that no process
has started yet waits in the backplane for the one that will (``add_early``).

A relayed WebSocket keeps two streams in order: the client's bytes go to the
owner as ``Data`` (published in the order read), and the owner's frames come
back on a channel of this relay's own as ``Frames``, written to the socket here
by ``RelayBack``; whichever side ends first tells the other (``Detach``, ``End``).
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

import trio

from ..backplane import (
    BackplaneError,
    BackplaneUnavailable,
    NoSubscriber,
    RequestRefused,
    RequestTimeout,
)
from ..errors import ConnectionClosed
from ..routing import names
from ..transports.base import Transport
from ..transports.frames import OPCODE_TEXT
from . import relay_commands as commands
from .connections import NO_CONNECTION

if TYPE_CHECKING:
    from .hub_server import Elsewhere, HubServer

log = logging.getLogger(__name__)

UNREACHABLE = b"The process that holds this connection cannot be reached."
PROBE_TIMEOUT = 2.0
GOODBYE_TIMEOUT = 1.0


class Relay:
    def __init__(self, hubs: HubServer) -> None:
        self._hubs = hubs
        self._backplane = hubs.cluster.backplane
        self._settings = hubs.settings

    async def poll(self, elsewhere: Elsewhere) -> commands.Answer:
        """A long poll, answered by the owner's transport. If this request's
        client goes away (the caller is cancelled), the owner ends the poll
        before it takes any message."""
        timeout = self._settings.long_polling_timeout + self._settings.cross_process_timeout
        try:
            return await self._ask(elsewhere, commands.Poll(_asker(elsewhere)), timeout)
        except trio.Cancelled:
            with trio.CancelScope(shield=True), trio.move_on_after(GOODBYE_TIMEOUT):
                await self._tell(elsewhere, commands.EndPoll())
            raise

    async def _tell(self, elsewhere: Elsewhere, command: commands.RelayCommand) -> None:
        try:
            await self._backplane.publish(
                names.relay_channel(elsewhere.token), commands.encode(command)
            )
        except BackplaneError:
            pass  # the owner ends the poll or the relay on its own, later

    async def probe(self, elsewhere: Elsewhere) -> commands.Answer:
        """Whether a process owns the connection (its records in Redis may be
        gone: Redis restarted), and lets this asker use it: 200, 403 or 404."""
        return await self._ask(elsewhere, commands.Probe(_asker(elsewhere)), PROBE_TIMEOUT)

    async def post(self, elsewhere: Elsewhere, body: bytes) -> commands.Answer:
        if elsewhere.owner is None:
            limit = self._settings.max_message_size
            if not await self._hubs.shared.add_early(elsewhere.token, body, limit):
                return commands.Answer(413, b"Too much was sent before the transport started.")
            return commands.Answer(200)
        command = commands.Post(_asker(elsewhere), body)
        return await self._ask(elsewhere, command, self._settings.cross_process_timeout)

    async def delete(self, elsewhere: Elsewhere) -> commands.Answer:
        if elsewhere.owner is None:
            return commands.Answer(400, b"DELETE is only for long polling connections.")
        command = commands.Delete(_asker(elsewhere))
        return await self._ask(elsewhere, command, self._settings.cross_process_timeout)

    async def _ask(
        self, elsewhere: Elsewhere, command: commands.RelayCommand, timeout: float
    ) -> commands.Answer:
        channel = names.relay_channel(elsewhere.token)
        try:
            reply = await self._backplane.request(channel, commands.encode(command), timeout)
        except NoSubscriber:
            return commands.Answer(404, NO_CONNECTION.encode())
        except (RequestTimeout, BackplaneUnavailable):
            return commands.Answer(503, UNREACHABLE)
        except BackplaneError as error:
            return commands.Answer(502, str(error).encode())
        try:
            answer = commands.decode(reply)
        except commands.RelayCommandError:
            answer = None
        return answer if isinstance(answer, commands.Answer) else commands.Answer(502, UNREACHABLE)

    async def websocket(self, elsewhere: Elsewhere, transport: Transport) -> None:
        """A stateful client came back on a WebSocket here; its connection lives
        with the owner. Pump both ways until either side ends."""
        relay_id = uuid.uuid4().hex
        back = RelayBack(transport)
        channel = names.relay_back_channel(relay_id)
        subscriptions = self._hubs.cluster.subscriptions
        await subscriptions.hold(channel, back)
        try:
            attach = commands.Attach(_asker(elsewhere), relay_id)
            answer = await self._ask(elsewhere, attach, self._settings.cross_process_timeout)
            if answer.status != 101:
                refusal = answer.body.decode(errors="replace")
                log.info("a relayed WebSocket was refused: %s", refusal)
                return transport.abort()
            await self._pump(elsewhere, relay_id, transport, back)
        finally:
            subscriptions.release(channel)

    async def _pump(
        self, elsewhere: Elsewhere, relay_id: str, transport: Transport, back: RelayBack
    ) -> None:
        relay_channel = names.relay_channel(elsewhere.token)
        async with trio.open_nursery() as nursery:
            transport.start(nursery, lambda: None)
            nursery.start_soon(_end_when_told, back, transport, nursery.cancel_scope)
            try:
                while True:
                    data = await transport.receive_some()
                    data_command = commands.Data(relay_id, data)
                    await self._backplane.publish(relay_channel, commands.encode(data_command))
            except (ConnectionClosed, BackplaneError):
                pass
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(GOODBYE_TIMEOUT):
                    await self._tell(elsewhere, commands.Detach(relay_id))
                transport.abort()
                nursery.cancel_scope.cancel()


async def _end_when_told(back: RelayBack, transport: Transport, pump: trio.CancelScope) -> None:
    """The owner closed the connection: let the client read what was sent, then close."""
    await back.ended.wait()
    await transport.aclose(None, timeout=GOODBYE_TIMEOUT)
    pump.cancel()


class RelayBack:
    """The owner's output for one relayed WebSocket, written to its socket here."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self.ended = trio.Event()

    def message(self, payload: bytes) -> None:
        try:
            command = commands.decode(payload)
        except commands.RelayCommandError as error:
            log.info("a malformed relay command was dropped: %s", error)
            return
        match command:
            case commands.Frames(frames=frames):
                self._write(frames)
            case commands.End():
                self.ended.set()

    def _write(self, frames: tuple[tuple[int, bytes], ...]) -> None:
        info = self._transport.info
        for opcode, payload in frames:
            framer = info.text_framer if opcode == OPCODE_TEXT else info.binary_framer
            try:
                self._transport.send_nowait(framer.frame(payload))
            except trio.WouldBlock:
                self._transport.abort()  # a slow client, as a full outbox would evict it
                return

    async def request(self, payload: bytes) -> bytes:
        raise RequestRefused("A relayed WebSocket takes no requests.")


def _asker(elsewhere: Elsewhere) -> commands.Asker:
    principal = elsewhere.principal
    return commands.Asker(elsewhere.hub_path, principal.user_id, principal.tenant_id)

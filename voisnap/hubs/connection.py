"""One hub connection's life, from handshake to close (ASP.NET Core's
``HubConnectionHandler`` and ``HubConnectionContext``).

Theory of operation
-------------------
A connection is in one of five states, and moves between them only along the
arrows of ``TRANSITIONS`` (``_move_to`` refuses any other)::

    HANDSHAKING --handshake accepted--> OPEN <--client is back-- SUSPENDED
         |                               | \\---transport gone--->  |
         |                               |   (stateful reconnect)  |
         +----- close(disconnect) -------+-------------------------+--> CLOSING
         |                               |                         |       |
         +-------------------- the client left / run ends ---------+-------+--> CLOSED

``run()`` owns one nursery per connection. In it the reader (``_read_loop``)
feeds the sans-IO ``HubProtocolConnection`` and hands each message to the
``Dispatcher``; hub methods run in tasks started when invocations arrive; the
transport's writer runs only while its outbox holds a backlog. Keep-alive
Pings, the client timeout and token expiry are not tasks: the server's
heartbeat (``hubs.heartbeat``) calls ``tick`` about once a second.

The order is ASP.NET's: handshake (bounded by ``handshake_timeout``), join the
router, ``on_connected``, read until the client leaves or the server closes,
cancel the hub's work, leave the router, ``on_disconnected``, close the transport.

There is one close path. Whoever ends the connection (the heartbeat, a protocol
error, the hub, a shutdown, a fan-out that finds the client too slow, a crash)
calls ``close(disconnect)`` with a ``Disconnect`` (``hubs.closing``): the first
one wins, later ones change nothing, so nothing re-enters it. ``close`` is
synchronous: it records why, moves to CLOSING and cancels the serving scope.
``_finish``, at the end of ``run``, then sends the Close message the reason
carries and closes the transport, bounded in time, and moves to CLOSED. A
client that leaves by itself never passes through CLOSING. Eviction cannot wait
for ``_finish``: it aborts the transport at once (with the Close, if the socket
takes it without blocking).
"""

from __future__ import annotations

import contextlib
import enum
import logging
import math
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import trio

from ..config import Settings
from ..errors import ConnectionClosed
from ..failures import error_boundary, report_client_error, report_unexpected
from ..metrics import HANDSHAKES
from ..principal import Principal
from ..protocol import (
    CONNECTION_CLOSED,
    NEED_DATA,
    PING,
    AckMessage,
    CloseMessage,
    HandshakeRequest,
    HubMessage,
    HubProtocolConnection,
    InvocationMessage,
    LocalProtocolError,
    RemoteProtocolError,
    SequenceMessage,
    TransferFormat,
)
from ..routing.serialized import SerializedMessage
from ..transports.base import Transport
from ..transports.frames import Frame, Wire, wire_for
from ..transports.outbox import Lag
from . import closing
from .client_results import ClientLeft, ClientResultError, ClientResults
from .closing import (  # noqa: F401  (the texts, for those who import them from here)
    CLOSED_WITH_ERROR,
    HANDSHAKE_CANCELED,
    SHUTTING_DOWN,
    SLOW_CONSUMER,
    TOKEN_EXPIRED,
    Disconnect,
)
from .dispatcher import ClientClosed, Dispatcher
from .endpoint import HubEndpoint
from .hub import GroupManager, Hub, HubCallerContext, HubClients
from .invocations import Invocations, error_text
from .liveness import Liveness, Verdict
from .replay import is_tracked
from .resumption import Resumption

log = logging.getLogger(__name__)

PING_MESSAGE = SerializedMessage(PING)  # one Ping, serialized once per wire for every connection


class HubConnectionState(enum.Enum):
    HANDSHAKING = "handshaking"
    OPEN = "open"
    SUSPENDED = "suspended"
    """Stateful reconnect: the client is away; messages wait in the replay buffer."""
    CLOSING = "closing"
    """The server is closing it: work is cancelled, the Close is on its way."""
    CLOSED = "closed"


HANDSHAKING, OPEN, SUSPENDED, CLOSING, CLOSED = HubConnectionState

TRANSITIONS: dict[HubConnectionState, frozenset[HubConnectionState]] = {
    HANDSHAKING: frozenset({OPEN, CLOSING, CLOSED}),
    OPEN: frozenset({SUSPENDED, CLOSING, CLOSED}),
    SUSPENDED: frozenset({OPEN, CLOSING, CLOSED}),
    CLOSING: frozenset({CLOSED}),
    CLOSED: frozenset(),
}


def new_connection_id() -> str:
    return uuid.uuid4().hex


class HubConnection:
    # one per connection: slots keep idle connections small
    __slots__ = (
        "_client_results",
        "_frames_received",
        "_liveness",
        "_nursery",
        "_protocol",
        "_reading",
        "_resumption",
        "_serving",
        "_stateful",
        "connection_id",
        "disconnect",
        "endpoint",
        "items",
        "principal",
        "query",
        "settings",
        "state",
        "tenant_id",
        "transport",
        "user_id",
        "wire",
    )

    def __init__(
        self,
        *,
        endpoint: HubEndpoint,
        transport: Transport,
        principal: Principal,
        connection_id: str | None = None,
        stateful: bool = False,
        query: Mapping[str, str] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.query: Mapping[str, str] = query or {}
        self.settings: Settings = endpoint.settings
        self.transport = transport
        self.principal = principal
        self.connection_id = connection_id or new_connection_id()
        self.user_id = principal.user_id
        self.tenant_id = principal.tenant_id
        self.state = HANDSHAKING
        self.disconnect: Disconnect | None = None
        """Why the connection ended (``hubs.closing``), once it is ending."""
        self.wire: Wire | None = None
        self.items: dict[str, Any] = {}
        self._protocol = HubProtocolConnection(
            endpoint.protocols,
            transfer_format=transport.info.transfer_format,
            max_message_size=self.settings.max_message_size,
            limits=endpoint.limits,
        )
        self._client_results = ClientResults(endpoint.result_ids)
        self._serving: trio.CancelScope | None = None  # the work nursery's, once it is open
        self._nursery: trio.Nursery | None = None
        self._reading = False
        self._frames_received = 0
        # Stateful reconnect: negotiated, then confirmed by a version 2
        # handshake on a transport that can resume (WebSockets).
        self._stateful = stateful
        self._resumption: Resumption | None = None
        now = trio.current_time()
        self._liveness = Liveness(
            now,
            keep_alive_interval=self.settings.keep_alive_interval,
            client_timeout=self.settings.client_timeout,
            # The token's expiry is Unix time; the heartbeat reads trio's clock.
            expires_at=math.inf
            if principal.expires_at is None
            else now + principal.expires_at - time.time(),
        )

    def _move_to(self, state: HubConnectionState) -> None:
        if state not in TRANSITIONS[self.state]:
            raise LocalProtocolError(
                f"Can't move a connection from {self.state.name} to {state.name}"
            )
        self.state = state

    # -- life ------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until it ends. An unexpected exception inside
        (a bug) ends this connection with an error Close, and nothing else."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._use(self.transport)
            try:
                with error_boundary(log, "a hub connection", self.crashed):
                    await self._serve()
            finally:
                with error_boundary(log, "closing a hub connection", self._abort):
                    await self._finish()
                nursery.cancel_scope.cancel()

    def _use(self, transport: Transport) -> None:
        assert self._nursery is not None
        self.transport = transport
        transport.start(self._nursery, self._transport_closed)

    def _transport_closed(self) -> None:
        """The transport may close under a reader that is busy elsewhere
        (waiting to pass an upload item on): the client is gone, unless it may
        come back on a new one (stateful reconnect; the reader decides)."""
        if self._resumption is None:
            self.close(closing.CLIENT_LEFT)

    async def _serve(self) -> None:
        """Handshake, then read and dispatch until the client leaves or the
        server closes; hub methods run in the same nursery, and end with it."""
        connected = False
        try:
            async with trio.open_nursery() as work:
                self._serving = work.cancel_scope
                if self.state is CLOSING:
                    work.cancel_scope.cancel()
                invocations = Invocations(
                    methods=self.endpoint.methods,
                    create_hub=self.create_hub,
                    send=self.send_message,
                    nursery=work,
                    detailed_errors=self.settings.detailed_errors,
                    max_parallel=self.settings.max_parallel_invocations,
                    stream_buffer_capacity=self.settings.stream_buffer_capacity,
                    hub=self.endpoint.path,
                )
                try:
                    if await self._handshake() and await self._connect():
                        connected = True
                        await self._read_loop(Dispatcher(invocations, self._client_results, self))
                finally:
                    invocations.close()
                    work.cancel_scope.cancel()
        finally:
            self._serving = None
            if connected:  # also after a crash: the router must not keep a dead connection
                await self._disconnected()

    async def _connect(self) -> bool:
        """Join the router and run ``on_connected``; False if it failed."""
        await self.endpoint.router.add_connection(self)
        try:
            await self.create_hub().on_connected()
        except Exception as error:
            # ASP.NET: Close with the error and no allowReconnect, and no
            # OnDisconnectedAsync for a connection that never connected.
            report_unexpected(log, "on_connected", error)
            self.endpoint.router.remove_connection(self)
            self.close(closing.failed(error, self._error_text(error)))
            return False
        return True

    async def _disconnected(self) -> None:
        """Leave the router, fail pending client results, run ``on_disconnected``."""
        self.endpoint.router.remove_connection(self)
        self._client_results.fail_all(f"Connection '{self.connection_id}' disconnected.")
        cause = None if self.disconnect is None else self.disconnect.cause
        with trio.CancelScope(shield=True), trio.move_on_after(self.settings.shutdown_timeout):
            try:
                await self.create_hub().on_disconnected(cause)
            except Exception as failure:
                report_unexpected(log, "on_disconnected", failure)

    def create_hub(self) -> Hub:
        context = HubCallerContext(
            connection_id=self.connection_id,
            user_id=self.user_id,
            tenant_id=self.tenant_id,
            roles=self.principal.roles,
            claims=self.principal.claims,
            items=self.items,
            request_close=self.request_close,
            query=self.query,
        )
        router = self.endpoint.router
        clients = HubClients(router, context, self.settings.client_result_timeout)
        groups = GroupManager(router, self.tenant_id)
        return self.endpoint.hub_class(context, clients, groups, self.endpoint.services)

    # -- handshake -------------------------------------------------------------------------------

    async def _handshake(self) -> HandshakeRequest | None:
        """HubProtocol.md, "Overview": the first record must be a HandshakeRequest."""
        request = None
        with trio.move_on_after(self.settings.handshake_timeout):
            try:
                request = await self._next_event()
            except RemoteProtocolError as error:
                HANDSHAKES.labels(self.endpoint.path, "rejected").inc()
                await self._reject(
                    "An unexpected error occurred during connection handshake. "
                    f"InvalidDataException: {error}",
                    closing.handshake_failed(error),
                )
                return None
            except ConnectionClosed:
                return None
        if request is None:
            HANDSHAKES.labels(self.endpoint.path, "timeout").inc()
            await self._reject(HANDSHAKE_CANCELED, closing.handshake_failed(timed_out=True))
            return None
        if request is CONNECTION_CLOSED or self.state is not HANDSHAKING:
            return None
        try:
            response = self._protocol.accept(request)
        except RemoteProtocolError as error:
            HANDSHAKES.labels(self.endpoint.path, "rejected").inc()
            await self._reject(str(error), closing.handshake_failed(error))
            return None
        HANDSHAKES.labels(self.endpoint.path, "accepted").inc()
        assert self._protocol.protocol is not None
        protocol = self._protocol.protocol
        self.wire = wire_for(protocol, self.transport.info.framer_for(protocol.transfer_format))
        if self._stateful and self._protocol.version >= 2 and self.transport.info.resumable:
            self._resumption = Resumption(
                self.settings.stateful_reconnect_buffer_size, self.settings.disconnect_timeout
            )
        self._move_to(OPEN)
        await self.transport.send(self.wire.frame(response))
        return request

    async def _reject(self, error: str, disconnect: Disconnect) -> None:
        """A handshake error response (the only answer the client gets), then close."""
        framer = self.transport.info.framer_for(TransferFormat.TEXT)
        await self.transport.send(framer.frame(self._protocol.reject(error)))
        self.close(disconnect)

    async def _next_event(self) -> Any:
        while True:
            event = self._protocol.next_event()
            if event is not NEED_DATA:
                return event
            self._protocol.receive_data(await self._receive())

    # -- reading ---------------------------------------------------------------------------------

    async def _read_loop(self, dispatcher: Dispatcher) -> None:
        """Read until the client leaves; a peer's protocol error closes the connection."""
        self._reading = True
        try:
            while True:
                event = await self._next_event()
                if event is CONNECTION_CLOSED:
                    return
                if self._resumption is not None and self._resumption.is_copy(event):
                    continue  # a copy a resuming client sent again
                await dispatcher.dispatch(event)
        except ClientClosed:
            return
        except RemoteProtocolError as error:
            report_client_error(log, f"protocol error on {self.connection_id}", str(error))
            self.close(closing.protocol_error(error))
        finally:
            self._reading = False

    async def _receive(self) -> bytes | None:
        """The next bytes; ``None`` if the client went away (and, with stateful
        reconnect, did not come back in time)."""
        while True:
            try:
                data = await self.transport.receive_some()
            except ConnectionClosed:
                if not await self._resume():
                    return None
                continue
            self._frames_received += 1
            return data

    async def _resume(self) -> bool:
        """Stateful reconnect: the transport is gone. Wait for the client to
        come back on a new one, then resend what it has not acknowledged."""
        resumption = self._resumption
        if resumption is None or self.state is not OPEN:
            return False
        self._move_to(SUSPENDED)
        transport = await resumption.wait_for_client()
        if transport is None:
            self.close(closing.did_not_come_back())
            return False
        self._use(transport)
        self._protocol.discard_partial()
        if not await resumption.replay_to(transport.send, self._sequence_frame):
            log.info("connection %s cannot resume: messages were dropped", self.connection_id)
            self.close(closing.resume_gap())
            return False
        if self.state is not SUSPENDED:
            return False  # closed while it was resending
        self._move_to(OPEN)  # caught up, with no await since the last look
        return True

    def _sequence_frame(self, sequence_id: int) -> Frame:
        assert self.wire is not None
        return self.wire.frame(self._protocol.send(SequenceMessage(sequence_id=sequence_id)))

    # -- what the dispatcher tells the connection ------------------------------------------------

    def client_pinged(self) -> None:
        """HubConnectionContext: the client timeout starts with the first Ping."""
        self._liveness.client_pinged(trio.current_time())

    def client_acknowledged(self, sequence_id: int) -> None:
        if self._resumption is not None:
            self._resumption.client_acknowledged(sequence_id)

    def client_resends_from(self, sequence_id: int) -> None:
        if self._resumption is not None:
            self._resumption.client_resends_from(sequence_id)

    @property
    def resumable(self) -> bool:
        """A stateful client may come back to this connection on a new WebSocket."""
        return self._resumption is not None and self.state in (OPEN, SUSPENDED)

    async def adopt(self, transport: Transport) -> None:
        """The client came back on a new WebSocket: hand it over, and wait
        while the connection uses it."""
        if self._resumption is None or not self.resumable:
            return transport.abort()
        await self._resumption.adopt(transport, self.transport)

    # -- the heartbeat ---------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Called by the server's heartbeat (``hubs.heartbeat``) about once a second."""
        if self.state not in (HANDSHAKING, OPEN):
            return
        activity = self.transport.activity(now)
        if self.transport.info.polled:
            # Long polling: a client with no poll in flight for the disconnect
            # timeout is gone (ASP.NET reaps it the same way).
            if activity.idle_seconds >= self.settings.disconnect_timeout:
                self.close(closing.stopped_polling())
                self.transport.abort()
            return
        if self.state is not OPEN:
            return
        if self._resumption is not None:
            self._acknowledge()
        match self._liveness.check(now, activity.frames_accepted, self._frames_received):
            case Verdict.PING:
                with contextlib.suppress(trio.WouldBlock):  # a full outbox has data to read
                    self.send_nowait(PING_MESSAGE)
            case Verdict.CLIENT_TIMED_OUT:
                self.close(closing.client_timed_out(self.settings.client_timeout))
            case Verdict.TOKEN_EXPIRED:
                self._say_last_words(self.endpoint.hub_class.token_expired_notice(self.items))
                self.close(closing.token_expired())

    def _say_last_words(self, messages: Sequence[HubMessage]) -> None:
        """What the hub tells a client before the server closes its connection
        (an application-level error event), if the outbox has room for it."""
        for message in messages:
            with contextlib.suppress(trio.WouldBlock):
                self.send_nowait(SerializedMessage(message))

    def _acknowledge(self) -> None:
        """An Ack for what the client sent since the last one (the JS client and
        ASP.NET acknowledge at most once a second, too)."""
        assert self._resumption is not None and self.wire is not None
        sequence_id = self._resumption.replay.ack_due()
        if sequence_id is not None:
            ack = self.wire.frame(self._protocol.send(AckMessage(sequence_id=sequence_id)))
            with contextlib.suppress(trio.WouldBlock):
                self.transport.send_nowait(ack)

    # -- writing ---------------------------------------------------------------------------------

    def send_nowait(self, message: SerializedMessage) -> None:
        """The fan-out entry point: the frame for this connection's wire, handed
        to the transport without waiting. ``trio.WouldBlock`` if the outbox is full."""
        if self.wire is None:
            return
        frame = message.frame_for(self.wire)
        if self._resumption is not None and is_tracked(message.message):
            self._resumption.replay.sent(frame)
            if self.state is SUSPENDED:
                return  # resent when the client comes back
        self.transport.send_nowait(frame)

    async def send_message(self, message: HubMessage) -> None:
        """Send one message to this client, waiting for room in the outbox."""
        if self.wire is None or self.state is CLOSED:
            return
        frame = self.wire.frame(self._protocol.send(message))
        if self._resumption is not None and is_tracked(message):
            self._resumption.replay.sent(frame)
            if self.state is SUSPENDED:
                return
        await self.transport.send(frame)

    async def invoke_client(self, target: str, arguments: tuple[Any, ...], timeout: float) -> Any:
        if self.state in (CLOSING, CLOSED):
            raise ClientLeft(f"Connection '{self.connection_id}' disconnected.")
        if not self._reading:
            raise ClientResultError(
                "Client results inside OnConnectedAsync Hub methods are not allowed."
            )
        invocation_id = self._client_results.new_id()
        self._client_results.register(invocation_id)
        await self.send_message(
            InvocationMessage(invocation_id=invocation_id, target=target, arguments=arguments)
        )
        return await self._client_results.wait_for(invocation_id, timeout)

    def lag(self) -> Lag:
        """How far behind this connection's client is (see ``Outbox.lag``)."""
        return self.transport.activity(trio.current_time()).lag

    # -- closing: the one path -------------------------------------------------------------------

    def close(self, disconnect: Disconnect) -> None:
        """End the connection for ``disconnect``'s reason. The first reason
        wins; the Close and the transport's end follow in ``_finish``."""
        if self.state in (CLOSING, CLOSED):
            return
        self.disconnect = disconnect
        self._move_to(CLOSING)
        if self._serving is not None:
            self._serving.cancel()

    def request_close(self, message: CloseMessage) -> None:
        """The hub (``Context.Abort()``) or the server (a revoked user) closes it."""
        self.close(closing.closed_by_server(message))

    def crashed(self, error: Exception) -> None:
        """Something unexpected failed while serving this connection: close it
        with an error (ASP.NET: "Connection closed with an error.", no reconnect)."""
        self.close(closing.failed(error, self._error_text(error)))

    def evict_slow_consumer(self) -> None:
        """A fan-out found the outbox full: Close if the socket takes it now,
        then abort. Never waits (docs/limits.md, "Outbox and slow consumers")."""
        if self.state in (CLOSING, CLOSED):
            return
        self.close(closing.slow_consumer())
        self.transport.abort(self._close_frame())

    def _error_text(self, error: Exception) -> str:
        return error_text(CLOSED_WITH_ERROR, error, self.settings.detailed_errors)

    def _close_frame(self) -> Frame | None:
        """The Close message ``disconnect`` carries, framed for this client."""
        if self.disconnect is None or self.disconnect.message is None or self.wire is None:
            return None
        return self.wire.frame(self._protocol.send(self.disconnect.message))

    async def _finish(self) -> None:
        """Say why (if the client can still hear it), close the transport, CLOSED;
        then let go of what would otherwise keep this connection alive."""
        if self.disconnect is None:
            self.disconnect = closing.CLIENT_LEFT  # nobody closed it: the client left
        last = self._close_frame()
        self._move_to(CLOSED)
        if self._resumption is not None:
            self._resumption.abandon()
        if not self.transport.closed:
            with trio.CancelScope(shield=True):
                await self.transport.aclose(last, timeout=self.settings.shutdown_timeout)

    def _abort(self, _: Exception) -> None:
        self.transport.abort()

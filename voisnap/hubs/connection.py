"""One hub connection's life, from handshake to close (ASP.NET Core's
``HubConnectionHandler`` and ``HubConnectionContext``).

Theory of operation
-------------------
``run()`` owns one nursery per connection. In it:

- the reader (``_read_loop``) feeds the sans-IO ``HubProtocolConnection`` and
  hands each message to the ``Dispatcher``; it is the connection's only
  long-lived task;
- hub methods run in tasks started when invocations arrive (one at a time for
  plain invocations, by default), and end when they return;
- the transport's writer runs only while its outbox holds a backlog.

Keep-alive Pings, the client timeout and token expiry are not tasks: the
server's heartbeat (``hubs.heartbeat``) calls ``tick`` about once a second.

The order is ASP.NET's: handshake (bounded by ``handshake_timeout``), join the
router, ``on_connected``, read until the client leaves or the server closes,
cancel the hub's work, leave the router, ``on_disconnected``, close the transport.

Three ways to end, one of which is synchronous:

- the client leaves (EOF, WebSocket Close, hub Close message): nothing to send;
- ``request_close(message)``: the server closes politely; the serving scope is
  cancelled, then the Close message and a transport close are written, bounded
  in time (protocol errors, client timeout, token expiry, shutdown);
- ``evict_slow_consumer()``: called by a fan-out that found the outbox full. It
  must not wait, so it tries the Close without blocking and aborts the socket.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import uuid
from typing import Any

import trio

from ..config import Settings
from ..errors import ConnectionClosed
from ..failures import error_boundary, report_client_error, report_unexpected
from ..principal import Principal
from ..protocol import (
    CONNECTION_CLOSED,
    NEED_DATA,
    PING,
    CloseMessage,
    HandshakeRequest,
    HubMessage,
    HubProtocolConnection,
    InvocationMessage,
    RemoteProtocolError,
    TransferFormat,
)
from ..routing.outbox import Lag
from ..routing.serialized import SerializedMessage
from ..transports.base import Transport
from ..transports.frames import Wire, wire_for
from .client_results import ClientResultError, ClientResults
from .dispatcher import ClientClosed, Dispatcher
from .endpoint import HubEndpoint
from .hub import GroupManager, Hub, HubCallerContext, HubClients
from .invocations import Invocations, error_text
from .liveness import Liveness, Verdict
from .replay import ReplayBuffer, is_tracked
from .resumption import StatefulReconnect

log = logging.getLogger(__name__)

PING_MESSAGE = SerializedMessage(PING)  # one Ping, serialized once per wire for every connection

SLOW_CONSUMER = "Server closed the connection: the client was too slow to read its messages."
TOKEN_EXPIRED = "Server closed the connection: the access token expired."
SHUTTING_DOWN = "Server is shutting down."
HANDSHAKE_CANCELED = "Handshake was canceled."
CLOSED_WITH_ERROR = "Connection closed with an error."


def new_connection_id() -> str:
    return uuid.uuid4().hex


class HubConnection(StatefulReconnect):
    # one per connection: slots keep idle connections small
    __slots__ = (
        "_adopted",
        "_arrival",
        "_client_results",
        "_close_message",
        "_coming",
        "_ended",
        "_failure",
        "_frames_received",
        "_liveness",
        "_nursery",
        "_protocol",
        "_reading",
        "_replay",
        "_serving",
        "_stateful",
        "_stop_requested",
        "_suspended",
        "connection_id",
        "endpoint",
        "items",
        "principal",
        "settings",
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
    ) -> None:
        self.endpoint = endpoint
        self.settings: Settings = endpoint.settings
        self.transport = transport
        self.principal = principal
        self.connection_id = connection_id or new_connection_id()
        self.user_id = principal.user_id
        self.tenant_id = principal.tenant_id
        self.wire: Wire | None = None
        self.items: dict[str, Any] = {}
        self._protocol = HubProtocolConnection(
            endpoint.protocols,
            transfer_format=transport.transfer_format,
            max_message_size=self.settings.max_message_size,
            limits=endpoint.limits,
        )
        self._client_results = ClientResults(endpoint.result_ids)
        self._serving: trio.CancelScope | None = None  # the work nursery's, once it is open
        self._stop_requested = False
        self._close_message: CloseMessage | None = None
        self._failure: Exception | None = None
        self._reading = False
        self._ended = False
        self._frames_received = 0
        # Stateful reconnect (``hubs.replay``): negotiated, then confirmed by a
        # version 2 handshake on a transport that can resume (WebSockets).
        self._stateful = stateful
        self._replay: ReplayBuffer | None = None
        self._nursery: trio.Nursery | None = None
        self._suspended = False  # the client is away; messages wait in the replay buffer
        self._arrival: trio.Event | None = None  # set when a resuming transport arrives
        self._coming: tuple[Transport, trio.Event] | None = None  # the resuming transport
        self._adopted: trio.Event | None = None  # set once the current transport is let go
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

    # -- life ------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until it ends. An unexpected exception inside
        (a bug) ends this connection with an error Close and nothing else."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._use(self.transport)
            try:
                with error_boundary(log, "a hub connection", self.crashed):
                    await self._serve()
            finally:
                self._ended = True
                with error_boundary(log, "closing a hub connection", self._abort):
                    await self._close_transport()
                self._let_go()
                nursery.cancel_scope.cancel()

    def crashed(self, error: Exception) -> None:
        """Something unexpected failed while serving this connection: close it
        with an error (ASP.NET: "Connection closed with an error.", no reconnect)."""
        if self._failure is None:
            self._failure = error
        self.request_close(
            CloseMessage(error=error_text(CLOSED_WITH_ERROR, error, self.settings.detailed_errors))
        )

    def _abort(self, _: Exception) -> None:
        self.transport.abort()

    def _use(self, transport: Transport) -> None:
        assert self._nursery is not None
        self.transport = transport
        transport.start(self._nursery)
        transport.on_closed = self._transport_closed

    def _transport_closed(self) -> None:
        """The transport may close under a reader that is busy elsewhere
        (waiting to pass an upload item on): stop serving then, unless the
        client may come back on a new one (stateful reconnect)."""
        if self._replay is None:
            self._stop_serving()

    async def _serve(self) -> None:
        """Handshake, then read and dispatch until the client leaves or the
        server closes; hub methods run in the same nursery, and end with it."""
        connected = False
        try:
            async with trio.open_nursery() as work:
                self._serving = work.cancel_scope
                if self._stop_requested:
                    work.cancel_scope.cancel()
                invocations = Invocations(
                    methods=self.endpoint.methods,
                    create_hub=self.create_hub,
                    send=self.send_message,
                    nursery=work,
                    detailed_errors=self.settings.detailed_errors,
                    max_parallel=self.settings.max_parallel_invocations,
                    stream_buffer_capacity=self.settings.stream_buffer_capacity,
                )
                try:
                    if await self._handshake() is not None:
                        connected = await self._connect()
                        if connected:
                            dispatcher = Dispatcher(invocations, self._client_results, self)
                            await self._read_loop(dispatcher)
                finally:
                    invocations.close()
                    work.cancel_scope.cancel()
        finally:
            # Also after a crash: the router must not keep a dead connection.
            if connected:
                await self._disconnect()

    async def _connect(self) -> bool:
        """Join the router and run ``on_connected``; False if it failed."""
        self.endpoint.router.add_connection(self)
        try:
            await self.create_hub().on_connected()
        except Exception as error:
            # ASP.NET: Close with the error and no allowReconnect, and no
            # OnDisconnectedAsync for a connection that never connected.
            report_unexpected(log, "on_connected", error)
            self._set_close(
                CloseMessage(
                    error=error_text(CLOSED_WITH_ERROR, error, self.settings.detailed_errors)
                )
            )
            self.endpoint.router.remove_connection(self)
            return False
        return True

    async def _disconnect(self) -> None:
        """Leave the router, fail pending client results, run ``on_disconnected``."""
        self.endpoint.router.remove_connection(self)
        self._client_results.fail_all(f"Connection '{self.connection_id}' disconnected.")
        with trio.CancelScope(shield=True), trio.move_on_after(self.settings.shutdown_timeout):
            await self._on_disconnected(self._failure)

    async def _on_disconnected(self, error: Exception | None) -> None:
        try:
            await self.create_hub().on_disconnected(error)
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
                await self._reject(
                    "An unexpected error occurred during connection handshake. "
                    f"InvalidDataException: {error}"
                )
                return None
            except ConnectionClosed:
                return None
        if request is None:
            await self._reject(HANDSHAKE_CANCELED)
            return None
        if request is CONNECTION_CLOSED:
            return None
        try:
            response = self._protocol.accept(request)
        except RemoteProtocolError as error:
            await self._reject(str(error))
            return None
        assert self._protocol.protocol is not None
        protocol = self._protocol.protocol
        self.wire = wire_for(protocol, self.transport.framer_for(protocol.transfer_format))
        if self._stateful and self._protocol.version >= 2 and self.transport.resumable:
            self._replay = ReplayBuffer(self.settings.stateful_reconnect_buffer_size)
        await self.transport.send(self.wire.frame(response))
        return request

    async def _reject(self, error: str) -> None:
        framer = self.transport.framer_for(TransferFormat.TEXT)
        await self.transport.send(framer.frame(self._protocol.reject(error)))

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
                if self._replay is not None and is_tracked(event) and not self._replay.accept():
                    continue  # a copy a resuming client sent again
                await dispatcher.dispatch(event)
        except ClientClosed:
            return
        except RemoteProtocolError as error:
            # The text names the peer's mistake, never our internals, so it is
            # always shown. ASP.NET allows a reconnect after a protocol error.
            report_client_error(log, f"protocol error on {self.connection_id}", str(error))
            self._fail(
                CloseMessage(
                    error=f"{CLOSED_WITH_ERROR} InvalidDataException: {error}",
                    allow_reconnect=True,
                ),
                error,
            )
        finally:
            self._reading = False

    async def _receive(self) -> bytes | None:
        """The next bytes; ``None`` if the client went away (and, with stateful
        reconnect, did not come back in time)."""
        while True:
            try:
                data = await self.transport.receive_some()
            except ConnectionClosed:
                if self._replay is None or self._stop_requested or not await self._resume():
                    return None
                continue
            self._frames_received += 1
            return data

    def client_pinged(self) -> None:
        """HubConnectionContext: the client timeout starts with the first Ping."""
        self._liveness.client_pinged(trio.current_time())

    # -- the heartbeat ---------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Called by the server's heartbeat (``hubs.heartbeat``) about once a second."""
        if self._ended:
            return
        if self.transport.inherent_keep_alive:
            # Long polling: a client with no poll in flight for the disconnect
            # timeout is gone (ASP.NET reaps it the same way).
            if self.transport.idle_seconds(now) >= self.settings.disconnect_timeout:
                self._failure = self._failure or ConnectionClosed("the client stopped polling")
                self.transport.abort()
            return
        if self.wire is None or self._suspended:
            return
        if self._replay is not None:
            self._acknowledge()
        verdict = self._liveness.check(now, self.transport.frames_accepted, self._frames_received)
        match verdict:
            case Verdict.PING:
                with contextlib.suppress(trio.WouldBlock):  # a full outbox has data to read
                    self.send_nowait(PING_MESSAGE)
            case Verdict.CLIENT_TIMED_OUT:
                seconds = f"{self.settings.client_timeout:g}"
                self._fail(
                    CloseMessage(
                        error=f"{CLOSED_WITH_ERROR} The client sent nothing for {seconds} seconds.",
                        allow_reconnect=True,
                    ),
                    ConnectionClosed(f"the client sent nothing for {seconds} seconds"),
                )
            case Verdict.TOKEN_EXPIRED:
                self._fail(
                    CloseMessage(error=TOKEN_EXPIRED, allow_reconnect=True),
                    ConnectionClosed("the access token expired"),
                )

    # -- writing ---------------------------------------------------------------------------------

    def send_nowait(self, message: SerializedMessage) -> None:
        """The fan-out entry point: the frame for this connection's wire, handed
        to the transport without waiting. ``trio.WouldBlock`` if the outbox is full."""
        if self.wire is None:
            return
        frame = message.frame_for(self.wire)
        if self._replay is not None and is_tracked(message.message):
            self._replay.sent(frame)
            if self._suspended:
                return  # resent when the client comes back
        self.transport.send_nowait(frame)

    async def send_message(self, message: HubMessage) -> None:
        """Send one message to this client, waiting for room in the outbox."""
        if self.wire is None or self._ended:
            return
        frame = self.wire.frame(self._protocol.send(message))
        if self._replay is not None and is_tracked(message):
            self._replay.sent(frame)
            if self._suspended:
                return
        await self.transport.send(frame)

    async def invoke_client(self, target: str, arguments: tuple[Any, ...], timeout: float) -> Any:
        if self._ended:
            raise ClientResultError(f"Connection '{self.connection_id}' disconnected.")
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

    # -- closing ---------------------------------------------------------------------------------

    def _set_close(self, message: CloseMessage) -> None:
        if self._close_message is None:
            self._close_message = message

    def request_close(self, message: CloseMessage) -> None:
        """Close politely: stop serving, then send ``message`` and close the transport."""
        self._set_close(message)
        self._stop_serving()

    def _stop_serving(self) -> None:
        self._stop_requested = True
        if self._serving is not None:
            self._serving.cancel()

    def _fail(self, message: CloseMessage, error: Exception) -> None:
        """Close because of ``error``, which ``on_disconnected`` will be given."""
        if self._failure is None:
            self._failure = error
        self.request_close(message)

    def lag(self) -> Lag:
        """How far behind this connection's client is (see ``Outbox.lag``)."""
        return self.transport.outbox.lag(trio.current_time())

    def evict_slow_consumer(self) -> None:
        """A fan-out found the outbox full: Close if the socket takes it now,
        then abort. Never waits (seen 000, "Backpressure": the slowest consumer
        is dropped)."""
        close = CloseMessage(error=SLOW_CONSUMER, allow_reconnect=True)
        self._set_close(close)
        if self._failure is None:
            self._failure = ConnectionClosed(SLOW_CONSUMER)
        last = self.wire.frame(self._protocol.send(close)) if self.wire else None
        self.transport.abort(last)
        self._stop_serving()

    async def _close_transport(self) -> None:
        if self.transport.closed:
            return
        last = None
        if self._close_message is not None and self.wire is not None:
            last = self.wire.frame(self._protocol.send(self._close_message))
        with trio.CancelScope(shield=True):
            await self.transport.aclose(last, timeout=self.settings.shutdown_timeout)

"""One hub connection's life, from handshake to close (ASP.NET Core's
``HubConnectionHandler`` and ``HubConnectionContext``).

Theory of operation
-------------------
``run()`` owns one nursery per connection. In it:

- the transport's writer drains the outbox (started first, so the handshake
  response can be written);
- the reader (``_read_loop``) feeds the sans-IO ``HubProtocolConnection`` and
  hands each message to the ``Dispatcher``;
- the keep-alive sends a Ping when nothing was sent for a while;
- the expiry watch closes the connection when its access token expires;
- the invocation queue runs hub methods; streams run in tasks of their own.

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

import logging
import time
import uuid
from typing import Any

import trio

from ..config import Settings
from ..errors import ConnectionClosed
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
from ..routing.serialized import SerializedMessage
from ..transports.base import Transport
from ..transports.frames import Wire, wire_for
from .client_results import ClientResultError, ClientResults
from .dispatcher import ClientClosed, Dispatcher
from .endpoint import HubEndpoint
from .hub import GroupManager, Hub, HubCallerContext, HubClients
from .invocations import Invocations, error_text

log = logging.getLogger(__name__)

SLOW_CONSUMER = "Server closed the connection: the client was too slow to read its messages."
TOKEN_EXPIRED = "Server closed the connection: the access token expired."
SHUTTING_DOWN = "Server is shutting down."
HANDSHAKE_CANCELED = "Handshake was canceled."
CLOSED_WITH_ERROR = "Connection closed with an error."


def new_connection_id() -> str:
    return uuid.uuid4().hex


class HubConnection:
    def __init__(
        self,
        *,
        endpoint: HubEndpoint,
        transport: Transport,
        principal: Principal,
        connection_id: str | None = None,
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
        )
        self._client_results = ClientResults(endpoint.result_ids)
        self._serving = trio.CancelScope()
        self._close_message: CloseMessage | None = None
        self._reading = False
        self._ended = False
        self._client_timeout_armed = False
        self.finished = trio.Event()

    # -- life ------------------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.transport.run_writer)
                try:
                    with self._serving:
                        request = await self._handshake()
                        if request is not None:
                            await self._serve()
                finally:
                    self._ended = True
                    await self._close_transport()
                    nursery.cancel_scope.cancel()
        finally:
            self.finished.set()

    async def _serve(self) -> None:
        router = self.endpoint.router
        router.add_connection(self)
        error: Exception | None = None
        try:
            error = await self._serve_hub()
        finally:
            router.remove_connection(self)
            self._client_results.fail_all(f"Connection '{self.connection_id}' disconnected.")
            with trio.CancelScope(shield=True), trio.move_on_after(self.settings.shutdown_timeout):
                await self._on_disconnected(error)

    async def _serve_hub(self) -> Exception | None:
        try:
            await self.create_hub().on_connected()
        except Exception as error:
            log.exception("on_connected failed for %s", self.connection_id)
            # ASP.NET: Close with the error and no allowReconnect.
            self._set_close(
                CloseMessage(
                    error=error_text(CLOSED_WITH_ERROR, error, self.settings.detailed_errors)
                )
            )
            return error
        async with trio.open_nursery() as work:
            invocations = Invocations(
                methods=self.endpoint.methods,
                create_hub=self.create_hub,
                send=self.send_message,
                nursery=work,
                detailed_errors=self.settings.detailed_errors,
                max_parallel=self.settings.max_parallel_invocations,
                stream_buffer_capacity=self.settings.stream_buffer_capacity,
            )
            work.start_soon(invocations.run_queue)
            work.start_soon(self._keep_alive)
            if self.principal.expires_at is not None:
                work.start_soon(self._close_at_expiry, self.principal.expires_at)
            try:
                return await self._read_loop(Dispatcher(invocations, self._client_results, self))
            finally:
                invocations.close()
                work.cancel_scope.cancel()

    async def _on_disconnected(self, error: Exception | None) -> None:
        try:
            await self.create_hub().on_disconnected(error)
        except Exception:
            log.exception("on_disconnected failed for %s", self.connection_id)

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

    async def _read_loop(self, dispatcher: Dispatcher) -> Exception | None:
        """Read until the client leaves; the exception it left with, if any."""
        self._reading = True
        try:
            while True:
                event = await self._next_event()
                if event is CONNECTION_CLOSED:
                    return None
                await dispatcher.dispatch(event)
        except ClientClosed:
            return None
        except ConnectionClosed as error:
            return error
        except RemoteProtocolError as error:
            # The text names the peer's mistake, never our internals, so it is
            # always shown. ASP.NET allows a reconnect after a protocol error.
            log.info("protocol error on %s: %s", self.connection_id, error)
            self._set_close(
                CloseMessage(
                    error=f"{CLOSED_WITH_ERROR} InvalidDataException: {error}", allow_reconnect=True
                )
            )
            return error
        finally:
            self._reading = False

    async def _receive(self) -> bytes | None:
        """The next bytes; ``None`` if the client went away. Once the client has
        sent a Ping, silence for ``client_timeout`` closes the connection (the
        timer starts with the first Ping, as in ASP.NET's HubConnectionContext)."""
        if not self._client_timeout_armed:
            return await self._receive_or_none()
        with trio.move_on_after(self.settings.client_timeout):
            return await self._receive_or_none()
        self.request_close(
            CloseMessage(
                error=f"{CLOSED_WITH_ERROR} The client sent nothing for "
                f"{self.settings.client_timeout:g} seconds.",
                allow_reconnect=True,
            )
        )
        raise ConnectionClosed("client timeout")

    async def _receive_or_none(self) -> bytes | None:
        try:
            return await self.transport.receive_some()
        except ConnectionClosed:
            return None

    def client_pinged(self) -> None:
        self._client_timeout_armed = True

    # -- writing ---------------------------------------------------------------------------------

    def send_nowait(self, message: SerializedMessage) -> None:
        """The fan-out entry point: the frame for this connection's wire, handed
        to the transport without waiting. ``trio.WouldBlock`` if the outbox is full."""
        if self.wire is not None:
            self.transport.send_nowait(message.frame_for(self.wire))

    async def send_message(self, message: HubMessage) -> None:
        """Send one message to this client, waiting for room in the outbox."""
        if self.wire is not None and not self._ended:
            await self.transport.send(self.wire.frame(self._protocol.send(message)))

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

    async def _keep_alive(self) -> None:
        """HubProtocol.md, "Ping": send a Ping when nothing was sent for a while.

        Watching a counter every half interval (instead of stamping the time on
        every send, which is the fan-out hot path) sends a Ping after between
        half and one ``keep_alive_interval`` of silence: never later.
        """
        assert self.wire is not None
        ping = SerializedMessage(PING)
        seen = -1
        while True:
            await trio.sleep(self.settings.keep_alive_interval / 2)
            if self.transport.frames_accepted == seen:
                try:
                    self.send_nowait(ping)
                except trio.WouldBlock:
                    pass  # a full outbox: the client has data to read already
            seen = self.transport.frames_accepted

    async def _close_at_expiry(self, expires_at: float) -> None:
        await trio.sleep(max(0.0, expires_at - time.time()))
        self.request_close(CloseMessage(error=TOKEN_EXPIRED, allow_reconnect=True))

    # -- closing ---------------------------------------------------------------------------------

    def _set_close(self, message: CloseMessage) -> None:
        if self._close_message is None:
            self._close_message = message

    def request_close(self, message: CloseMessage) -> None:
        """Close politely: stop serving, then send ``message`` and close the transport."""
        self._set_close(message)
        self._serving.cancel()

    def backlog_seconds(self) -> float:
        """How long this connection has had messages the kernel would not take."""
        since = self.transport.outbox.backlog_since
        return 0.0 if since is None else trio.current_time() - since

    def evict_slow_consumer(self) -> None:
        """A fan-out found the outbox full: Close if the socket takes it now,
        then abort. Never waits (seen 000, "Backpressure": the slowest consumer
        is dropped)."""
        close = CloseMessage(error=SLOW_CONSUMER, allow_reconnect=True)
        self._set_close(close)
        last = self.wire.frame(self._protocol.send(close)) if self.wire else None
        self.transport.abort(last)
        self._serving.cancel()

    async def _close_transport(self) -> None:
        if self.transport.closed:
            return
        last = None
        if self._close_message is not None and self.wire is not None:
            last = self.wire.frame(self._protocol.send(self._close_message))
        with trio.CancelScope(shield=True):
            await self.transport.aclose(last, timeout=self.settings.shutdown_timeout)

"""One connection of the node to ``/hubs/node``, over WebSockets.

docs/hubs/node.md, "The hub: ``/hubs/node``", and TransportProtocols.md:

1. negotiate: ``POST {url}/hubs/node/negotiate?negotiateVersion=1`` with the
   token as a Bearer header; the answer's ``connectionToken`` names the
   connection (TransportProtocols.md, "``POST [endpoint-base]/negotiate``"). A 401
   or 403 stops the node for good: a refused token does not get better;
2. the WebSocket ``ws(s)://host/hubs/node?id=CONNECTION_TOKEN&access_token=TOKEN``
   (TransportProtocols.md, "WebSockets (Full Duplex)": browsers cannot set
   headers on a WebSocket, so the token travels in the query);
3. the handshake (``signalr.py``), then hub messages until the connection ends.

While open, one reader handles the server's messages (HubProtocol.md,
"Invocation", "Completion", "Ping (aka Keep Alive)", "Close"), and three
companions share the connection's nursery: a Ping every ``ping_interval``
seconds, a ``Heartbeat`` every ``heartbeat_interval`` seconds (and at once),
and the late reporter of results whose connection died before they could be
sent. Each ``ExecuteCommand`` is answered from a task of its own, so a slow
command blocks neither heartbeats nor other commands. Every message leaves
through ``_send``, the one write point, where a closed WebSocket becomes
``ConnectionLost``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import httpx
import trio
import trio_websocket

from ..protocol import (
    PING,
    CloseMessage,
    CompletionMessage,
    HubMessage,
    InvocationMessage,
    PingMessage,
)
from .commands import NodeScopes
from .config import NodeConfig
from .errors import ConnectionLost, NodeStopped, token_refused
from .executor import CommandExecutor
from .results import command_result_to_wire, outcome_to_wire
from .signalr import ClientState, HandshakeRefused, HubClientProtocol
from .token import NodeIdentity

logger = logging.getLogger(__name__)

HUB_PATH = "/hubs/node"
REVOKED = "access revoked"


def websocket_url(base_url: str, connection_token: str, access_token: str) -> str:
    """``http(s)://host[/prefix]`` -> ``ws(s)://host[/prefix]/hubs/node?id=...&access_token=...``."""
    scheme, rest = base_url.split("://", 1)
    ws_scheme = {"http": "ws", "https": "wss"}[scheme]
    query = urlencode({"id": connection_token, "access_token": access_token})
    return f"{ws_scheme}://{rest}{HUB_PATH}?{query}"


class HubSession:
    """``await session.run()`` lasts as long as one connection; it always ends by raising."""

    def __init__(
        self,
        config: NodeConfig,
        identity: NodeIdentity,
        scopes: NodeScopes,
        executor: CommandExecutor,
        *,
        uptime: Callable[[], float],
        on_connected: Callable[[], None],
        http_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._config = config
        self._http_transport = http_transport
        self._identity = identity
        self._scopes = scopes
        self._executor = executor
        self._uptime = uptime
        self._on_connected = on_connected
        self._protocol = HubClientProtocol()
        self._websocket: trio_websocket.WebSocketConnection | None = None
        self._invocation_ids = itertools.count(1)
        self._pending: dict[str, str] = {}  # invocation id -> the hub method invoked

    async def run(self) -> None:
        connection_token = await self._negotiate()
        url = websocket_url(self._config.url, connection_token, self._config.token)
        try:
            async with trio_websocket.open_websocket_url(
                url, connect_timeout=self._config.request_timeout, disconnect_timeout=2
            ) as websocket:
                self._websocket = websocket
                early_messages = await self._handshake()
                self._on_connected()
                logger.info("connected to %s%s", self._config.url, HUB_PATH)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._keep_alive)
                    nursery.start_soon(self._heartbeats)
                    nursery.start_soon(self._report_late_results)
                    await self._read_loop(nursery, early_messages)
        except trio_websocket.ConnectionRejected as rejected:
            if rejected.status_code in (401, 403):
                body = (rejected.body or b"").decode("utf-8", "replace")
                raise token_refused(rejected.status_code, body) from None
            raise ConnectionLost(f"the WebSocket was refused ({rejected.status_code})") from None

    async def _negotiate(self) -> str:
        headers = {"Authorization": f"Bearer {self._config.token}"}
        async with httpx.AsyncClient(
            timeout=self._config.request_timeout, transport=self._http_transport
        ) as client:
            response = await client.post(
                f"{self._config.url}{HUB_PATH}/negotiate",
                params={"negotiateVersion": "1"},
                headers=headers,
            )
        if response.status_code in (401, 403):
            raise token_refused(response.status_code, response.text)
        if response.status_code != 200:
            raise ConnectionLost(f"negotiate answered {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ConnectionLost("negotiate answered with something other than a JSON object")
        # negotiateVersion 1 names the connection by its token; version 0 by its id.
        token = body.get("connectionToken") or body.get("connectionId")
        if not isinstance(token, str):
            raise ConnectionLost(f"negotiate gave no connection token: {body.get('error')}")
        return token

    async def _handshake(self) -> list[HubMessage]:
        """Send the HandshakeRequest, await the response; the hub messages that
        came in the same WebSocket message as the response are returned."""
        await self._send_text(self._protocol.handshake_request())
        messages: list[HubMessage] = []
        with trio.move_on_after(self._config.server_timeout) as waiting:
            while self._protocol.state is ClientState.AWAITING_HANDSHAKE:
                try:
                    messages += self._protocol.receive_text(await self._receive_text())
                except HandshakeRefused as refused:
                    raise ConnectionLost(f"the handshake was refused: {refused}") from None
        if waiting.cancelled_caught:
            raise ConnectionLost("the server did not answer the handshake")
        return messages

    async def _read_loop(self, nursery: trio.Nursery, messages: list[HubMessage]) -> None:
        """The one reader: a deadline of ``server_timeout`` on every message."""
        while True:
            for message in messages:
                await self._handle(message, nursery)
            with trio.move_on_after(self._config.server_timeout) as silence:
                text = await self._receive_text()
            if silence.cancelled_caught:
                timeout = self._config.server_timeout
                raise ConnectionLost(f"no message from the server for {timeout:g} seconds")
            messages = self._protocol.receive_text(text)

    async def _handle(self, message: HubMessage, nursery: trio.Nursery) -> None:
        match message:
            case InvocationMessage(target="ExecuteCommand"):
                nursery.start_soon(self._execute_command, message)
            case InvocationMessage(target="RefreshScopes"):
                await self._refresh_scopes(message)
            case InvocationMessage(target="RevokeAccess"):
                await self._revoke_access(message)
            case InvocationMessage():
                await self._refuse_unknown_method(message)
            case CompletionMessage():
                self._completion(message)
            case CloseMessage():
                self._closed(message)
            case PingMessage():
                pass
            case _:
                logger.debug("ignored a %s from the server", type(message).__name__)

    async def _execute_command(self, invocation: InvocationMessage) -> None:
        payload = invocation.arguments[0] if invocation.arguments else None
        delivery = _delivery_of(payload)
        if delivery is None:
            if invocation.invocation_id is not None:
                error = "ExecuteCommand needs one argument {commandId, command, params}."
                await self._send(CompletionMessage.with_error(invocation.invocation_id, error))
            return
        command_id, command, params = delivery
        async with self._executor.answer(command_id, command, params) as outcome:
            if invocation.invocation_id is None:
                # Not a client result: the only way back is CommandResult.
                await self._invoke("CommandResult", command_result_to_wire(command_id, outcome))
            else:
                answer = outcome_to_wire(outcome)
                await self._send(CompletionMessage.with_result(invocation.invocation_id, answer))

    async def _refresh_scopes(self, invocation: InvocationMessage) -> None:
        payload = invocation.arguments[0] if invocation.arguments else None
        try:
            scopes = self._scopes.adopt(
                payload.get("scopes") if isinstance(payload, dict) else None
            )
        except ValueError as error:
            logger.warning("RefreshScopes ignored: %s", error)
            if invocation.invocation_id is not None:
                await self._send(CompletionMessage.with_error(invocation.invocation_id, str(error)))
            return
        logger.info("scopes are now %s", ", ".join(sorted(scopes)) or "(none)")
        if invocation.invocation_id is not None:
            await self._send(CompletionMessage.empty(invocation.invocation_id))
        await self._invoke("ScopeChanged", {"scopes": sorted(scopes)})

    async def _revoke_access(self, invocation: InvocationMessage) -> None:
        """Stop for good; a gateway that asked for an answer gets one first, if it can."""
        if invocation.invocation_id is not None:
            # The gateway closes the connection right after: a failed send must not
            # hide the revocation behind a ConnectionLost.
            with contextlib.suppress(ConnectionLost):
                await self._send(CompletionMessage.empty(invocation.invocation_id))
        raise NodeStopped(REVOKED)

    async def _refuse_unknown_method(self, invocation: InvocationMessage) -> None:
        logger.warning("the server invoked %r, which the node does not have", invocation.target)
        if invocation.invocation_id is not None:
            error = f"The node has no method {invocation.target!r}."
            await self._send(CompletionMessage.with_error(invocation.invocation_id, error))

    def _completion(self, completion: CompletionMessage) -> None:
        target = self._pending.pop(completion.invocation_id, "?")
        if completion.error is not None:
            logger.warning("the hub answered %s with an error: %s", target, completion.error)

    def _closed(self, close: CloseMessage) -> None:
        # docs/hubs/node.md: the gateway closes a revoked node's connection
        # with "This node's access has been revoked.".
        if close.error and "revoked" in close.error:
            raise NodeStopped(REVOKED)
        raise ConnectionLost(f"the server closed the connection: {close.error or 'no error'}")

    async def _keep_alive(self) -> None:
        while True:
            await trio.sleep(self._config.ping_interval)
            await self._send(PING)

    async def _heartbeats(self) -> None:
        while True:
            heartbeat = {
                "nodeId": self._identity.node_id,
                "status": "ready",
                "uptime": round(self._uptime(), 3),
            }
            await self._invoke("Heartbeat", heartbeat)
            await trio.sleep(self._config.heartbeat_interval)

    async def _report_late_results(self) -> None:
        while True:
            for run in await self._executor.wait_unreported():
                assert run.outcome is not None
                await self._invoke(
                    "CommandResult", command_result_to_wire(run.command_id, run.outcome)
                )
                run.reported = True

    async def _invoke(self, target: str, payload: Any) -> None:
        invocation_id = str(next(self._invocation_ids))
        self._pending[invocation_id] = target
        message = InvocationMessage(
            invocation_id=invocation_id, target=target, arguments=(payload,)
        )
        await self._send(message)

    async def _send(self, message: HubMessage) -> None:
        await self._send_text(self._protocol.write(message))

    async def _send_text(self, text: str) -> None:
        assert self._websocket is not None
        try:
            await self._websocket.send_message(text)
        except trio_websocket.ConnectionClosed as closed:
            raise ConnectionLost(f"the WebSocket closed: {closed.reason}") from None

    async def _receive_text(self) -> str:
        assert self._websocket is not None
        try:
            message = await self._websocket.get_message()
        except trio_websocket.ConnectionClosed as closed:
            raise ConnectionLost(f"the WebSocket closed: {closed.reason}") from None
        return message if isinstance(message, str) else message.decode("utf-8")


def _delivery_of(payload: Any) -> tuple[str, str, Any] | None:
    """``(commandId, command, params)`` from an ExecuteCommand's argument, or None."""
    if not isinstance(payload, dict):
        return None
    command_id, command = payload.get("commandId"), payload.get("command")
    if not isinstance(command_id, str) or not isinstance(command, str):
        return None
    return command_id, command, payload.get("params")

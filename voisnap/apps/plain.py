"""What the plain WebSocket protocols share (``/v1/stream``, ``/v1/events``): the
door, and a connection's life (docs/v1-stream.md, docs/v1-events.md).

``admit`` answers an upgrade: the token comes from the subprotocol
``Bearer.<token>`` (selected in the answer, as browsers require) or
``?token=``, a JWT or an API token; a missing, invalid or expired one gets an
``UNAUTHORIZED`` error frame and the close code 4001, and a caller the
server's checks refuse (a node's token) ``FORBIDDEN`` and 1008.

``PlainConnection`` is a connection's life, whatever its protocol:

- one frame at a time, each in its own error boundary: a refusal (an
  exception of the protocol's ``refusals``, with a ``code``) gets an ``error``
  frame and the connection stays; an unexpected failure gets ``INTERNAL``, is
  logged once, and the connection stays too; a frame over the limit closes
  it with 1009;
- the token's expiry closes it (``UNAUTHORIZED``, 4001);
- keep-alive (seed 003): a ping every ``ping_interval``; a client heard from
  neither by a pong nor otherwise for ``pong_timeout`` is closed;
- a client too slow to read what it is sent is disconnected, without waiting;
- at its end, whoever ended it, the socket is closed at once (RFC 6455 7.1.1).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import attrs
import trio

from ..errors import AuthenticationError, ConnectionClosed
from ..failures import report_unexpected
from ..principal import Principal
from ..server.http import HttpError
from ..server.hub_server import HubServer
from ..transports.frames import Frame
from ..transports.plain import (
    MESSAGE_TOO_BIG,
    MessageSocket,
    MessageTooLarge,
    Upgrade,
    offered_subprotocols,
)

log = logging.getLogger(__name__)

BEARER = "Bearer."
NORMAL_CLOSURE = 1000
GOING_AWAY = 1001  # a client that stopped answering pings
POLICY_VIOLATION = 1008
UNAUTHENTICATED = 4001  # seed 004: "authentication failed; reconnect with a valid token"
UNAUTHORIZED, FORBIDDEN, INTERNAL = "UNAUTHORIZED", "FORBIDDEN", "INTERNAL"
CLOSE_TIMEOUT = 5.0
SEND_TIMEOUT = 30.0  # how long a reply may wait for a client that does not read


@attrs.frozen
class PlainSettings:
    max_frame: int
    ping_interval: float
    pong_timeout: float


def encode(message: dict[str, Any]) -> bytes:
    """A frame's JSON as UTF-8; always valid UTF-8 (a lone surrogate becomes "?")."""
    text = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8", errors="replace")


def error(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"type": "error", **extra, "code": code, "message": message}


async def admit(
    hubs: HubServer, path: str, upgrade: Upgrade
) -> tuple[MessageSocket, Principal] | None:
    """Accept the upgrade and say who the client is; None if it was refused
    (and closed)."""
    request = upgrade.request
    offered = [p for p in offered_subprotocols(request.headers) if p.startswith(BEARER)]
    token = offered[0][len(BEARER):] if offered else request.query.get("token")
    principal: Principal | None = None
    refusal = "A token is required: the subprotocol Bearer.<token>, or ?token=."
    if token:
        try:
            principal = await hubs.principal_of(token)
        except AuthenticationError as failure:
            refusal = str(failure)
    if principal is not None and _expired(principal):
        principal, refusal = None, "The token has expired."
    sock = await upgrade.accept(offered[0] if offered else None)
    if principal is None:
        await _refuse(sock, UNAUTHORIZED, refusal, UNAUTHENTICATED)
        return None
    try:
        await hubs.admit_principal(path, principal)
    except HttpError as failure:  # the apps' checks of who may connect
        await _refuse(sock, FORBIDDEN, failure.text, POLICY_VIOLATION)
        return None
    return sock, principal


def _expired(principal: Principal) -> bool:
    return principal.expires_at is not None and principal.expires_at <= time.time()


async def _refuse(sock: MessageSocket, code: str, why: str, close_code: int) -> None:
    """An ``error`` frame, then the close."""
    async with trio.open_nursery() as nursery:
        sock.start(nursery, nursery.cancel_scope.cancel)  # its writer, on either path
        await sock.send(sock.frame(encode(error(code, why))))
        await sock.close(close_code, why, CLOSE_TIMEOUT)
        nursery.cancel_scope.cancel()


class PlainConnection:
    """A plain WebSocket connection's life; a protocol fills in ``handle`` and ``ended``."""

    what = "a plain WebSocket frame"
    refusals: tuple[type[Exception], ...] = ()
    """Exceptions, each with a ``code``, that refuse one frame with an ``error``."""

    def __init__(self, sock: MessageSocket, principal: Principal, settings: PlainSettings) -> None:
        self.sock = sock
        self.principal = principal
        self.settings = settings

    async def handle(self, message: str | bytes) -> None:
        raise NotImplementedError

    def ended(self) -> None:
        """The connection is over: let go of what it holds (it must not wait)."""

    def refusal_frame(self, refusal: Exception) -> dict[str, Any]:
        return error(refusal.code, str(refusal))  # type: ignore[attr-defined]

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            self.sock.start(nursery, nursery.cancel_scope.cancel)
            if self.principal.expires_at is not None:
                nursery.start_soon(self._expire_at, self.principal.expires_at)
            nursery.start_soon(self._keep_alive)
            try:
                await self._read()
            finally:
                self.ended()
                nursery.cancel_scope.cancel()
                with trio.CancelScope(shield=True):
                    await self.sock.close(NORMAL_CLOSURE, "", CLOSE_TIMEOUT)

    async def _read(self) -> None:
        while True:
            try:
                message = await self.sock.receive(self.settings.max_frame)
            except MessageTooLarge as too_large:
                await self.sock.close(MESSAGE_TOO_BIG, str(too_large), CLOSE_TIMEOUT)
                return
            except ConnectionClosed:
                return
            try:
                await self.handle(message)
            except self.refusals as refusal:
                await self.send(self.refusal_frame(refusal))
            except Exception as failure:  # one frame's failure, not the connection's
                report_unexpected(log, self.what, failure)
                await self.send(error(INTERNAL, "The server failed to handle this frame."))

    async def _expire_at(self, expires_at: float) -> None:
        await trio.sleep(max(0.0, expires_at - time.time()))
        await self.send(error(UNAUTHORIZED, "The token has expired."))
        await self.sock.close(UNAUTHENTICATED, "token expired", CLOSE_TIMEOUT)

    async def _keep_alive(self) -> None:
        while True:
            await trio.sleep(self.settings.ping_interval)
            silent = trio.current_time() - self.sock.heard_at
            if silent > self.settings.pong_timeout:
                log.info("a client silent for %.0f s (no pong) was closed", silent)
                await self.sock.close(GOING_AWAY, "no pong", CLOSE_TIMEOUT)
                return
            self.sock.ping()

    # -- sending ----------------------------------------------------------------------------------

    async def send(self, message: dict[str, Any]) -> None:
        """A reply of the connection's own: waits for room (flow control), but
        not for ever: a client that reads nothing is disconnected."""
        await self.send_frame(self.sock.frame(encode(message)))

    async def send_frame(self, frame: Frame) -> None:
        with trio.move_on_after(SEND_TIMEOUT) as waited:
            await self.sock.send(frame)
        if waited.cancelled_caught:
            log.info("a client that read nothing for %s s was disconnected", SEND_TIMEOUT)
            self.sock.abort()

    def show_now(self, frame: Frame) -> None:
        """A fan-out's frame: never waits. A client whose outbox is full is
        disconnected at once (its tasks and subscriptions' events go on)."""
        try:
            self.sock.send_nowait(frame)
        except trio.WouldBlock:
            log.info("a client too slow for its events was disconnected")
            self.sock.abort()

"""Negotiated connections as every process sees them: no sticky sessions.

A client negotiates with one process and may send each later request to
another (a load balancer without affinity, a new TCP connection per request).
So a negotiation is recorded in the backplane (``share``), valid on every
process for ``disconnect_timeout``; the process that receives the
connection's first transport request claims it (``claim``: a conditional set,
so exactly one process wins) and owns it from then on (its hub state, groups,
replay buffer); a later request that arrives elsewhere is relayed to the owner
(``server.relay``). Bytes POSTed before any process claimed the connection
(signalrcore sends its handshake before its first poll) wait in the backplane
too (``add_early``), for whichever process claims it.

When the backplane cannot be reached, a process serves what it negotiated
itself, alone: negotiations are not shared and every claim is its own.
"""

from __future__ import annotations

import logging

import attrs
import msgpack

from ..backplane import Backplane, BackplaneError
from ..failures import report_client_error
from ..routing import names
from .connections import NegotiatedConnection

log = logging.getLogger(__name__)

CLAIM_TTL = 24 * 3600.0
"""A claim lives as long as its connection (it is deleted when the connection
ends); this bounds what a process that died leaves behind."""


@attrs.frozen
class SharedNegotiation:
    """What another process needs to know of a negotiated connection."""

    connection_id: str
    hub_path: str
    user_id: str
    tenant_id: str
    stateful: bool

    def encode(self) -> bytes:
        return msgpack.packb(
            [self.connection_id, self.hub_path, self.user_id, self.tenant_id, self.stateful]
        )

    @classmethod
    def decode(cls, data: bytes) -> SharedNegotiation | None:
        """None for anything that is not a record (whoever can write to Redis can write here)."""
        try:
            connection_id, hub_path, user_id, tenant_id, stateful = msgpack.unpackb(data)[:5]
        except Exception:  # msgpack's errors, a wrong shape: not a record
            return None
        texts = (connection_id, hub_path, user_id, tenant_id)
        if not all(isinstance(text, str) for text in texts) or not isinstance(stateful, bool):
            return None
        return cls(connection_id, hub_path, user_id, tenant_id, stateful)


class SharedNegotiations:
    def __init__(self, backplane: Backplane, disconnect_timeout: float) -> None:
        self._backplane = backplane
        self._timeout = disconnect_timeout

    @property
    def node_id(self) -> str:
        return self._backplane.node_id

    async def share(self, negotiated: NegotiatedConnection) -> None:
        record = SharedNegotiation(
            negotiated.connection_id,
            negotiated.hub_path,
            negotiated.principal.user_id,
            negotiated.principal.tenant_id,
            negotiated.stateful,
        )
        key = names.negotiation_key(negotiated.connection_token)
        try:
            await self._backplane.set(key, record.encode(), self._timeout)
        except BackplaneError as error:
            _unshared(error)

    async def fetch(self, token: str) -> SharedNegotiation | None:
        try:
            data = await self._backplane.get(names.negotiation_key(token))
        except BackplaneError as error:
            _unshared(error)
            return None
        return None if data is None else SharedNegotiation.decode(data)

    async def claim(self, token: str) -> str | None:
        """Claim the connection for this process: None if it is ours now, else
        the id of the process that claimed it first (this one, if it ran the
        connection before: a token is good for one connection only). Once
        claimed, the negotiation is no longer shared: nobody else may start it."""
        key = names.claim_key(token)
        mine = self.node_id.encode()
        try:
            if await self._backplane.set(key, mine, CLAIM_TTL, only_if_absent=True):
                await self._backplane.delete(names.negotiation_key(token))
                return None
            owner = await self._backplane.get(key)
        except BackplaneError as error:
            _unshared(error)
            return None
        return None if owner is None else owner.decode(errors="replace")

    async def owner(self, token: str) -> str | None:
        """The process that claimed the connection, if one did."""
        try:
            owner = await self._backplane.get(names.claim_key(token))
        except BackplaneError as error:
            _unshared(error)
            return None
        return None if owner is None else owner.decode(errors="replace")

    async def forget(self, token: str) -> None:
        """The connection ended: nobody may use its token again, anywhere."""
        for key in (names.negotiation_key(token), names.claim_key(token), names.early_key(token)):
            try:
                await self._backplane.delete(key)
            except BackplaneError as error:
                _unshared(error)
                return

    async def add_early(self, token: str, data: bytes, limit: int) -> bool:
        """Keep bytes POSTed before the connection started; False past ``limit``."""
        key = names.early_key(token)
        try:
            held = await self._backplane.get(key) or b""
            if len(held) + len(data) > limit:
                return False
            await self._backplane.set(key, held + data, self._timeout)
        except BackplaneError as error:
            _unshared(error)
            return False
        return True

    async def take_early(self, token: str) -> bytes:
        key = names.early_key(token)
        try:
            data = await self._backplane.get(key)
            if data:
                await self._backplane.delete(key)
        except BackplaneError as error:
            _unshared(error)
            return b""
        return data or b""


def _unshared(error: BackplaneError) -> None:
    report_client_error(log, "negotiations are not shared while the backplane is down", str(error))

"""``/hubs/playground``: every feature of the protocol in one small hub.

For people learning SignalR, for the tests and for the bench. Each method shows
one thing: a plain invocation (``Echo``), a server-to-client stream
(``Counter``), a client-to-server stream (``Sum``), a client result (``Ask``,
and ``AskConnection`` for another connection, which may be on another
process), groups (``JoinGroup``, ``LeaveGroup``, ``SendToGroup``), a user's
every connection (``SendToUser``) and a tenant-wide broadcast (``Broadcast``).
Clients receive group, user and broadcast payloads as ``Receive(payload)``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import trio

from ..errors import HubError
from ..hubs.hub import Hub

MAX_GROUP_NAME = 256


def checked_group_name(name: str) -> str:
    if not 0 < len(name) <= MAX_GROUP_NAME:
        raise HubError(f"A group name must be 1 to {MAX_GROUP_NAME} characters long.")
    return name


class PlaygroundHub(Hub):
    async def echo(self, value: Any) -> Any:
        """Return ``value`` unchanged."""
        return value

    async def counter(self, count: int, delay_ms: int) -> AsyncIterator[int]:
        """Stream 0, 1, ... count-1, one every ``delay_ms`` milliseconds."""
        if count < 0 or delay_ms < 0:
            raise HubError("count and delayMs must not be negative.")
        for number in range(count):
            yield number
            await trio.sleep(delay_ms / 1000)

    async def sum(self, numbers: AsyncIterator[int | float]) -> int | float:
        """The total of a stream the client uploads."""
        total: int | float = 0
        async for number in numbers:
            total += number
        return total

    async def ask(self, question: str) -> Any:
        """Ask the caller's ``Prompt(question)`` handler and return its answer."""
        return await self.clients.caller.invoke("Prompt", question)

    async def ask_connection(self, connection_id: str, question: str) -> Any:
        """Ask another connection's ``Prompt(question)`` handler (a connection of
        the caller's tenant, on any process) and return its answer."""
        return await self.clients.connection(connection_id).invoke("Prompt", question)

    async def join_group(self, name: str) -> None:
        await self.groups.add(self.context.connection_id, checked_group_name(name))

    async def leave_group(self, name: str) -> None:
        await self.groups.remove(self.context.connection_id, checked_group_name(name))

    async def send_to_group(self, name: str, payload: Any) -> None:
        """Every member of group ``name`` (in the caller's tenant) receives ``Receive(payload)``."""
        await self.clients.group(checked_group_name(name)).send("Receive", payload)

    async def send_to_user(self, user_id: str, payload: Any) -> None:
        """Every connection of user ``user_id`` (in the caller's tenant, on any
        process) receives ``Receive(payload)``."""
        await self.clients.user(user_id).send("Receive", payload)

    async def broadcast(self, payload: Any) -> None:
        """Every connection of this hub in the caller's tenant receives ``Receive(payload)``."""
        await self.clients.all.send("Receive", payload)

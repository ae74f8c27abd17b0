"""``/hubs/chat``: docs/hubs/chat.md, "Methods (client to server)" and "Session scoping".

Client to server: ``SendMessage``, ``CancelTask``, ``JoinSession``,
``LeaveSession``, and ``StreamAudio`` (``apps.voice.listening``; docs/voice.md).
Everything a message sets off happens in the task runtime (``agents.runtime``);
this hub accepts, stores and queues, and manages which sessions a connection watches.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import attrs

from ...agents.registry import AgentRegistry, UnknownAgent
from ...agents.reminder_times import UserZones
from ...agents.runtime import RuntimeBusy, TaskRuntime
from ...errors import HubError
from ...hubs.hub import Hub
from ...principal import zone_of
from ...storage.base import Owner, Store
from ..voice.listening import Listening
from .audience import legacy_group, session_group
from .events import CancelTaskRequest, SendMessageRequest, SendMessageResult
from .intake import Said, accept, announce, is_voisnap_session
from .notifier import ChatEvents

MAX_ID = 128
MAX_CONTENT = 16_000
SCOPED = "chat.joined-a-session"  # connection item: this client called JoinSession


@attrs.define
class ChatServices:
    store: Store
    agents: AgentRegistry
    runtime: TaskRuntime
    events: ChatEvents
    zones: UserZones = attrs.field(factory=UserZones)
    """Each user's time zone, for the reminder tools (docs/reminders.md)."""
    listening: Listening | None = None
    """``StreamAudio`` (docs/voice.md); None: this server takes no audio."""


class ChatHub(Hub):
    services: ChatServices

    @property
    def owner(self) -> Owner:
        return Owner(self.context.tenant_id, self.context.user_id)

    async def on_connected(self) -> None:
        # The tools of this user's tasks read times in the user's zone; they run in
        # the task runtime, which has no token to read it from (docs/reminders.md).
        self.services.zones.remember(self.owner, zone_of(self.context.claims))
        # Until it calls JoinSession, a client receives its user's task events
        # user-wide (docs/hubs/chat.md, "Session scoping": legacy clients fall
        # back to user-wide events).
        await self.groups.add(self.context.connection_id, legacy_group(self.context.user_id))

    async def send_message(self, request: SendMessageRequest) -> SendMessageResult:
        """Store the message and its task, announce TaskQueued, queue the task."""
        services = self.services
        _check_request(request)
        try:
            services.agents.get(request.agent_id)
            await services.runtime.check_capacity()
        except (UnknownAgent, RuntimeBusy) as error:
            raise HubError(str(error)) from None
        said = Said(
            owner=self.owner,
            session_id=request.session_id,
            agent_id=request.agent_id,
            content=request.content,
            is_streaming=request.is_streaming,
            channel_id=request.channel_id,
            client_message_id=request.message_id,
        )
        accepted = await accept(services, said)
        task = accepted.task
        result = SendMessageResult(task.task_id, task.session_id, task.message_id)
        if not accepted.created:
            return result  # a retry: the task exists and was announced already
        if accepted.session_created:
            await self.groups.add(self.context.connection_id, session_group(task.session_id))
        await announce(services, self.owner, task)
        return result

    async def stream_audio(
        self, session_id: str, audio_chunks: AsyncIterator[Any], mode: str | None = None
    ) -> None:
        """Speech in (base64 chunks of 16 kHz mono linear16 PCM), transcripts out
        to this connection alone, each final one into the session as the user's
        message (docs/voice.md)."""
        listening = self.services.listening
        if listening is None:
            raise HubError("This server takes no audio.")
        await listening.stream(self.clients.caller, self.owner, session_id, audio_chunks, mode)

    async def cancel_task(self, request: CancelTaskRequest) -> None:
        """Cancel a queued or running task of the caller's; a finished one is left as it is."""
        task = await self.services.store.get_task(self.owner, request.task_id)
        if task is None:
            raise HubError(f"Task '{request.task_id}' does not exist.")
        if not task.state.finished:
            await self.services.runtime.cancel(task, self.context.user_id)

    async def join_session(self, session_id: str) -> None:
        """Watch one session. The same error for an unknown and a foreign
        session, so that ids cannot be probed."""
        if await self.services.store.get_session(self.owner, session_id) is None:
            raise HubError(f"Session '{session_id}' does not exist or is not yours.")
        connection_id = self.context.connection_id
        if not self.context.items.get(SCOPED):
            self.context.items[SCOPED] = True
            await self.groups.remove(connection_id, legacy_group(self.context.user_id))
        await self.groups.add(connection_id, session_group(session_id))

    async def leave_session(self, session_id: str) -> None:
        await self.groups.remove(self.context.connection_id, session_group(session_id))


def _check_request(request: SendMessageRequest) -> None:
    if not request.content.strip():
        raise HubError("A message needs some content.")
    if len(request.content) > MAX_CONTENT:
        raise HubError(f"A message may be at most {MAX_CONTENT} characters long.")
    for name, value in (("sessionId", request.session_id), ("messageId", request.message_id)):
        if value is not None and not 0 < len(value) <= MAX_ID:
            raise HubError(f"'{name}' must be 1 to {MAX_ID} characters long.")
    if request.session_id is not None and is_voisnap_session(request.session_id):
        raise HubError(f"Session '{request.session_id}' belongs to the Voisnap hubs.")

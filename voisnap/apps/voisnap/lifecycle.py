"""The lifecycle both Voisnap hubs share (seed 002, "Connection lifecycle";
docs/hubs/voisnap.md, "Lifecycle").

The token is checked at negotiate and at the upgrade (401, by the framework);
then ``SessionStarted``; the exchange; ``EndSessionAsync`` or a disconnect;
``SessionEnded``; the socket closes. What cannot go on is said with ``Error``
and then the connection closes, its Close carrying the same message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import trio

from ...agents.registry import AgentRegistry
from ...errors import HubError
from ...hubs.hub import Hub, invocation_of
from ...protocol import InvocationMessage
from ...storage.base import Conversation, Owner, TaskState
from ..chat.hub import ChatServices
from . import errors
from .conversations import Conversations
from .errors import VoisnapFault
from .events import ConversationEnded, SessionEnded, SessionStarted
from .face import session_group

LETTING_GO = 5.0
"""Seconds a connection that failed to start has to give back its place."""
CONVERSATION = "voisnap.conversation"
"""Connection item: the connection's ``Conversation``, once it started."""
ENDED_BY_USER = "ended_by_user"
TOKEN_EXPIRED = "auth_failed"


@attrs.define
class VoisnapServices:
    conversations: Conversations
    chat: ChatServices
    """The store, the runtime, the faces: a Voisnap message enters the same
    pipeline as a Sophon one (``apps.chat.intake``)."""
    agents: AgentRegistry
    calls: Any = None
    """``calls.Calls``: the VoiceHub's speech in and out."""
    webrtc: Any = None
    """``webrtc_hub.WebRtcMedia``: the WebRtcHub's media worker and places."""


class VoisnapHub(Hub):
    """What both Voisnap hubs do with their connection's conversation."""

    services: VoisnapServices
    kind = ""
    """``chat`` or ``voice`` (VoiceHub and WebRtcHub: calls)."""

    @property
    def owner(self) -> Owner:
        return Owner(self.context.tenant_id, self.context.user_id)

    @property
    def conversation(self) -> Conversation:
        conversation = self.context.items.get(CONVERSATION)
        if conversation is None:  # only before SessionStarted, which precedes every call
            raise HubError("The session has not started.")
        return conversation

    async def on_connected(self) -> None:
        context = self.context
        try:
            conversation, resumed = await self.services.conversations.open(
                self.owner, context.connection_id, context.query, self.kind, context.abort
            )
        except VoisnapFault as fault:
            await self._fail(fault)
            return
        try:
            context.items[CONVERSATION] = conversation
            await self._join(conversation)
            started = SessionStarted(conversation.session_id, conversation.agent_id, resumed)
            await self.clients.caller.send("SessionStarted", started)
        except BaseException:
            # A client gone in the middle (cancelled), or a failure: on_disconnected
            # will not run, so the place in the tenant's limit is given back here.
            with trio.CancelScope(shield=True), trio.move_on_after(LETTING_GO):
                await self._leave()
            raise

    async def _join(self, conversation: Conversation) -> None:
        """Everything a connection of ``conversation`` takes part in."""
        await self.groups.add(self.context.connection_id, session_group(conversation.session_id))

    async def on_disconnected(self, error: Exception | None) -> None:
        await self._leave()

    async def _leave(self) -> None:
        conversation = self.context.items.pop(CONVERSATION, None)
        if conversation is not None:
            await self.services.conversations.leave(
                conversation.session_id, self.context.connection_id
            )

    async def _fail(self, fault: VoisnapFault) -> None:
        """``Error``; then, if it is not recoverable, the connection closes."""
        await self.clients.caller.send("Error", fault.event())
        if not fault.recoverable:
            self.context.abort(f"{fault.code}: {fault}")

    async def _refuse(self, fault: VoisnapFault) -> None:
        """A call that cannot be taken: ``Error`` for those who ``send``, and the
        same text as the Completion's error for those who ``invoke``."""
        await self._fail(fault)
        raise HubError(f"{fault.code}: {fault}")

    async def _check_not_ended(self) -> Conversation:
        conversation = self.conversation
        if await self.services.conversations.is_ended(conversation.session_id):
            await self._refuse(VoisnapFault(errors.SESSION_ENDED, "This session has ended."))
        return conversation

    async def end_session_async(self) -> None:
        """End the session for good: ``ConversationEnded`` and ``SessionEnded``
        to each of its connections, then they close (this one after its reply)."""
        conversation = self.conversation
        services = self.services
        session_id = conversation.session_id
        ended = await services.conversations.end(self.owner, session_id, ENDED_BY_USER)
        if ended:
            await self._cancel_reply()
        # The caller hears the goodbye after its Completion: the seed's hook
        # stops its connection on ConversationEnded, which would cancel the call.
        self.context.after_reply(lambda: self._goodbye(session_id, ended))

    async def _goodbye(self, session_id: str, ended: bool) -> None:
        if ended:
            group = self.clients.group(session_group(session_id))
            # SessionEnded first: the seed's hook stops its connection on
            # ConversationEnded, and would never see what came after it.
            await group.send("SessionEnded", SessionEnded(session_id, ENDED_BY_USER))
            await group.send("ConversationEnded", ConversationEnded(session_id, ENDED_BY_USER))
            self.services.conversations.close_local(
                session_id, self.context.connection_id, "The session has ended."
            )
        self.context.abort()

    async def _cancel_reply(self) -> None:
        """Stop the replies being generated or waiting to be (a message sent
        while the agent was still answering the one before), if any."""
        chat = self.services.chat
        session_id = self.conversation.session_id
        unfinished = (TaskState.QUEUED, TaskState.RUNNING, TaskState.WAITING)
        for task in await chat.store.list_tasks(self.owner, states=unfinished, limit=100):
            if task.session_id == session_id:
                await chat.runtime.cancel(task, self.context.user_id)

    @classmethod
    def token_expired_notice(cls, items: Mapping[str, Any]) -> Sequence[InvocationMessage]:
        """``Error{AUTH_FAILED}`` and ``SessionEnded`` before the Close. The
        session itself goes on: the client may resume it with a new token."""
        fault = VoisnapFault(errors.AUTH_FAILED, "The access token has expired.")
        notice = [invocation_of("Error", (fault.event(),))]
        conversation = items.get(CONVERSATION)
        if conversation is not None:
            ended = SessionEnded(conversation.session_id, TOKEN_EXPIRED)
            notice.append(invocation_of("SessionEnded", (ended,)))
        return notice

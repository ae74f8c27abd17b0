"""Voisnap's ChatHub (seed 001; docs/hubs/voisnap.md, "ChatHub").

``/voisnap/hubs/chat?agentId=...`` (the prefix is ``--voisnap-hubs-prefix``).
Client to server: ``SendMessageAsync({content, metadata})``, ``TypingAsync()``,
``CancelAsync()``, ``EndSessionAsync()``. The replies are rendered by
``face.VoisnapFace``; the lifecycle is ``lifecycle.VoisnapHub``'s.
"""

from __future__ import annotations

import json
from typing import Any

import trio

from ...agents.runtime import RuntimeBusy
from ...errors import HubError
from ..chat.intake import Said, accept, announce
from . import errors
from .errors import VoisnapFault
from .events import SendMessageRequest, UserTyping
from .face import session_group
from .lifecycle import VoisnapHub

MAX_CONTENT = 16_000
MAX_METADATA = 4096
TYPING_INTERVAL = 1.0
"""Seconds: at most one ``UserTyping`` per connection this often; calls in
between are taken and dropped, so a client may call on every keystroke."""
TYPED_AT = "voisnap.typed-at"  # connection item: when its last UserTyping went out
CHANNEL = "voisnap-chat"


class VoisnapChatHub(VoisnapHub):
    kind = "chat"

    async def send_message_async(self, request: Any) -> None:
        """The user's message, into the agent pipeline; the reply comes as ``MessageReceived``.
        ``request`` is read here, not by the binder, so that a malformed one is
        ``INVALID_REQUEST`` like any other bad message (docs/hubs/voisnap.md, "Errors")."""
        request = await self._read_message(request)
        conversation = await self._check_not_ended()
        chat = self.services.chat
        try:
            await chat.runtime.check_capacity()
        except RuntimeBusy as error:
            raise HubError(str(error)) from None
        said = Said(
            self.owner, conversation.session_id, conversation.agent_id, request.content,
            channel_id=CHANNEL, metadata=request.metadata,
        )
        accepted = await accept(chat, said)
        if accepted.created:
            await announce(chat, self.owner, accepted.task)
        if self.context.items.pop(TYPED_AT, None) is not None:
            await self._others().send("UserTyping", UserTyping(False))

    async def typing_async(self) -> None:
        """Tell the conversation's other connections (a second tab) that the user types."""
        now = trio.current_time()
        items = self.context.items
        if now - items.get(TYPED_AT, -TYPING_INTERVAL) < TYPING_INTERVAL:
            return
        items[TYPED_AT] = now
        await self._others().send("UserTyping", UserTyping(True))

    async def cancel_async(self) -> None:
        """Stop the reply being generated; its final ``MessageReceived`` carries
        what was produced so far. Nothing to stop is not an error."""
        await self._cancel_reply()

    def _others(self) -> Any:
        return self.clients.others_in_group(session_group(self.conversation.session_id))

    async def _read_message(self, request: Any) -> SendMessageRequest:
        problem = _problem_of(request)
        if problem is not None:
            await self._refuse(VoisnapFault(errors.INVALID_REQUEST, problem, recoverable=True))
        fields = _fields(request)
        return SendMessageRequest(fields["content"], fields.get("metadata"))


def _fields(request: dict[Any, Any]) -> dict[str, Any]:
    """Property names matched ignoring case, as the binder matches them."""
    return {key.lower(): value for key, value in request.items() if isinstance(key, str)}


def _problem_of(request: Any) -> str | None:
    """Why ``request`` is not ``{content, metadata?}``, or None."""
    if not isinstance(request, dict):
        return "SendMessageAsync takes one object: {content, metadata}."
    fields = _fields(request)
    content, metadata = fields.get("content"), fields.get("metadata")
    if not isinstance(content, str) or not content.strip():
        return "A message needs some content (a non-empty string)."
    if len(content) > MAX_CONTENT:
        return f"A message may be at most {MAX_CONTENT} characters long."
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        return "A message's metadata must be an object."
    try:
        size = len(json.dumps(metadata, ensure_ascii=False, allow_nan=False,
                              separators=(",", ":")).encode())
    except (TypeError, ValueError, RecursionError):
        return "A message's metadata must be plain JSON."
    if size > MAX_METADATA:
        return f"A message's metadata may be at most {MAX_METADATA} bytes of JSON."
    return None

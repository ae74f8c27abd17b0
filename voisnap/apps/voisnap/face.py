"""The Voisnap rendering of the task runtime's events (docs/hubs/voisnap.md, "Replies").

The runtime reports a task once (``apps.faces``); for a task of a Voisnap
session this face renders it for the Voisnap hubs, and only for them (the
Sophon faces pass such tasks by: ``SophonOnly``):

- ChatHub: ``TypingIndicator{true}`` when the agent starts; each streamed delta
  as ``MessageReceived{isChunk: true, isFinal: false}`` under the reply's id;
  then the final ``MessageReceived{isChunk: false, isFinal: true}`` with the
  whole reply, then ``TypingIndicator{false}``. Every reply has at least one
  chunk, and the chunks add up to the stored reply: what was not streamed (an
  empty or a tool-only reply, text from before a wait) goes as one last chunk.
  A cancelled reply ends with a final carrying what was produced so far.
- VoiceHub: the reply is spoken sentence by sentence as it streams, so that the
  caller hears its start while the agent still writes the rest: each sentence
  is published on the session's speech channel (``calls.Spoken``), which the
  process holding the call listens to; the rest goes with the final message.
- Both: a failed reply is ``Error{LLM_PROVIDER_ERROR, recoverable: true}``.

Each event goes to the session's group on its hub's router, serialized once
however many connections (tabs) the conversation has.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ...agents.chat_job import reply_id
from ...hubs.hub import invocation_of
from ...routing.router import Router, group_key
from ...storage.base import Message, Task, utc_now
from . import errors
from .calls import Spoken
from .conversations import is_voice_session, is_voisnap_session
from .events import Error, MessageReceived, TypingIndicator

GROUP_PREFIX = "voisnap-session/"


def session_group(session_id: str) -> str:
    return GROUP_PREFIX + session_id


class VoisnapFace:
    def __init__(self, chat: Router, calls: Sequence[Router], speech: Any) -> None:
        self._chat = chat
        self._calls = tuple(calls)  # the hubs of calls: VoiceHub, WebRtcHub
        self._speech = speech  # calls.Calls: says a piece of a reply in its call
        self._streamed: dict[str, list[str]] = {}
        """Task id -> the deltas sent so far (ChatHub tasks only, while they run)."""
        self._sentences: dict[str, Sentences] = {}
        """Task id -> its reply, cut into sentences (VoiceHub tasks only, while they run)."""

    async def _send(self, task: Task, target: str, payload: Any) -> None:
        routers = self._calls if is_voice_session(task.session_id) else (self._chat,)
        key = group_key(task.owner.tenant_id, session_group(task.session_id))
        message = invocation_of(target, (payload,))
        for router in routers:
            await router.send_group(key, message)

    async def started(self, task: Task) -> None:
        if is_voice_session(task.session_id):
            self._sentences[task.task_id] = Sentences()
        elif is_voisnap_session(task.session_id):
            self._streamed[task.task_id] = []
            await self._send(task, "TypingIndicator", TypingIndicator(True))

    async def status(self, task: Task, status: str, detail: str | None) -> None:
        if status == "resuming":  # after a wait, perhaps in another process
            await self.started(task)

    async def waiting(self, task: Task, request: Any) -> None:
        """The agent waits for a person (hours, perhaps): it types no more for now."""
        self._sentences.pop(task.task_id, None)
        if self._streamed.pop(task.task_id, None) is not None:
            await self._send(task, "TypingIndicator", TypingIndicator(False))

    async def chunk(self, task: Task, delta: str, is_final: bool) -> None:
        if not delta:
            return
        sentences = self._sentences.get(task.task_id)
        if sentences is not None:
            for sentence in sentences.add(delta):
                spoken = Spoken(reply_id(task.task_id), sentence, sentences.said, False)
                await self._speech.say(task.session_id, spoken)
            return
        streamed = self._streamed.get(task.task_id)
        if streamed is None:
            return
        streamed.append(delta)
        await self._chunk(task, delta)

    async def _chunk(self, task: Task, delta: str) -> None:
        payload = MessageReceived(reply_id(task.task_id), delta, True, False, utc_now())
        await self._send(task, "MessageReceived", payload)

    async def message(self, task: Task, message: Message) -> None:
        if not is_voisnap_session(task.session_id):
            return
        if is_voice_session(task.session_id):
            said = self._sentences.pop(task.task_id, Sentences()).said
            rest = message.content[len(said) :] if message.content.startswith(said) else ""
            spoken = Spoken(message.message_id, rest, message.content, True)
            await self._speech.say(task.session_id, spoken)
            return
        await self._final(task, message.message_id, message.content)

    async def _final(self, task: Task, message_id: str, content: str) -> None:
        """The chunk still owed (so that the chunks add up to ``content``), the
        final message, and the end of typing."""
        sent = "".join(self._streamed.pop(task.task_id, ()))
        if not sent:
            await self._chunk(task, content)  # an empty or tool-only reply: one chunk, whole
        elif content.startswith(sent) and content != sent:
            await self._chunk(task, content[len(sent) :])  # what was not streamed
        final = MessageReceived(message_id, content, False, True, utc_now())
        await self._send(task, "MessageReceived", final)
        await self._send(task, "TypingIndicator", TypingIndicator(False))

    async def cancelled(self, task: Task, cancelled_by: str) -> None:
        sentences = self._sentences.pop(task.task_id, None)
        if sentences is not None:  # what was said is the whole reply
            spoken = Spoken(reply_id(task.task_id), "", sentences.said, True)
            await self._speech.say(task.session_id, spoken)
        if task.task_id in self._streamed:
            produced = "".join(self._streamed[task.task_id])
            await self._final(task, reply_id(task.task_id), produced)

    async def failed(self, task: Task, error: str) -> None:
        """Also when another process failed the task (its runner's lease lapsed):
        then this process has nothing of it, and typing still ends here."""
        if not is_voisnap_session(task.session_id):
            return
        sentences = self._sentences.pop(task.task_id, None)
        if sentences is not None:  # the agent's transcript ends with what it said
            spoken = Spoken(reply_id(task.task_id), "", sentences.said, True)
            await self._speech.say(task.session_id, spoken)
        self._streamed.pop(task.task_id, None)
        if not is_voice_session(task.session_id):
            await self._send(task, "TypingIndicator", TypingIndicator(False))
        fault = Error(
            errors.LLM_PROVIDER_ERROR, f"The agent could not reply: {error}", recoverable=True
        )
        await self._send(task, "Error", fault)


class Sentences:
    """A reply as it streams, cut where a sentence ends (``.``, ``!``, ``?``,
    ``;`` or ``:`` before a space, or a line break): each sentence can be
    spoken while the next is written. ``said`` is what was cut so far."""

    END = re.compile(r"[.!?;:](?=\s)|\n")

    def __init__(self) -> None:
        self.said = ""
        self._pending = ""

    def add(self, delta: str) -> list[str]:
        self._pending += delta
        sentences = []
        while (end := self.END.search(self._pending)) is not None:
            sentence, self._pending = (
                self._pending[: end.end()], self._pending[end.end() :]
            )
            self.said += sentence
            if sentence.strip():
                sentences.append(sentence)
        return sentences


class SophonOnly:
    """A Sophon face, shown only what happens in Sophon sessions: the two
    products' clients never see each other's events."""

    def __init__(self, face: Any) -> None:
        self._face = face

    def __getattr__(self, event: str) -> Any:
        show = getattr(self._face, event)

        async def shown_if_sophon(subject: Any, *arguments: Any) -> None:
            session_id = getattr(subject, "session_id", None)
            if isinstance(session_id, str) and is_voisnap_session(session_id):
                return
            await show(subject, *arguments)

        return shown_if_sophon

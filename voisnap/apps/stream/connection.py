"""One ``/v1/stream`` connection (seed 004; docs/v1-stream.md).

The door and the connection's life (authentication and 4001, one frame at a
time in its own error boundary, 1009, keep-alive, expiry) are every plain
WebSocket protocol's (``apps.plain``); this is the stream's part.

A ``StreamConnection`` watches the sessions it submitted to, started or
resumed (``sessions``), and shows their events as they come; a client too
slow to take them is disconnected (its tasks go on; it can resume). While a
session replays, its live events wait, then pass the resume's cut (``resume``).
"""

from __future__ import annotations

from typing import Any

import attrs

from ...agents.base import ToolCall, transcript_from_json, unanswered
from ...agents.decisions import Decider, DecisionError
from ...agents.registry import UnknownAgent
from ...agents.tools import ASK_USER
from ...principal import Principal
from ...server.hub_server import HubServer
from ...storage.base import InfoRequest, Owner, Session, StoreError, TaskState, utc_now
from ...transports.plain import MessageSocket, Upgrade
from ..chat.hub import ChatServices
from ..chat.intake import is_voisnap_session, new_id
from ..plain import PlainConnection, PlainSettings, admit
from . import events
from .events import StreamEvent
from .protocol import (
    AnswerTask,
    BadFrame,
    CancelTask,
    ClientMessage,
    ResumeSession,
    SessionTurn,
    StartSession,
    SubmitTask,
    parse,
)
from .resume import Cut, replay
from .sessions import StreamSessions
from .submission import (
    BAD_REQUEST,
    DEFAULT_PROFILE,
    NOT_FOUND,
    RATE_LIMITED,
    Refused,
    Submission,
    submit,
)
from .turns import TurnLogs

PATH = "/v1/stream"
ADMIN = "admin"
MAX_HELD = 10_000  # live events a session may hold back while it replays
MAX_WATCHED = 100  # sessions one connection shows


@attrs.frozen
class StreamServices:
    hubs: HubServer
    chat: ChatServices
    sessions: StreamSessions
    turns: TurnLogs
    settings: PlainSettings


async def serve(services: StreamServices, upgrade: Upgrade) -> None:
    """Answer a ``/v1/stream`` upgrade, and serve the connection to its end."""
    admitted = await admit(services.hubs, PATH, upgrade)
    if admitted is not None:
        await StreamConnection(services, *admitted).run()


@attrs.define
class Watched:
    """A session this connection shows: ``held`` (events waiting while it
    replays, or None when live) and the last resume's ``cut``."""

    held: list[StreamEvent] | None = None
    cut: Cut | None = None


class StreamConnection(PlainConnection):
    what = "a /v1/stream frame"
    refusals = (BadFrame, Refused)

    def __init__(self, services: StreamServices, sock: MessageSocket, principal: Principal) -> None:
        super().__init__(sock, principal, services.settings)
        self._services = services
        self._chat = services.chat
        self._owner = Owner(principal.tenant_id, principal.user_id)
        self._is_admin = principal.has_role(ADMIN)
        self._watched: dict[str, Watched] = {}

    async def handle(self, message: str | bytes) -> None:
        await self._handle(parse(message))

    def ended(self) -> None:
        for session_id in list(self._watched):
            self._services.sessions.unwatch(self._owner.tenant_id, session_id, self)
        self._watched.clear()

    # -- the sessions' events ---------------------------------------------------------------------

    def show(self, session_id: str, event: StreamEvent) -> None:
        """A watched session's live event (``sessions.Watcher``)."""
        watched = self._watched.get(session_id)
        if watched is None or (event.admin_only and not self._is_admin):
            return
        if watched.held is not None:
            if len(watched.held) >= MAX_HELD:
                self.sock.abort()
            watched.held.append(event)
        elif watched.cut is None or watched.cut.passes(event):
            self.show_now(event.frame_for(self.sock))

    async def _watch(self, session_id: str, *, hold: bool) -> Watched:
        """Show ``session_id``'s events from now on (holding them back if ``hold``)."""
        watched = self._watched.get(session_id)
        if watched is None:
            self._check_room()
            watched = self._watched[session_id] = Watched()
            await self._services.sessions.watch(self._owner.tenant_id, session_id, self)
        if hold and watched.held is None:
            watched.held = []
        return watched

    def _check_room(self) -> None:
        if len(self._watched) >= MAX_WATCHED:
            raise Refused(RATE_LIMITED, f"A connection may watch {MAX_WATCHED} sessions: "
                          "open another connection for more.")

    def _release(self, watched: Watched) -> None:
        """Show what was held back (through the cut), and go live."""
        held, watched.held = watched.held or [], None
        for event in held:
            if watched.cut is None or watched.cut.passes(event):
                self.show_now(event.frame_for(self.sock))

    # -- the client's frames ------------------------------------------------------------------

    async def _handle(self, message: ClientMessage) -> None:
        match message:
            case SubmitTask(body=body):
                await self._submit(Submission.of(body))
            case SessionTurn(session_id=session_id, prompt=prompt):
                session = await self._session(session_id)
                profile = session.agent_id or await self._latest_profile(session_id)
                await self._submit(Submission("session", prompt, profile, session_id))
            case StartSession(profile_id=profile_id):
                await self._start(profile_id or DEFAULT_PROFILE)
            case ResumeSession(session_id=session_id):
                await self._resume(session_id)
            case CancelTask(task_id=task_id):
                await self._cancel(task_id)
            case AnswerTask(task_id=task_id, answer=answer):
                await self._answer(task_id, answer)

    async def _submit(self, submission: Submission) -> None:
        if submission.session_id is not None:
            await self._session(submission.session_id)
            await self._watch(submission.session_id, hold=False)
            await submit(self._chat, self._owner, submission)
            return
        session_id = new_id("sess")
        watched = await self._watch(session_id, hold=True)
        try:
            await submit(self._chat, self._owner, submission, new_session_id=session_id)
        except Refused:
            self._unwatch(session_id)
            raise
        await self.send(self._ready(session_id, submission.profile_id))
        self._release(watched)

    async def _start(self, profile_id: str) -> None:
        try:
            self._chat.agents.get(profile_id)
        except UnknownAgent as error:
            raise Refused(NOT_FOUND, str(error)) from None
        self._check_room()  # before the session is made, not after
        now = utc_now()
        session = Session(new_id("sess"), self._owner, "", now, now, profile_id)
        try:
            await self._chat.store.create_session(session)
        except StoreError as error:
            raise Refused(BAD_REQUEST, str(error)) from None
        await self._watch(session.session_id, hold=False)
        await self.send(self._ready(session.session_id, profile_id))

    def _ready(self, session_id: str, profile_id: str) -> dict[str, Any]:
        """``session.ready``: the container is the voisnap process that made the
        session (docs/v1-stream.md, "session.ready")."""
        node = self._services.sessions.node_id
        return events.session_ready(session_id, f"ctr_{node}", f"voisnap-{node[:12]}", profile_id)

    async def _resume(self, session_id: str) -> None:
        await self._session(session_id)
        watched = await self._watch(session_id, hold=True)
        try:
            replayed, watched.cut = await replay(
                self._chat.store, self._services.turns, self._owner, session_id
            )
            for event in replayed:
                if self._is_admin or not event.admin_only:
                    await self.send_frame(event.frame_for(self.sock))
        finally:
            self._release(watched)

    async def _cancel(self, task_id: str) -> None:
        task = await self._chat.store.get_task(self._owner, task_id)
        if task is None or is_voisnap_session(task.session_id):
            raise Refused(NOT_FOUND, f"Task '{task_id}' does not exist.")
        if not task.state.finished:
            await self._chat.runtime.cancel(task, self._owner.user_id)

    async def _answer(self, task_id: str, answer: str) -> None:
        task = await self._chat.store.get_task(self._owner, task_id)
        if task is None or is_voisnap_session(task.session_id):
            raise Refused(NOT_FOUND, f"Task '{task_id}' does not exist.")
        question = await self._open_question(task_id) if task.state is TaskState.WAITING else None
        if question is None:
            raise Refused(BAD_REQUEST, f"Task '{task_id}' is not waiting for an answer.")
        principal = self.principal
        decider = Decider(principal.tenant_id, principal.user_id, principal.roles)
        try:
            await self._chat.runtime.decisions.answer(decider, question.info_id, answer)
        except DecisionError as error:
            raise Refused(BAD_REQUEST, str(error)) from None

    async def _open_question(self, task_id: str) -> InfoRequest | None:
        """The agent's unanswered question, if its task waits for one (not an approval)."""
        transcript = transcript_from_json(await self._chat.store.get_transcript(task_id))
        for call in unanswered(transcript):
            if isinstance(call, ToolCall) and call.name == ASK_USER:
                request = await self._chat.store.request_for_call(task_id, call.call_id)
                if isinstance(request, InfoRequest) and request.status == "pending":
                    return request
        return None

    # -- sessions -------------------------------------------------------------------------------

    async def _session(self, session_id: str) -> Session:
        """The caller's session (NOT_FOUND for another's: ids cannot be probed)."""
        session = await self._chat.store.get_session(self._owner, session_id)
        if session is None or is_voisnap_session(session_id):
            raise Refused(NOT_FOUND, f"Session '{session_id}' does not exist.")
        return session

    async def _latest_profile(self, session_id: str) -> str:
        latest = await self._chat.store.latest_session_task(self._owner, session_id)
        return DEFAULT_PROFILE if latest is None else latest.agent_id

    def _unwatch(self, session_id: str) -> None:
        if self._watched.pop(session_id, None) is not None:
            self._services.sessions.unwatch(self._owner.tenant_id, session_id, self)

"""One ``/v1/stream`` connection (seed 004; docs/v1-stream.md).

``serve`` answers the upgrade: the token comes from the subprotocol
``Bearer.<token>`` (selected in the answer, as browsers require) or
``?token=``; a missing, invalid or expired one gets an ``UNAUTHORIZED`` error
frame and the close code 4001, and so does a token that expires while the
connection is open.

A ``StreamConnection`` then reads one frame at a time, each in its own error
boundary: a bad frame gets an ``error`` frame and the connection stays; an
unexpected failure gets ``INTERNAL``, is logged once, and the connection
stays too. A frame over ``--plain-ws-max-frame`` closes it with 1009.

It watches the sessions it submitted to, started or resumed (``sessions``),
and shows their events as they come; a client too slow to take them is
disconnected (its tasks go on; it can resume). While a session replays, its
live events wait, then pass the resume's cut (``resume``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import attrs
import trio

from ...agents.base import ToolCall, transcript_from_json, unanswered
from ...agents.decisions import Decider, DecisionError
from ...agents.registry import UnknownAgent
from ...agents.tools import ASK_USER
from ...errors import AuthenticationError, ConnectionClosed
from ...failures import report_unexpected
from ...principal import Principal
from ...server.http import HttpError
from ...server.hub_server import HubServer
from ...storage.base import InfoRequest, Owner, Session, StoreError, TaskState, utc_now
from ...transports.frames import Frame
from ...transports.plain import (
    MESSAGE_TOO_BIG,
    MessageSocket,
    MessageTooLarge,
    Upgrade,
    offered_subprotocols,
)
from ..chat.hub import ChatServices
from ..chat.intake import is_voisnap_session, new_id
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

log = logging.getLogger(__name__)

PATH = "/v1/stream"
BEARER = "Bearer."
UNAUTHENTICATED = 4001  # seed 004: "authentication failed; reconnect with a valid token"
POLICY_VIOLATION = 1008
UNAUTHORIZED, FORBIDDEN, INTERNAL = "UNAUTHORIZED", "FORBIDDEN", "INTERNAL"
CLOSE_TIMEOUT = 5.0
SEND_TIMEOUT = 30.0  # how long a reply may wait for a client that does not read
NORMAL_CLOSURE = 1000
ADMIN = "admin"
MAX_HELD = 10_000  # live events a session may hold back while it replays
MAX_WATCHED = 100  # sessions one connection shows


@attrs.frozen
class StreamServices:
    hubs: HubServer
    chat: ChatServices
    sessions: StreamSessions
    turns: TurnLogs
    max_frame: int


async def serve(services: StreamServices, upgrade: Upgrade) -> None:
    """Answer a ``/v1/stream`` upgrade, and serve the connection to its end."""
    request = upgrade.request
    offered = [p for p in offered_subprotocols(request.headers) if p.startswith(BEARER)]
    token = offered[0][len(BEARER):] if offered else request.query.get("token")
    principal: Principal | None = None
    refusal = "A token is required: the subprotocol Bearer.<token>, or ?token=."
    if token:
        try:
            principal = await services.hubs.principal_of(token)
            refusal = ""
        except AuthenticationError as error:
            refusal = str(error)
    if principal is not None and _expired(principal):
        principal, refusal = None, "The token has expired."
    sock = await upgrade.accept(offered[0] if offered else None)
    if principal is None:
        return await _refuse(sock, UNAUTHORIZED, refusal, UNAUTHENTICATED)
    try:
        await services.hubs.admit_principal(PATH, principal)
    except HttpError as error:  # the apps' checks of who may connect
        return await _refuse(sock, FORBIDDEN, error.text, POLICY_VIOLATION)
    await StreamConnection(services, sock, principal).run()


def _expired(principal: Principal) -> bool:
    return principal.expires_at is not None and principal.expires_at <= time.time()


async def _refuse(sock: MessageSocket, code: str, why: str, close_code: int) -> None:
    """An ``error`` frame, then the close."""
    async with trio.open_nursery() as nursery:
        sock.start(nursery, nursery.cancel_scope.cancel)  # its writer, on either path
        await sock.send(sock.frame(events.encode(events.error(code, why))))
        await sock.close(close_code, why[:100], CLOSE_TIMEOUT)
        nursery.cancel_scope.cancel()


@attrs.define
class Watched:
    """A session this connection shows: ``held`` (events waiting while it
    replays, or None when live) and the last resume's ``cut``."""

    held: list[StreamEvent] | None = None
    cut: Cut | None = None


class StreamConnection:
    def __init__(self, services: StreamServices, sock: MessageSocket, principal: Principal) -> None:
        self._services = services
        self._chat = services.chat
        self._sock = sock
        self._principal = principal
        self._owner = Owner(principal.tenant_id, principal.user_id)
        self._is_admin = principal.has_role(ADMIN)
        self._watched: dict[str, Watched] = {}

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            self._sock.start(nursery, nursery.cancel_scope.cancel)
            if self._principal.expires_at is not None:
                nursery.start_soon(self._expire_at, self._principal.expires_at)
            try:
                await self._read()
            finally:
                for session_id in list(self._watched):
                    self._services.sessions.unwatch(self._owner.tenant_id, session_id, self)
                self._watched.clear()
                nursery.cancel_scope.cancel()
                # Whoever ended it, the socket goes now (RFC 6455 7.1.1: after the
                # Close handshake the server closes the TCP connection at once).
                with trio.CancelScope(shield=True):
                    await self._sock.close(NORMAL_CLOSURE, "", CLOSE_TIMEOUT)

    async def _read(self) -> None:
        while True:
            try:
                message = await self._sock.receive(self._services.max_frame)
            except MessageTooLarge as error:
                await self._sock.close(MESSAGE_TOO_BIG, str(error), CLOSE_TIMEOUT)
                return
            except ConnectionClosed:
                return
            try:
                await self._handle(parse(message))
            except (BadFrame, Refused) as refusal:
                await self._error(refusal.code, str(refusal))
            except Exception as error:  # one frame's failure, not the connection's
                report_unexpected(log, "a /v1/stream frame", error)
                await self._error(INTERNAL, "The server failed to handle this frame.")

    async def _expire_at(self, expires_at: float) -> None:
        await trio.sleep(max(0.0, expires_at - time.time()))
        await self._error(UNAUTHORIZED, "The token has expired.")
        await self._sock.close(UNAUTHENTICATED, "token expired", CLOSE_TIMEOUT)

    # -- sending ----------------------------------------------------------------------------------

    async def _send(self, event: dict[str, Any]) -> None:
        """A reply of this connection's own: waits for room (flow control), but
        not for ever: a client that reads nothing is disconnected."""
        await self._send_frame(self._sock.frame(events.encode(event)))

    async def _send_frame(self, frame: Frame) -> None:
        with trio.move_on_after(SEND_TIMEOUT) as waited:
            await self._sock.send(frame)
        if waited.cancelled_caught:
            log.info("a /v1/stream client that read nothing for %s s was disconnected",
                     SEND_TIMEOUT)
            self._sock.abort()

    async def _error(self, code: str, message: str) -> None:
        await self._send(events.error(code, message))

    def show(self, session_id: str, event: StreamEvent) -> None:
        """A watched session's live event (``sessions.Watcher``)."""
        watched = self._watched.get(session_id)
        if watched is None or (event.admin_only and not self._is_admin):
            return
        if watched.held is not None:
            if len(watched.held) >= MAX_HELD:
                self._sock.abort()
            watched.held.append(event)
        elif watched.cut is None or watched.cut.passes(event):
            self._show_now(event)

    def _show_now(self, event: StreamEvent) -> None:
        try:
            self._sock.send_nowait(event.frame_for(self._sock))
        except trio.WouldBlock:  # too slow to take the stream: disconnected, its tasks go on
            log.info("a /v1/stream client too slow for its events was disconnected")
            self._sock.abort()

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
                self._show_now(event)

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
            watched = await self._watch(submission.session_id, hold=False)
            await submit(self._chat, self._owner, submission)
            return
        session_id = new_id("sess")
        watched = await self._watch(session_id, hold=True)
        try:
            await submit(self._chat, self._owner, submission, new_session_id=session_id)
        except Refused:
            self._unwatch(session_id)
            raise
        await self._send(self._ready(session_id, submission.profile_id))
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
        await self._send(self._ready(session.session_id, profile_id))

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
                    await self._send_frame(event.frame_for(self._sock))
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
        principal = self._principal
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

"""A Voisnap session from connect to end (docs/hubs/voisnap.md, "Lifecycle", "Sessions").

Both Voisnap hubs open their connection's conversation here: the connect query
is read and checked (``agentId``, ``sessionId``, ``metadata``, ``language``),
the agent is looked up, and the conversation is started or resumed in the
store, which counts the tenant's live conversations against
``--max-sessions-per-tenant`` across every process. Each connection holds its
conversation with a link renewed by this process (``run``) until it leaves.

A conversation is a session of the store like any other: its messages and
tasks are stored and run as the Sophon hubs' are. Its id starts with
``vchat_`` (ChatHub) or ``vcall_`` (VoiceHub), which is how the faces tell the
products' sessions, and the hubs, apart without a lookup per event
(``is_voisnap_session``, ``is_voice_session``).
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import trio

from ...agents.registry import AgentRegistry, InactiveAgent, UnknownAgent
from ...clock import Clock
from ...failures import report_client_error
from ...storage.base import Conversation, ConversationLink, Owner, Refusal, Store
from ..chat.intake import VOISNAP_CALL, VOISNAP_CHAT, is_voice_session, is_voisnap_session
from . import errors
from .errors import VoisnapFault

__all__ = ["Conversations", "is_voice_session", "is_voisnap_session"]

log = logging.getLogger(__name__)

PREFIXES = {"chat": VOISNAP_CHAT, "voice": VOISNAP_CALL}
MAX_ID = 128
MAX_METADATA = 4096  # bytes of the URL-decoded JSON
# BCP 47 (RFC 5646) well-formed tags, as browsers and speech services use them:
# a 2-3 letter language (or 4-8 registered), optional script, region, variants.
LANGUAGE = re.compile(
    r"(?:[A-Za-z]{2,3}(?:-[A-Za-z]{3}){0,3}|[A-Za-z]{4,8})"  # language (extended)
    r"(?:-[A-Za-z]{4})?"  # script
    r"(?:-(?:[A-Za-z]{2}|[0-9]{3}))?"  # region
    r"(?:-(?:[A-Za-z0-9]{5,8}|[0-9][A-Za-z0-9]{3}))*",  # variants
)
MAX_LANGUAGE = 35


def new_session_id(hub: str) -> str:
    return f"{PREFIXES[hub]}{uuid.uuid4().hex}"


class Conversations:
    def __init__(
        self,
        store: Store,
        agents: AgentRegistry,
        clock: Clock,
        *,
        node: str,
        limit: int,
        resume_window: float,
        lease: float,
        renewal: float,
    ) -> None:
        self._store: Any = store
        self._agents = agents
        self._clock = clock
        self._node = node
        self._limit = limit
        self._resume_window = datetime.timedelta(seconds=resume_window)
        self._lease = datetime.timedelta(seconds=lease)
        self._renewal = renewal
        self._local: dict[str, dict[str, Callable[[str], None]]] = {}
        """Session id -> this process's connections of it, each with its abort."""
        self._links: dict[str, ConversationLink] = {}
        """Connection id -> its link: what this process holds, renewed by ``run``."""
        self._opening: set[str] = set()
        """Connections whose link is being written: a renewal must not take it for stale."""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep this process's links alive (the service, in the server's nursery).
        A failed renewal (the store is down) is reported and tried again next time."""
        task_status.started()
        while True:
            await trio.sleep(self._renewal)
            until = self._clock.now() + self._lease
            try:
                await self._store.renew_conversation_links(
                    self._node, list(self._links.values()), until, opening=set(self._opening)
                )
            except Exception as error:  # the store's own errors, and its drivers'
                report_client_error(log, "Voisnap session leases were not renewed", repr(error))

    async def open(
        self, owner: Owner, connection_id: str, query: Mapping[str, str], hub: str,
        abort: Callable[[str], None],
    ) -> tuple[Conversation, bool]:
        """The connection's conversation, and whether it was resumed; a
        ``VoisnapFault`` says why there is none."""
        agent_id, session_id, metadata, language = _read_query(query)
        if session_id is not None and not session_id.startswith(PREFIXES[hub]):
            raise _gone(session_id)
        try:
            self._agents.entry(agent_id)
        except InactiveAgent:
            raise VoisnapFault(
                errors.AGENT_INACTIVE, f"Agent '{agent_id}' is not active."
            ) from None
        except UnknownAgent:
            raise VoisnapFault(
                errors.AGENT_NOT_FOUND, f"No agent with ID {agent_id} found."
            ) from None
        now = self._clock.now()
        link = ConversationLink(
            connection_id, session_id or new_session_id(hub), owner.tenant_id, self._node,
            now + self._lease,
        )
        self._opening.add(connection_id)
        try:
            conversation, resumed = await self._start_or_resume(
                owner, hub, link, session_id, agent_id, metadata, language
            )
        finally:
            self._opening.discard(connection_id)
        self._local.setdefault(conversation.session_id, {})[connection_id] = abort
        self._links[connection_id] = attrs.evolve(link, session_id=conversation.session_id)
        return conversation, resumed

    async def _start_or_resume(
        self,
        owner: Owner,
        hub: str,
        link: ConversationLink,
        session_id: str | None,
        agent_id: str,
        metadata: dict[str, Any] | None,
        language: str | None,
    ) -> tuple[Conversation, bool]:
        now = self._clock.now()
        if session_id is None:
            conversation = Conversation(
                link.session_id, owner, agent_id, hub, now, metadata=metadata, language=language
            )
            refusal = await self._store.start_conversation(conversation, link, limit=self._limit)
            resumed = False
        else:
            refusal = await self._store.resume_conversation(
                owner, session_id, link, limit=self._limit, now=now,
                left_after=now - self._resume_window,
            )
            conversation, refusal = (refusal, None) if isinstance(refusal, Conversation) else (
                None, refusal)
            resumed = True
        if refusal is Refusal.LIMIT:
            raise VoisnapFault(
                errors.SESSION_LIMIT_REACHED,
                f"This tenant has reached its limit of {self._limit} concurrent sessions.",
            )
        if refusal is Refusal.GONE or conversation is None:
            raise _gone(session_id)
        return conversation, resumed

    async def leave(self, session_id: str, connection_id: str) -> None:
        """The connection let go (a failure here is made up for by the next
        renewal, which drops the links no connection holds)."""
        connections = self._local.get(session_id, {})
        connections.pop(connection_id, None)
        if not connections:
            self._local.pop(session_id, None)
        self._links.pop(connection_id, None)
        await self._store.leave_conversation(connection_id, self._clock.now())

    async def end(self, owner: Owner, session_id: str, reason: str) -> bool:
        """End the conversation for good; False if it had ended already. Its
        other connections in this process are closed (those of other processes
        hear ``ConversationEnded`` and find it ended at their next call)."""
        ended = await self._store.end_conversation(owner, session_id, reason, self._clock.now())
        return ended is not None

    def close_local(self, session_id: str, but: str, reason: str) -> None:
        for connection_id, abort in list(self._local.get(session_id, {}).items()):
            if connection_id != but:
                abort(reason)

    async def is_ended(self, session_id: str) -> bool:
        conversation = await self._store.get_conversation(session_id)
        return conversation is None or conversation.ended_at is not None


def _read_query(
    query: Mapping[str, str],
) -> tuple[str, str | None, dict[str, Any] | None, str | None]:
    agent_id = query.get("agentId", "")
    if not agent_id:
        raise _invalid("The query needs an agentId (?agentId=...).")
    if len(agent_id) > MAX_ID:
        raise _invalid(f"'agentId' may be at most {MAX_ID} characters long.")
    session_id = query.get("sessionId") or None
    if session_id is not None and len(session_id) > MAX_ID:
        raise _invalid(f"'sessionId' may be at most {MAX_ID} characters long.")
    return agent_id, session_id, _metadata(query.get("metadata")), _language(query.get("language"))


def _metadata(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    if len(text.encode()) > MAX_METADATA:
        raise _invalid(f"'metadata' may be at most {MAX_METADATA} bytes of JSON.")
    try:
        value = json.loads(text, parse_constant=_not_json)
    except (ValueError, RecursionError):
        raise _invalid("'metadata' must be URL-encoded JSON.") from None
    if not isinstance(value, dict):
        raise _invalid("'metadata' must be a JSON object.")
    return value


def _not_json(constant: str) -> None:
    """NaN and Infinity: Python reads them, JSON (RFC 8259) has no such values."""
    raise ValueError(f"{constant} is not JSON")


def _language(tag: str | None) -> str | None:
    if tag is None:
        return None
    if len(tag) > MAX_LANGUAGE or LANGUAGE.fullmatch(tag) is None:
        raise _invalid(f"'language' must be a BCP 47 language tag such as es-MX, not {tag!r}.")
    return tag


def _gone(session_id: str | None) -> VoisnapFault:
    return VoisnapFault(
        errors.RECONNECT_FAILED,
        f"Session '{session_id}' cannot be resumed: it has ended, is not yours, "
        "or was left too long ago.",
    )


def _invalid(message: str) -> VoisnapFault:
    return VoisnapFault(errors.INVALID_REQUEST, message, recoverable=False)

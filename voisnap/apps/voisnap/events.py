"""The Voisnap hubs' payloads, exactly as the Voisnap documents name them
(seed 001 "ChatHub", seed 002 "Real-Time Overview"; docs/hubs/voisnap.md).

Python fields are snake_case; the binder sends them camelCase
(``is_chunk`` -> ``isChunk``), in both hub protocols.
"""

from __future__ import annotations

import datetime
from typing import Any

import attrs

# -- client to server -----------------------------------------------------------------------------


@attrs.frozen
class SendMessageRequest:
    content: str
    metadata: dict[str, Any] | None = None


# -- server to client: both hubs ------------------------------------------------------------------


@attrs.frozen
class SessionStarted:
    session_id: str
    agent_id: str
    resumed: bool


@attrs.frozen
class SessionEnded:
    session_id: str
    reason: str


@attrs.frozen
class ConversationEnded:
    conversation_id: str
    """The session id: the documents call the same thing by both names."""
    reason: str


@attrs.frozen
class Error:
    code: str
    message: str
    recoverable: bool


@attrs.frozen
class TypingIndicator:
    """The agent is (or is no longer) generating a reply."""

    is_typing: bool


@attrs.frozen
class UserTyping:
    """An extension: another connection of the same conversation (a second tab)
    is typing."""

    is_typing: bool


# -- ChatHub --------------------------------------------------------------------------------------


@attrs.frozen
class MessageReceived:
    message_id: str
    content: str
    is_chunk: bool
    is_final: bool
    timestamp: datetime.datetime


# -- VoiceHub -------------------------------------------------------------------------------------


@attrs.frozen
class Transcript:
    role: str
    """``user`` (what the caller said) or ``agent`` (what the agent says)."""
    text: str
    is_final: bool


@attrs.frozen
class AudioInterrupted:
    """The caller spoke over the agent: the rest of this reply's audio is dropped."""

    message_id: str


# -- server to client: WebRtcHub -----------------------------------------------------------------


@attrs.frozen
class IceCandidate:
    """One of voisnap's ICE candidates, as ``RTCIceCandidateInit``."""

    candidate: str
    sdp_mid: str | None
    sdp_m_line_index: int | None


@attrs.frozen
class CallState:
    """The peer connection's state as voisnap sees it."""

    state: str

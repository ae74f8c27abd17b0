"""The voice events of ``/hubs/chat`` (docs/voice.md), sent only to the streaming connection.

``VoiceInterimTranscript`` and ``VoiceFinalTranscript`` are the seed's;
``VoiceError`` is voisnap's extension: ``StreamAudio`` is usually *sent*
(``connection.send``), which gives the client no Completion, so a voice error
is also told as an event.
"""

from __future__ import annotations

import attrs

from ...errors import HubError


@attrs.frozen
class VoiceInterimTranscript:
    session_id: str
    text: str


@attrs.frozen
class VoiceFinalTranscript:
    session_id: str
    text: str
    confidence: float


@attrs.frozen
class VoiceErrorEvent:
    session_id: str
    code: str
    message: str


# The codes of VoiceError (docs/voice.md, "Errors").
INVALID_MODE = "INVALID_MODE"
SESSION_NOT_FOUND = "SESSION_NOT_FOUND"
INVALID_AUDIO = "INVALID_AUDIO"
CHUNK_TOO_LARGE = "CHUNK_TOO_LARGE"
UTTERANCE_TOO_LONG = "UTTERANCE_TOO_LONG"
STT_BUSY = "STT_BUSY"
STT_FAILED = "STT_FAILED"
AGENT_BUSY = "AGENT_BUSY"


class VoiceError(HubError):
    """A voice stream that cannot go on: ``code`` says why, for a program."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

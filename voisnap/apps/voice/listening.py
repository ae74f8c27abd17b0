"""``StreamAudio`` on ``/hubs/chat``: speech in, transcripts out, the final ones to the agent.

Seed 000, "Voice streaming", and docs/voice.md. The client uploads a stream of
base64 chunks of 16 kHz mono linear16 PCM; each chunk is checked (base64, an
even number of bytes, at most ``--voice-max-chunk-bytes``) and fed to a
speech-to-text stream (``voisnap.voice``). Two tasks share the call:

- the *feeder* reads the upload and feeds the decoder; the decoder's own
  bounded buffer makes it wait when decoding falls behind, so it stops taking
  chunks, the upload's buffer fills, and the server stops reading the
  connection: memory stays bounded however fast the client sends;
- the *listener* reads the decoder's results: ``VoiceInterimTranscript`` (at
  most ``INTERIMS_PER_SECOND``) and ``VoiceFinalTranscript`` go to the caller
  alone, never to the session's other devices; each final transcript then
  enters the agent pipeline as the user's (spoken) message, exactly as a
  typed ``SendMessage`` does (``chat.intake``).

Auto mode ends each utterance after a pause, and the stream may carry several
until the client completes it; Manual mode (push-to-talk) has one utterance,
ended by the completion. A voice error is sent as ``VoiceError`` (the client of
``send`` gets no Completion) and raised as the call's error.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import attrs
import trio

from ...agents.runtime import RuntimeBusy
from ...hubs.hub import SingleClientProxy
from ...storage.base import Owner, VoicePreferences
from ...voice import Final, Interim, SpeechStream, SpeechToText, SttBusy, SttError
from ..chat.intake import Said, accept, announce
from . import events
from .events import VoiceError

MODES = ("Auto", "Manual")
PROVIDERS = ("sphinx", "openai")
DEFAULT_AGENT = "sophon"
INTERIMS_PER_SECOND = 4
BYTES_PER_SECOND = 16000 * 2  # 16 kHz, 16-bit mono
VOICE_CHANNEL = "voice"


@attrs.frozen
class VoiceLimits:
    max_chunk_bytes: int
    max_utterance: float
    """Seconds."""


class Listening:
    """What ``StreamAudio`` needs: the chat's services, the providers, the limits."""

    def __init__(
        self,
        chat: Any,
        providers: dict[str, SpeechToText],
        defaults: VoicePreferences,
        limits: VoiceLimits,
    ) -> None:
        self._chat = chat  # ChatServices (typed loosely: the chat hub imports this module)
        self._providers = providers
        self._defaults = defaults
        self._limits = limits

    async def stream(
        self,
        caller: SingleClientProxy,
        owner: Owner,
        session_id: str,
        chunks: AsyncIterator[Any],
        mode: str | None,
    ) -> None:
        try:
            await self._stream(caller, owner, session_id, chunks, mode)
        except VoiceError as error:
            event = events.VoiceErrorEvent(session_id, error.code, str(error))
            await caller.send("VoiceError", event)
            raise

    async def _stream(
        self,
        caller: SingleClientProxy,
        owner: Owner,
        session_id: str,
        chunks: AsyncIterator[Any],
        mode: str | None,
    ) -> None:
        store = self._chat.store
        preferences = await store.get_voice_preferences(owner) or self._defaults
        mode = preferences.mode if mode is None else mode
        if mode not in MODES:
            raise VoiceError(events.INVALID_MODE, f"'mode' must be one of {', '.join(MODES)}.")
        if not isinstance(session_id, str) or await store.get_session(owner, session_id) is None:
            raise VoiceError(
                events.SESSION_NOT_FOUND, f"Session '{session_id}' does not exist or is not yours."
            )
        provider = (
            self._providers.get(preferences.provider) or self._providers[self._defaults.provider]
        )
        try:
            speech = await provider.open_stream(auto=mode == "Auto", pause=preferences.pause)
        except SttBusy as error:
            raise VoiceError(events.STT_BUSY, str(error) or "Every decoder is busy.") from None
        utterance = _Utterance(self._limits.max_utterance, speaking=mode == "Manual")
        ended = _FirstFailure()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ended.of, nursery, self._feed(speech, chunks, utterance))
                await ended.of(nursery, self._listen(speech, caller, owner, session_id, utterance))
        finally:
            with trio.CancelScope(shield=True):
                await speech.aclose()
        ended.raise_it()

    async def _feed(
        self, speech: SpeechStream, chunks: AsyncIterator[Any], utterance: _Utterance
    ) -> None:
        async for chunk in chunks:
            pcm = self._decoded(chunk)
            utterance.heard(len(pcm))
            await speech.feed(pcm)
        await speech.finish()

    def _decoded(self, chunk: Any) -> bytes:
        if not isinstance(chunk, str):
            raise VoiceError(events.INVALID_AUDIO, "Each audio chunk must be a base64 string.")
        most = self._limits.max_chunk_bytes
        if len(chunk) > (most + 2) // 3 * 4:
            raise VoiceError(events.CHUNK_TOO_LARGE, f"An audio chunk may hold {most} bytes.")
        try:
            pcm = base64.b64decode(chunk, validate=True)
        except (binascii.Error, ValueError):
            raise VoiceError(events.INVALID_AUDIO, "An audio chunk is not base64.") from None
        if len(pcm) > most:
            raise VoiceError(events.CHUNK_TOO_LARGE, f"An audio chunk may hold {most} bytes.")
        if len(pcm) % 2:
            raise VoiceError(
                events.INVALID_AUDIO,
                "An audio chunk must hold whole 16-bit samples (an even number of bytes).",
            )
        return pcm

    async def _listen(
        self,
        speech: SpeechStream,
        caller: SingleClientProxy,
        owner: Owner,
        session_id: str,
        utterance: _Utterance,
    ) -> None:
        last_interim = -1.0
        async for result in speech.events():
            match result:
                case Interim(text=text) if text:
                    utterance.speaking()
                    now = trio.current_time()
                    if now - last_interim >= 1 / INTERIMS_PER_SECOND:
                        last_interim = now
                        interim = events.VoiceInterimTranscript(session_id, text)
                        await caller.send("VoiceInterimTranscript", interim)
                case Final(text=text, confidence=confidence):
                    utterance.ended()
                    if text.strip():
                        final = events.VoiceFinalTranscript(session_id, text, confidence)
                        await caller.send("VoiceFinalTranscript", final)
                        await self._said(owner, session_id, text)

    async def _said(self, owner: Owner, session_id: str, text: str) -> None:
        """The final transcript, into the agent pipeline like a typed message."""
        chat = self._chat
        latest = await chat.store.latest_session_task(owner, session_id)
        agent_id = latest.agent_id if latest is not None else DEFAULT_AGENT
        try:
            await chat.runtime.check_capacity()
        except RuntimeBusy as error:
            raise VoiceError(events.AGENT_BUSY, str(error)) from None
        said = Said(owner, session_id, agent_id, text, channel_id=VOICE_CHANNEL, spoken=True)
        accepted = await accept(chat, said)
        await announce(chat, owner, accepted.task)


class _FirstFailure:
    """The first error of the feeder or the listener, kept to be raised as
    itself once both have stopped (a nursery would wrap it in a group), while
    the other one is cancelled."""

    def __init__(self) -> None:
        self.error: VoiceError | None = None

    async def of(self, nursery: trio.Nursery, work: Awaitable[None]) -> None:
        try:
            await work
        except (VoiceError, SttError) as error:
            if self.error is None:
                self.error = (
                    error
                    if isinstance(error, VoiceError)
                    else VoiceError(events.STT_FAILED, f"Speech recognition failed: {error}")
                )
            nursery.cancel_scope.cancel()

    def raise_it(self) -> None:
        if self.error is not None:
            raise self.error


class _Utterance:
    """How long the utterance in progress is; VoiceError past the limit. In Auto
    mode an utterance starts with its first interim (silence between utterances
    does not count); in Manual mode the whole stream is the utterance."""

    def __init__(self, max_seconds: float, *, speaking: bool) -> None:
        self._most = int(max_seconds * BYTES_PER_SECOND)
        self._seconds = max_seconds
        self._manual = speaking
        self._speaking = speaking
        self._bytes = 0

    def speaking(self) -> None:
        self._speaking = True

    def heard(self, size: int) -> None:
        if not self._speaking:
            return
        self._bytes += size
        if self._bytes > self._most:
            raise VoiceError(
                events.UTTERANCE_TOO_LONG,
                f"An utterance may last {self._seconds:g} seconds; this one went on longer.",
            )

    def ended(self) -> None:
        self._bytes = 0
        self._speaking = self._manual

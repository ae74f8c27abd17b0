"""The VoiceHub's calls: the caller's speech in, the agent's speech out, barge-in
(docs/hubs/voisnap.md, "VoiceHub").

One ``Call`` per connection. ``listen`` takes the caller's upload
(``SendAudio``): each chunk is decoded to the pipeline's PCM and fed to a
speech-to-text stream (``voisnap.voice``); transcripts go to the call as
``Transcript{role: "user"}``, and each final one enters the agent pipeline as
the user's spoken message, exactly as a typed one does (``apps.chat.intake``).
``speak`` is the download (``ReceiveAudio``): each reply of the agent is
synthesized (espeak-ng), converted to the call's format and streamed in
chunks of ``CHUNK_SECONDS``, paced at real time a little ahead (``LEAD``),
so that "playing" means something on the server too.

Barge-in: a cheap voice activity detector (``UtteranceCutter``) watches the
upload; when the caller starts speaking while a reply is being prepared or
played, the rest of that reply (and any reply waiting behind it) is dropped at
once and ``AudioInterrupted`` is sent, after the last chunk that went out.

Replies reach the call through ``Calls``: the face says a reply (``say``) in
the process that ran the task; it is delivered to the calls of this process
and published on the session's speech channel for the process that holds the
call, if that is another one.

A speech provider that does not answer within ``--stt-timeout`` (a feed that
does not return, no results after the upload ended) costs the utterance in
progress: ``Error{STT_PROVIDER_TIMEOUT, recoverable: true}``, a fresh stream,
and the call goes on.
"""

from __future__ import annotations

import base64
import binascii
import collections
import logging
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

import attrs
import msgpack
import trio

from ...agents.runtime import RuntimeBusy
from ...background import Background
from ...backplane import BackplaneError, RequestRefused
from ...failures import report_client_error, report_unexpected
from ...hubs.hub import SingleClientProxy
from ...routing import names
from ...routing.cluster import Cluster
from ...storage.base import Conversation, Owner, VoicePreferences
from ...voice import EspeakSpeech, Final, Interim, SpeechStream, SpeechToText, SttBusy, SttError
from ...voice.base import TtsError
from ...voice.endpointing import UtteranceCutter, UtteranceStarted
from ..chat.intake import Said, accept, announce
from . import errors
from .audio_formats import AudioFormat
from .errors import VoisnapFault
from .events import AudioInterrupted, Transcript

log = logging.getLogger(__name__)

CHUNK_SECONDS = 0.1
LEAD = 0.3
"""Seconds of agent audio sent ahead of real time: a client's jitter buffer."""
INTERIMS_PER_SECOND = 4
WAITING_PIECES = 64
CHANNEL = "voisnap-voice"


@attrs.frozen
class Spoken:
    """A piece of an agent's reply to speak (a sentence, as the reply streams):
    ``text`` is the piece, ``so_far`` the reply up to and including it, ``last``
    whether the reply is complete (``so_far`` is then the whole reply)."""

    message_id: str
    text: str
    so_far: str
    last: bool

    def packed(self) -> bytes:
        return msgpack.packb([self.message_id, self.text, self.so_far, self.last])

    @classmethod
    def unpacked(cls, payload: bytes) -> Spoken | None:
        try:
            items = msgpack.unpackb(payload)
        except Exception:  # msgpack raises several kinds; all mean "not a piece"
            return None
        match items:
            case [str() as message_id, str() as text, str() as so_far, bool() as last, *_]:
                return cls(message_id, text, so_far, last)
        return None


@attrs.frozen
class CallSettings:
    providers: dict[str, SpeechToText]
    defaults: VoicePreferences
    stt_timeout: float
    max_chunk_bytes: int


class Calls(Background):
    """This process's calls, by session; the face's door to them (``say``).
    As a service (``run``), it runs each call's reply relay and a browser
    call's media (``start_soon``): work that keeps its own errors."""

    def __init__(self, cluster: Cluster, chat: Any, settings: CallSettings | None) -> None:
        super().__init__()
        self._cluster = cluster
        self._chat = chat  # ChatServices: a spoken message enters the same pipeline
        self.settings: CallSettings = settings  # type: ignore[assignment]
        self._calls: dict[str, set[Call]] = {}

    def complete(self, chat: Any, settings: CallSettings) -> None:
        """The parts that exist only after the faces (the runtime reports to them)."""
        self._chat, self.settings = chat, settings

    @property
    def store(self) -> Any:
        return self._chat.store

    async def join(self, call: Call) -> None:
        session_id = call.conversation.session_id
        calls = self._calls.setdefault(session_id, set())
        calls.add(call)
        self.start_soon(call.relay_replies)
        if len(calls) == 1:
            listener = _SpeechListener(self, session_id)
            await self._cluster.subscriptions.hold(names.speech_channel(session_id), listener)

    def leave(self, call: Call) -> None:
        session_id = call.conversation.session_id
        calls = self._calls.get(session_id, set())
        if call in calls:
            calls.discard(call)
            call.hang_up()
            if not calls:
                del self._calls[session_id]
                self._cluster.subscriptions.release(names.speech_channel(session_id))

    async def say(self, session_id: str, spoken: Spoken) -> None:
        """A piece of the agent's reply in a call: to this process's calls of
        the session, and to the other processes'."""
        self.deliver(session_id, spoken)
        try:
            await self._cluster.backplane.publish(
                names.speech_channel(session_id), spoken.packed()
            )
        except BackplaneError as error:
            report_client_error(log, "a reply was not told to other processes", str(error))

    def deliver(self, session_id: str, spoken: Spoken) -> None:
        for call in self._calls.get(session_id, ()):
            call.hear(spoken)

    async def said(self, owner: Owner, conversation: Conversation, text: str) -> None:
        """A final transcript, into the agent pipeline like a typed message."""
        chat = self._chat
        try:
            await chat.runtime.check_capacity()
        except RuntimeBusy as error:
            raise VoisnapFault(errors.INVALID_REQUEST, str(error), recoverable=True) from None
        said = Said(
            owner, conversation.session_id, conversation.agent_id, text,
            channel_id=CHANNEL, spoken=True,
        )
        accepted = await accept(chat, said)
        if accepted.created:
            await announce(chat, owner, accepted.task)


class _SpeechListener:
    """The speech channel of one session, in this process."""

    def __init__(self, calls: Calls, session_id: str) -> None:
        self._calls = calls
        self._session_id = session_id

    def message(self, payload: bytes) -> None:
        spoken = Spoken.unpacked(payload)
        if spoken is None:
            log.info("a malformed reply on a speech channel was dropped")
        else:
            self._calls.deliver(self._session_id, spoken)

    async def request(self, payload: bytes) -> bytes:
        raise RequestRefused("A speech channel takes no requests.")


class Call:
    """One VoiceHub connection's call."""

    def __init__(
        self,
        calls: Calls,
        caller: SingleClientProxy,
        owner: Owner,
        conversation: Conversation,
        audio_format: AudioFormat,
    ) -> None:
        self._calls = calls
        self._caller = caller
        self._owner = owner
        self.conversation = conversation
        self._format = audio_format
        self._speech_out = EspeakSpeech(voice=espeak_voice(conversation.language))
        # Pieces heard, in order: a Transcript each, then to the speaker.
        self._heard_in, self._heard = trio.open_memory_channel[Spoken](WAITING_PIECES)
        self._replies_in, self._replies = trio.open_memory_channel[Spoken](WAITING_PIECES)
        self._speaking = False  # a ReceiveAudio stream is open
        self._reply: str | None = None  # the reply whose piece is being prepared or played
        self._unfinished: str | None = None  # a reply with pieces still to play
        self._hung_up = False
        self._interrupted: collections.deque[str] = collections.deque(maxlen=16)
        self._play_until = 0.0
        self._barged = trio.Event()
        self.listening = False

    # -- the agent's replies ------------------------------------------------------------------

    def hear(self, spoken: Spoken) -> None:
        """A piece of a reply arrived (never waits: called by a backplane listener)."""
        try:
            self._heard_in.send_nowait(spoken)
        except (trio.WouldBlock, trio.ClosedResourceError):
            log.info("a call fell behind its replies; a piece was dropped")

    def hang_up(self) -> None:
        self._hung_up = True
        self._heard_in.close()

    async def relay_replies(self) -> None:
        """Each piece heard, in order: its Transcript, then the speaker's queue.
        Pieces of a reply the caller interrupted are neither shown nor spoken.
        Runs in ``Calls``' nursery, so nothing it meets may escape."""
        try:
            async for spoken in self._heard:
                if self._hung_up:
                    return
                if spoken.message_id not in self._interrupted:
                    await self._relay(spoken)
        except Exception as error:
            report_unexpected(log, "relaying a call's replies", error)

    async def _relay(self, spoken: Spoken) -> None:
        transcript = Transcript("agent", spoken.so_far, spoken.last)
        await self._caller.send("Transcript", transcript)
        if self._speaking and (spoken.text.strip() or spoken.last):
            try:
                self._replies_in.send_nowait(spoken)
            except trio.WouldBlock:
                log.info("a call's client does not play its replies; a piece was not spoken")
                return
            self._unfinished = spoken.message_id

    async def speak(self) -> AsyncIterator[str]:
        """``ReceiveAudio``: every reply from now on, as base64 chunks of audio."""
        async for chunk in self.speak_audio():
            yield base64.b64encode(chunk).decode()

    async def speak_audio(self) -> AsyncIterator[bytes]:
        """Every reply from now on, as chunks of audio in the call's format."""
        if self._speaking:
            raise VoisnapFault(
                errors.INVALID_REQUEST, "This call is already receiving audio.", recoverable=True
            )
        self._speaking = True
        try:
            async for spoken in self._replies:
                if spoken.message_id in self._interrupted:
                    continue
                async for chunk in self._play(spoken.message_id, spoken.text):
                    yield chunk
                if spoken.last and self._unfinished == spoken.message_id:
                    self._unfinished = None
        finally:
            self._speaking = False
            self._unfinished = None
            self._drop_waiting(interrupted=False)  # the next ReceiveAudio starts afresh

    async def _play(self, message_id: str, text: str) -> AsyncIterator[bytes]:
        self._reply, self._barged = message_id, trio.Event()
        try:
            audio = await self._synthesize(text)
            size = int(self._format.bytes_per_second * CHUNK_SECONDS)
            size -= size % self._format.bytes_per_sample
            start = trio.current_time()
            self._play_until = start + len(audio) / self._format.bytes_per_second
            for index, offset in enumerate(range(0, len(audio), size)):
                with trio.move_on_at(start + index * CHUNK_SECONDS - LEAD):
                    await self._barged.wait()
                if self._barged.is_set():
                    break
                yield audio[offset : offset + size]
            with trio.move_on_at(self._play_until):  # still playing on the client
                await self._barged.wait()
            if self._barged.is_set():
                await self._interrupt(message_id)
        finally:
            self._reply = None

    async def _synthesize(self, text: str) -> bytes:
        if not text.strip():
            return b""
        try:
            try:
                pcm = await self._speech_out.synthesize(text)
            except TtsError:
                if self._speech_out.voice == "en-us":
                    raise
                self._speech_out = EspeakSpeech()  # espeak-ng has no voice for the language
                pcm = await self._speech_out.synthesize(text)
            return self._format.from_pipeline(pcm)
        except TtsError as error:
            fault = VoisnapFault(
                "TTS_FAILED", f"Speech synthesis failed: {error}", recoverable=True
            )
            await self._caller.send("Error", fault.event())
            return b""

    async def barge_in(self) -> None:
        """The caller started speaking: stop the reply being played or prepared,
        or waiting for its next sentence."""
        if self._reply is not None:
            self._barged.set()  # the player stops after its chunk, and says so
        elif self._unfinished is not None:
            await self._interrupt(self._unfinished)

    async def _interrupt(self, message_id: str) -> None:
        """Drop the rest of the reply (and what waits behind it); ``AudioInterrupted``."""
        self._interrupted.append(message_id)
        self._unfinished = None
        self._drop_waiting(interrupted=True)
        await self._caller.send("AudioInterrupted", AudioInterrupted(message_id))

    def _drop_waiting(self, *, interrupted: bool) -> None:
        """Empty the speaker's queue; with ``interrupted``, the replies dropped
        say no more either."""
        while True:
            try:
                spoken = self._replies.receive_nowait()
            except trio.WouldBlock:
                return
            if interrupted and spoken.message_id not in self._interrupted:
                self._interrupted.append(spoken.message_id)

    # -- the caller's speech ------------------------------------------------------------------

    async def listen(self, upload: AsyncIterator[Any]) -> None:
        """``SendAudio``: transcribe the upload (base64 chunks) until it ends."""
        most = self._calls.settings.max_chunk_bytes
        await self.listen_audio(upload, partial(_checked, decode=self._format.decoder(), most=most))

    async def listen_audio(
        self, upload: AsyncIterator[Any], decoded: Callable[[Any], bytes] = bytes
    ) -> None:
        """Transcribe the upload until it ends; ``decoded`` makes each of its
        chunks the pipeline's PCM (or raises ``VoisnapFault``)."""
        if self.listening:
            raise VoisnapFault(
                errors.INVALID_REQUEST, "This call is already sending audio.", recoverable=True
            )
        self.listening = True
        try:
            await self._listen(upload, decoded)
        finally:
            self.listening = False

    async def _listen(self, upload: AsyncIterator[Any], decoded: Callable[[Any], bytes]) -> None:
        settings = self._calls.settings
        store = self._calls.store
        preferences = await store.get_voice_preferences(self._owner) or settings.defaults
        provider = settings.providers.get(preferences.provider) or settings.providers[
            settings.defaults.provider
        ]
        detector = UtteranceCutter(preferences.pause)
        chunks = _Upload(upload, decoded, detector, self)
        while not chunks.ended:
            try:
                speech = await provider.open_stream(auto=True, pause=preferences.pause)
            except SttBusy as error:
                raise VoisnapFault(
                    "STT_BUSY", str(error) or "Every speech decoder is busy.", recoverable=True
                ) from None
            try:
                timed_out = await self._transcribe(speech, chunks, settings.stt_timeout)
            except SttError as error:
                raise VoisnapFault(
                    "STT_FAILED", f"Speech recognition failed: {error}", recoverable=True
                ) from None
            finally:
                with trio.CancelScope(shield=True):
                    await speech.aclose()
            if timed_out:
                fault = VoisnapFault(
                    errors.STT_PROVIDER_TIMEOUT,
                    f"Speech-to-text did not answer within {settings.stt_timeout:g} seconds; "
                    "what was said meanwhile is lost.",
                )
                await self._caller.send("Error", fault.event())

    async def _transcribe(self, speech: SpeechStream, chunks: _Upload, timeout: float) -> bool:
        """Feed and read one speech stream; True if the provider timed out.
        The first failure of either side is raised as itself, once both stopped."""
        failures: list[BaseException] = []
        reading = trio.CancelScope()

        async def feed() -> None:
            try:
                async for pcm in chunks:
                    with trio.fail_after(timeout):
                        await speech.feed(pcm)
                with trio.fail_after(timeout):
                    await speech.finish()
                reading.deadline = trio.current_time() + timeout
            except trio.TooSlowError:
                reading.cancel()
            except (VoisnapFault, SttError) as error:
                failures.append(error)
                reading.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(feed)
            with reading:
                try:
                    await self._read(speech)
                except (VoisnapFault, SttError) as error:
                    failures.append(error)
            nursery.cancel_scope.cancel()
        if failures:
            raise failures[0]
        return reading.cancelled_caught

    async def _read(self, speech: SpeechStream) -> None:
        last_interim = -1.0
        async for result in speech.events():
            match result:
                case Interim(text=text) if text:
                    now = trio.current_time()
                    if now - last_interim >= 1 / INTERIMS_PER_SECOND:
                        last_interim = now
                        await self._caller.send("Transcript", Transcript("user", text, False))
                case Final(text=text) if text.strip():
                    await self._caller.send("Transcript", Transcript("user", text, True))
                    await self._calls.said(self._owner, self.conversation, text)


class _Upload:
    """The caller's chunks, checked and decoded, with barge-in watched on the way."""

    def __init__(
        self,
        upload: AsyncIterator[Any],
        decoded: Callable[[Any], bytes],
        detector: UtteranceCutter,
        call: Call,
    ) -> None:
        self._upload = upload.__aiter__()
        self._decoded = decoded
        self._detector = detector
        self._call = call
        self.ended = False

    def __aiter__(self) -> _Upload:
        return self

    async def __anext__(self) -> bytes:
        try:
            chunk = await self._upload.__anext__()
        except StopAsyncIteration:
            self.ended = True
            raise
        pcm = self._decoded(chunk)
        if any(isinstance(cut, UtteranceStarted) for cut in self._detector.feed(pcm)):
            await self._call.barge_in()
        return pcm


def _checked(chunk: Any, *, decode: Callable[[bytes], bytes], most: int) -> bytes:
    """A client's chunk: a base64 string of at most ``most`` bytes, decoded."""
    if not isinstance(chunk, str):
        raise _invalid("Each audio chunk must be a base64 string.")
    if len(chunk) > (most + 2) // 3 * 4:
        raise _invalid(f"An audio chunk may hold {most} bytes.")
    try:
        data = base64.b64decode(chunk, validate=True)
    except (binascii.Error, ValueError) as error:
        raise _invalid(f"An audio chunk is not base64: {error}") from None
    if len(data) > most:
        raise _invalid(f"An audio chunk may hold {most} bytes.")
    try:
        return decode(data)
    except ValueError as error:
        raise _invalid(f"An audio chunk could not be decoded: {error}") from None


def _invalid(message: str) -> VoisnapFault:
    return VoisnapFault(errors.INVALID_REQUEST, message, recoverable=True)


def espeak_voice(language: str | None) -> str:
    """The espeak-ng voice for a BCP 47 tag: its language (``es-MX`` -> ``es``);
    US English when none is given."""
    if not language:
        return "en-us"
    primary = language.split("-")[0].lower()
    return "en-us" if primary == "en" else primary

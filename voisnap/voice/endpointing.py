"""Where an utterance ends in hands-free ("Auto") mode: PocketSphinx's Endpointer.

Theory of operation: the audio is cut into the Endpointer's frames (30 ms,
``frame_bytes``); each frame goes through its voice activity detector (WebRTC's
VAD). The endpointer switches to *in speech* when ``ratio`` of a ``window`` of
frames is voiced and back when ``ratio`` of a window is unvoiced, so with
``window = pause`` an utterance ends after about ``pause`` seconds of silence.
While in speech it returns the frames (with the window of audio before the
start, so the first syllable is not clipped); outside speech it returns None.

This module turns that into three events: ``UtteranceStarted``,
``SpeechAudio(pcm)`` and ``UtteranceEnded``. It is sans-IO and cheap (a few
microseconds per frame), which is why the OpenAI provider runs it in-process
while the PocketSphinx worker runs it next to its decoder.
"""

from __future__ import annotations

import attrs
from pocketsphinx import Endpointer, Vad

#: A fraction of the window that must agree before the endpointer switches state.
RATIO = 0.9
#: WebRTC VAD aggressiveness 2 of 0-3. The default (0, LOOSE) takes steady white
#: noise (sox ``whitenoise vol 0.1``) for speech in every frame, and the decoder
#: then "hears" a word in it; 2 rejects that noise and keeps all but a frame or
#: two of espeak-ng speech (measured: docs/voice-pipeline.md).
VAD_MODE = Vad.MEDIUM_STRICT


@attrs.frozen
class UtteranceStarted:
    pass


@attrs.frozen
class SpeechAudio:
    pcm: bytes


@attrs.frozen
class UtteranceEnded:
    pass


Cut = UtteranceStarted | SpeechAudio | UtteranceEnded

#: The endpointer needs a window of several 30 ms frames to take 90 % of
#: (0.15 s is refused by PocketSphinx); ten seconds of silence is no pause.
MIN_PAUSE, MAX_PAUSE = 0.2, 10.0


def check_pause(pause: float) -> None:
    if not MIN_PAUSE <= pause <= MAX_PAUSE:
        raise ValueError(f"pause is between {MIN_PAUSE} and {MAX_PAUSE} seconds, not {pause}")


class UtteranceCutter:
    """Feed PCM, get the utterances in it, one event list per call."""

    def __init__(self, pause: float) -> None:
        check_pause(pause)
        self._endpointer = Endpointer(window=pause, ratio=RATIO, vad_mode=VAD_MODE)
        self._frame_bytes = self._endpointer.frame_bytes
        self._pending = bytearray()
        self._in_utterance = False

    @property
    def in_utterance(self) -> bool:
        return self._in_utterance

    def feed(self, pcm: bytes) -> list[Cut]:
        self._pending += pcm
        cuts: list[Cut] = []
        while len(self._pending) >= self._frame_bytes:
            frame = bytes(self._pending[: self._frame_bytes])
            del self._pending[: self._frame_bytes]
            self._take(self._endpointer.process(frame), cuts)
        return cuts

    def finish(self) -> list[Cut]:
        """The end of the stream ends the utterance in progress, if any."""
        cuts: list[Cut] = []
        # end_stream() wants at least one sample: a frame of silence when none is left.
        last = bytes(self._pending) or bytes(self._frame_bytes)
        self._take(self._endpointer.end_stream(last), cuts)
        self._pending.clear()
        if self._in_utterance:
            cuts.append(UtteranceEnded())
            self._in_utterance = False
        return cuts

    def _take(self, speech: bytes | None, cuts: list[Cut]) -> None:
        if speech is None:
            return
        if not self._in_utterance:
            cuts.append(UtteranceStarted())
            self._in_utterance = True
        cuts.append(SpeechAudio(speech))
        if not self._endpointer.in_speech:
            cuts.append(UtteranceEnded())
            self._in_utterance = False

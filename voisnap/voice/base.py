"""The vocabulary of voice: results, errors and the provider interfaces (issue 16).

Speech-to-text is a *stream*: the caller feeds 16 kHz mono signed 16-bit
little-endian PCM and reads ``Interim`` hypotheses and ``Final`` results from
``events()``. Providers differ in where the decoding happens (a pool of
PocketSphinx worker processes, an OpenAI-compatible HTTP endpoint) but not in
this surface, so the chat hub is written once against ``SpeechToText``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

import attrs

#: Every PCM buffer in voisnap.voice: 16 kHz, mono, signed 16-bit little-endian.
SAMPLE_RATE = 16000
SAMPLE_WIDTH = 2


@attrs.frozen
class Interim:
    """A hypothesis for the utterance in progress; a later one supersedes it."""

    text: str


@attrs.frozen
class Final:
    """The transcript of one utterance. ``confidence`` is a posterior in [0, 1]."""

    text: str
    confidence: float


class SttBusy(Exception):
    """Every decoder is serving as many streams as it may: try again later."""

    code = "STT_BUSY"


class SttError(Exception):
    """A stream cannot go on: a worker died, a provider failed. The text says why."""


class TtsError(Exception):
    """Speech could not be synthesized (for example: espeak-ng is not installed)."""


class SpeechStream(Protocol):
    """One caller's audio going in, transcripts coming out."""

    async def feed(self, pcm: bytes) -> None:
        """Queue PCM (even length); blocks while the decoder is behind."""

    async def finish(self) -> None:
        """No more audio: the last utterance ends (in Manual mode, the only one)."""

    def events(self) -> AsyncIterator[Interim | Final]:
        """Interims and Finals until ``finish()`` is processed; raises ``SttError``."""

    async def aclose(self) -> None:
        """Release the stream; pending results are dropped."""


class SpeechToText(Protocol):
    async def open_stream(self, *, auto: bool, pause: float) -> SpeechStream:
        """``auto=True``: utterances end after ``pause`` seconds of silence
        (endpointing); ``auto=False``: one utterance, ended by ``finish()``."""


class TextToSpeech(Protocol):
    async def synthesize(self, text: str) -> bytes:
        """16 kHz mono s16le PCM speaking ``text``."""

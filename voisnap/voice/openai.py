"""OpenAITranscription: an OpenAI-compatible transcription endpoint as SpeechToText.

The endpoint (``POST {base}/v1/audio/transcriptions``, multipart form with a
``file`` and a ``model``; it answers ``{"text": ...}``) transcribes whole
files, so this provider gives one ``Final`` per utterance and no interims.

Where utterances end is decided here, in the server process: in Auto mode by
PocketSphinx's Endpointer (``endpointing.UtteranceCutter``), whose voice
activity detector costs microseconds per 30 ms frame, so it needs no worker
process; in Manual mode the stream is one utterance ended by ``finish()``.

Backpressure: ``feed`` transcribes an utterance that has just ended before it
returns, so a caller feeds no faster than the endpoint answers, and the audio
held is one utterance (at most ``max_utterance`` seconds: a longer one is cut
there). The endpoint returns no confidence in its ``json`` format; when it
sends ``segments`` with ``avg_logprob`` (``verbose_json`` servers do) the
confidence is their mean probability, otherwise it is reported as 1.0.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import httpx
import trio

from .audio import wav_bytes
from .base import SAMPLE_RATE, SAMPLE_WIDTH, Final, Interim, SttError
from .endpointing import SpeechAudio, UtteranceCutter, UtteranceEnded

_DONE = object()


class OpenAITranscription:
    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None,
        *,
        http_transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 60.0,
        max_utterance: float = 30.0,
    ) -> None:
        self.url = base_url.rstrip("/") + "/v1/audio/transcriptions"
        self.model = model
        self._api_key = api_key
        self._transport = http_transport
        self._timeout = timeout
        self.max_utterance_bytes = int(max_utterance * SAMPLE_RATE) * SAMPLE_WIDTH

    async def open_stream(self, *, auto: bool, pause: float = 0.5) -> OpenAIStream:
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        client = httpx.AsyncClient(
            transport=self._transport, headers=headers, timeout=self._timeout
        )
        return OpenAIStream(self, client, UtteranceCutter(pause) if auto else None)

    async def transcribe(self, client: httpx.AsyncClient, pcm: bytes) -> Final | None:
        """One utterance's ``Final`` (None when the endpoint heard no words)."""
        files = {"file": ("utterance.wav", wav_bytes(pcm), "audio/wav")}
        try:
            response = await client.post(self.url, data={"model": self.model}, files=files)
        except httpx.HTTPError as exc:
            raise SttError(f"transcription endpoint {self.url} failed: {exc!r}") from exc
        if response.status_code != 200:
            raise SttError(
                f"transcription endpoint answered {response.status_code}: {response.text[:200]}"
            )
        try:
            body = response.json()
            text = str(body["text"]).strip()
        except (ValueError, KeyError, TypeError) as exc:
            raise SttError(f"transcription endpoint sent no text: {response.text[:200]}") from exc
        return Final(text, _confidence(body)) if text else None


def _confidence(body: dict) -> float:
    logprobs = [
        segment["avg_logprob"]
        for segment in body.get("segments") or ()
        if isinstance(segment, dict) and isinstance(segment.get("avg_logprob"), int | float)
    ]
    if not logprobs:
        return 1.0
    return min(1.0, max(0.0, math.exp(sum(logprobs) / len(logprobs))))


class OpenAIStream:
    def __init__(
        self,
        provider: OpenAITranscription,
        client: httpx.AsyncClient,
        cutter: UtteranceCutter | None,
    ) -> None:
        self._provider = provider
        self._client = client
        self._cutter = cutter
        self._utterance = bytearray()
        self._send, self._receive = trio.open_memory_channel(16)
        self._failure: SttError | None = None
        self._done = False

    async def feed(self, pcm: bytes) -> None:
        if len(pcm) % 2:
            raise ValueError("16-bit PCM has an even number of bytes")
        self._check("feed")
        if self._cutter is None:
            await self._add(pcm)
            return
        for cut in self._cutter.feed(pcm):
            await self._follow(cut)

    async def finish(self) -> None:
        self._check("finish")
        self._done = True
        for cut in self._cutter.finish() if self._cutter else ():
            await self._follow(cut)
        await self._transcribe()
        await self._send.send(_DONE)

    async def events(self) -> AsyncIterator[Interim | Final]:
        async for item in self._receive:
            if item is _DONE:
                return
            yield item
        if self._failure is not None:
            raise self._failure

    async def aclose(self) -> None:
        self._done = True
        self._send.close()
        await self._client.aclose()

    async def _follow(self, cut: object) -> None:
        match cut:
            case SpeechAudio(pcm=pcm):
                await self._add(pcm)
            case UtteranceEnded():
                await self._transcribe()

    async def _add(self, pcm: bytes) -> None:
        self._utterance += pcm
        if len(self._utterance) >= self._provider.max_utterance_bytes:
            await self._transcribe()

    async def _transcribe(self) -> None:
        pcm, self._utterance = bytes(self._utterance), bytearray()
        if not pcm:
            return
        try:
            final = await self._provider.transcribe(self._client, pcm)
        except SttError as exc:
            self._failure = exc
            self._send.close()
            raise
        if final is not None:
            await self._send.send(final)

    def _check(self, operation: str) -> None:
        if self._failure is not None:
            raise self._failure
        if self._done:
            raise SttError(f"cannot {operation}: the stream is finished or closed")

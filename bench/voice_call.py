"""``python -m bench voice``, the call part: the VoiceHub's round trip (issue 17).

Each call is one ``/voisnap/hubs/voice?agentId=sophon`` connection (the same
minimal SignalR JSON client over trio-websocket as the StreamAudio part) that
reads ``ReceiveAudio()`` and uploads ``SendAudio(stream)`` like a phone: a
microphone that never stops, one 0.1 s chunk of 16 kHz linear16 after each
0.1 s of wall-clock time, silence when the caller says nothing. A round trip is
one espeak-ng sentence (PocketSphinx recognizes both), then silence until the
agent's first chunk of audio arrives.

The latency of a round trip runs from the end of the caller's speech (the
moment the chunk holding the sentence's last voiced sample was sent) to the
first chunk of the agent's audio, p50 and p99. The event arrival times split
it (docs/hubs/voisnap-voice.md, "Transcript"):

- **hearing**: to the user's final ``Transcript``, split in two: *endpointing*,
  to the endpointer's decision (``--voice-pause`` of silence: the chunk at which
  the server's ``UtteranceCutter``, run here on the same chunks, ends the
  utterance), and *recognition*, from that chunk's sending to the final;
- **agent**: from there to the agent's first ``Transcript``, which the server
  sends once the reply's first sentence is written, before synthesizing it;
- **speech**: from there to the first audio chunk: espeak-ng on that
  sentence, conversion, the first chunk.

Once the first chunk is in, the caller says its next sentence over the rest of
the reply, as people do: barge-in drops what is left of it (the built-in
agent's introduction is about 15 s of speech; letting each play out would make
a round trip four times as long without changing what is measured). So that
nothing of the interrupted reply is taken for the next one's, the agent's
words and audio count only once the caller's final transcript is in. The agent
runs at its default pace (``--agent-token-delay``) unless ``token_delay`` says
otherwise.
"""

from __future__ import annotations

import base64
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio
import trio_websocket

from voisnap.voice import EspeakSpeech
from voisnap.voice.endpointing import UtteranceCutter, UtteranceEnded

from .harness import voisnap_server
from .voice import (
    CHUNK_SECONDS,
    PAUSE,
    SAMPLE_BYTES_PER_SECOND,
    _last_voiced_byte,
    _percentile,
    _records,
    _send,
    _trio_time,
)

# The sentences PocketSphinx's model hears from espeak-ng (tests/voice/conftest.py).
SENTENCES = ["i would like to order a pizza", "i want to go home"]
CHUNK_BYTES = int(CHUNK_SECONDS * SAMPLE_BYTES_PER_SECOND)
SILENCE = bytes(CHUNK_BYTES)
GAP_CHUNKS = 3  # silence between the reply's first audio and the next sentence
ROUND_TIMEOUT = 20.0
PARTS = ("hearing", "endpointing", "recognition", "agent", "speech")
FULL = {"calls": 4, "rounds": 5}
QUICK = {"calls": 1, "rounds": 2}


@attrs.define
class RoundTrip:
    """One sentence and its answer, on the monotonic clock."""

    sentence: str
    speech_end: float
    decided: float | None = None
    user_final: float | None = None
    heard: str = ""
    agent_transcript: float | None = None
    first_audio: float | None = None

    def figures(self) -> dict[str, Any]:
        def since(start: float | None, end: float | None) -> float | None:
            return None if start is None or end is None else round((end - start) * 1000, 1)

        return {
            "sentence": self.sentence,
            "heard": self.heard,
            "latency_ms": since(self.speech_end, self.first_audio),
            "hearing_ms": since(self.speech_end, self.user_final),
            "endpointing_ms": since(self.speech_end, self.decided),
            "recognition_ms": since(self.decided, self.user_final),
            "agent_ms": since(self.user_final, self.agent_transcript),
            "speech_ms": since(self.agent_transcript, self.first_audio),
        }


def run_call(quick: bool, token_delay: float | None = None) -> dict[str, Any]:
    """Start a ``voisnap serve`` with its defaults (or the agent at ``token_delay``)
    and measure the round trips of ``calls`` calls, ``rounds`` each."""
    options = QUICK if quick else FULL
    settings = {} if token_delay is None else {"agent_token_delay": str(token_delay)}
    with tempfile.TemporaryDirectory() as data_dir:
        server = voisnap_server(Path(data_dir), settings)
        server.start(timeout=60)
        try:
            rounds, errors = trio.run(_measure, server, options)
        finally:
            server.stop()
    return {
        "options": {**options, "agent_token_delay": token_delay or "default (0.03)"},
        **_summary(rounds),
        "errors": errors,
        "rounds": [r.figures() for r in rounds],
    }


async def _measure(server: Any, options: dict[str, Any]) -> tuple[list[RoundTrip], list]:
    tts = EspeakSpeech()
    speech = {text: await tts.synthesize(text) for text in SENTENCES}
    # Whole chunks, so that the microphone's 0.1 s chunks keep their pace.
    speech = {text: pcm + bytes(-len(pcm) % CHUNK_BYTES) for text, pcm in speech.items()}
    url = str(httpx.URL(f"http://127.0.0.1:{server.port}/voisnap/hubs/voice",
                        params={"agentId": "sophon"})).replace("http://", "ws://", 1)  # fmt: skip
    errors: list[Any] = []
    # The first recognition starts the decoder (the model loads): not measured.
    await _call(url, server.mint("warm-up", "bench"), speech, 1, errors)
    rounds: list[RoundTrip] = []
    for number in range(options["calls"]):
        token = server.mint(f"caller-{number}", "bench")
        rounds += await _call(url, token, speech, options["rounds"], errors)
    return rounds, errors


def _summary(rounds: list[RoundTrip]) -> dict[str, Any]:
    figures = [r.figures() for r in rounds]

    def percentiles(key: str) -> dict[str, float]:
        values = sorted(f[key] for f in figures if f[key] is not None)
        return {
            "p50": round(_percentile(values, 0.5), 1),
            "p99": round(_percentile(values, 0.99), 1),
        }

    return {
        "round_trips": len(rounds),
        "answered": sum(f["latency_ms"] is not None for f in figures),
        "latency_ms": percentiles("latency_ms"),
        "breakdown_ms": {key: percentiles(f"{key}_ms") for key in PARTS},
    }


class _Phone:
    """One call's connection: a reader that notes arrivals, a paced microphone."""

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self.ws = ws
        self.current: RoundTrip | None = None
        self.answered = trio.Event()
        self.errors: list[Any] = []
        self.started = trio.Event()
        self._receiving = 0
        self._next_chunk = 0.0
        self.sent: list[float] = []  # when each chunk of this round went out

    async def read(self) -> None:
        while True:
            for message in _records(await self.ws.get_message()):
                self._arrived(message, time.monotonic())

    def _arrived(self, message: dict[str, Any], now: float) -> None:
        target, trip = message.get("target"), self.current
        if target == "SessionStarted":
            self.started.set()
        elif target == "Error":
            self.errors.append(message["arguments"][0])
        elif message.get("type") == 7:
            self.errors.append({"close": message.get("error")})
        elif trip is None or (trip.user_final is None and target != "Transcript"):
            return  # before the caller was heard: what comes is the previous reply's
        elif target == "Transcript":
            payload = message["arguments"][0]
            if payload["role"] == "user" and payload["isFinal"] and trip.user_final is None:
                trip.user_final, trip.heard = now, payload["text"]
            elif payload["role"] == "agent" and trip.user_final and trip.agent_transcript is None:
                trip.agent_transcript = now
        elif self._is_audio(message) and trip.first_audio is None:
            trip.first_audio = now
            self.answered.set()

    def _is_audio(self, message: dict[str, Any]) -> bool:
        """A chunk of the open ``ReceiveAudio`` (not of one cancelled just now)."""
        return message.get("type") == 2 and message["invocationId"] == f"r{self._receiving}"

    async def receive_audio(self) -> None:
        """``ReceiveAudio()`` (again): cancel the stream open, if any, then a new one."""
        if self._receiving:
            await _send(self.ws, {"type": 5, "invocationId": f"r{self._receiving}"})
        self._receiving += 1
        await _send(self.ws, {
            "type": 4, "invocationId": f"r{self._receiving}", "target": "ReceiveAudio",
            "arguments": [],
        })  # fmt: skip

    async def speak(self, pcm: bytes) -> None:
        """Send ``pcm`` as the microphone records it: each chunk once its 0.1 s has passed."""
        for start in range(0, len(pcm), CHUNK_BYTES):
            await self.chunk(pcm[start : start + CHUNK_BYTES])

    async def silence_until(self, event: trio.Event, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not event.is_set() and time.monotonic() < deadline:
            await self.chunk(SILENCE)

    async def chunk(self, pcm: bytes) -> None:
        self._next_chunk = max(self._next_chunk, time.monotonic()) + CHUNK_SECONDS
        await trio.sleep_until(_trio_time(self._next_chunk))
        item = base64.b64encode(pcm).decode()
        await _send(self.ws, {"type": 2, "invocationId": "u", "item": item})
        self.sent.append(time.monotonic())


async def _call(
    url: str, token: str, speech: dict[str, bytes], rounds: int, errors: list[Any]
) -> list[RoundTrip]:
    """One call: ``rounds`` sentences, alternating, each answered (or timed out)."""
    trips: list[RoundTrip] = []
    marks = {sentence: _marks(pcm) for sentence, pcm in speech.items()}
    separator = "&" if "?" in url else "?"
    async with trio_websocket.open_websocket_url(f"{url}{separator}access_token={token}") as ws:
        await ws.send_message(json.dumps({"protocol": "json", "version": 1}) + "\x1e")
        await ws.get_message()  # the handshake response
        phone = _Phone(ws)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(phone.read)
            with trio.fail_after(10):
                await phone.started.wait()
            await phone.receive_audio()
            await _send(ws, {"type": 1, "target": "SendAudio", "arguments": [],
                             "streamIds": ["u"]})  # fmt: skip
            for number in range(rounds):
                sentence = SENTENCES[number % len(SENTENCES)]
                phone.answered, phone.sent = trio.Event(), []
                phone.current = trip = RoundTrip(sentence, 0.0)
                await phone.speak(speech[sentence])
                await phone.silence_until(phone.answered, ROUND_TIMEOUT)
                phone.current = None
                last_voiced, decision = marks[sentence]
                trip.speech_end = phone.sent[last_voiced]
                trip.decided = phone.sent[decision] if decision < len(phone.sent) else None
                trips.append(trip)
                for _ in range(GAP_CHUNKS):
                    await phone.chunk(SILENCE)
            await _send(ws, {"type": 3, "invocationId": "u"})
            nursery.cancel_scope.cancel()
    errors += phone.errors
    return trips


def _marks(pcm: bytes) -> tuple[int, int]:
    """The chunks of a round (its sentence, then silence) that hold the sentence's
    last voiced sample, and at which the server's endpointer ends the utterance."""
    cutter = UtteranceCutter(PAUSE)
    track = pcm + SILENCE * 50
    for index, start in enumerate(range(0, len(track), CHUNK_BYTES)):
        if any(
            isinstance(cut, UtteranceEnded)
            for cut in cutter.feed(track[start : start + CHUNK_BYTES])
        ):
            return _last_voiced_byte(pcm) // CHUNK_BYTES, index
    raise ValueError("the endpointer never ended the utterance")


def summarize_call(name: str, result: dict[str, Any]) -> str:
    latency, parts = result["latency_ms"], result["breakdown_ms"]
    split = ", ".join(f"{key} {value['p50']}" for key, value in parts.items())
    return (
        f"  {name}: {result['answered']}/{result['round_trips']} answered; end of speech to "
        f"first agent audio p50 {latency['p50']} ms, p99 {latency['p99']} ms "
        f"(p50s: {split} ms); errors {len(result['errors'])}"
    )

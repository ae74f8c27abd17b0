"""``python -m bench voice``: N concurrent ``StreamAudio`` streams, fed in real time (issue 16).

Each stream is one chat connection (the project's own minimal SignalR JSON client
over trio-websocket) that creates a session, then streams speech synthesized by
espeak-ng (``voisnap.voice.EspeakSpeech``): sentences, each followed by a second
of silence, in 0.1 s chunks paced by the wall clock, as a microphone would. It
reports, per level of concurrency:

- the latency from the endpointer's decision (the sentence's last voiced sample,
  plus the pause) to ``VoiceFinalTranscript`` at the client, p50 and p99;
- the word error rate of the final transcripts against the sentences (jiwer);
- whether the level is *sustained*: every final arrived, no error, p99 under 1 s.

And, for one stream fed as fast as the server takes it, the real-time factor of
the whole path (time to the last final / seconds of audio). The most concurrent
sustained level is the answer to "how many real-time streams does this machine
take". Nothing here is asserted: the bench's smoke test only checks it runs.
The VoiceHub's round trip, the other part of ``python -m bench voice``, is
``voice_call.py``.
"""

from __future__ import annotations

import base64
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import jiwer
import numpy
import trio
import trio_websocket

from voisnap.voice import EspeakSpeech

from .harness import voisnap_server

SENTENCES = [
    "i would like to order a pizza",
    "i want to go home",
    "what is the weather like today",
    "please call my mother tomorrow",
    "turn on the lights in the kitchen",
    "how far is it to the station",
]
SAMPLE_BYTES_PER_SECOND = 32000
CHUNK_SECONDS = 0.1
GAP_SECONDS = 1.0
PAUSE = 0.5  # the server's --voice-pause
SUSTAINED_P99 = 1.0
RS = "\x1e"
FULL = {"levels": [1, 2, 4, 6, 8], "sentences": 4}
QUICK = {"levels": [1, 2], "sentences": 2}


def run_voice(quick: bool) -> dict[str, Any]:
    options = QUICK if quick else FULL
    with tempfile.TemporaryDirectory() as data_dir:
        workers = 2
        server = voisnap_server(
            Path(data_dir),
            {
                "stt_workers": str(workers),
                "stt_streams_per_worker": str(max(options["levels"])),
                "agent_token_delay": "0.001",
                "voice_pause": str(PAUSE),
            },
        )
        server.start(timeout=60)
        try:
            outcome = trio.run(_measure, server, options)
        finally:
            server.stop()
    return {"scenario": "voice", "options": {**options, "stt_workers": workers}, **outcome}


async def _measure(server: Any, options: dict[str, Any]) -> dict[str, Any]:
    tts = EspeakSpeech()
    sentences = SENTENCES[: options["sentences"]]
    speech = [await tts.synthesize(text) for text in sentences]
    gap = bytes(int(GAP_SECONDS * SAMPLE_BYTES_PER_SECOND))
    track, ends = b"", []
    for pcm in speech:
        ends.append((len(track) + _last_voiced_byte(pcm)) / SAMPLE_BYTES_PER_SECOND)
        track += pcm + gap
    url = f"ws://127.0.0.1:{server.port}/hubs/chat"
    # The first stream starts the decoders (the model loads): not measured.
    await _stream(url, server.mint("warm-up", "bench"), track[: len(speech[0])], [], paced=False)
    levels = []
    for count in options["levels"]:
        runs: list[dict[str, Any]] = []
        async with trio.open_nursery() as nursery:
            for n in range(count):
                token = server.mint(f"speaker-{count}-{n}", "bench")
                nursery.start_soon(_collect, runs, url, token, track, ends)
        levels.append(_level(count, runs, sentences))
    fast = await _stream(url, server.mint("fast", "bench"), track, ends, paced=False)
    audio_seconds = len(track) / SAMPLE_BYTES_PER_SECOND
    sustained = [level["streams"] for level in levels if level["sustained"]]
    return {
        "audio_seconds": round(audio_seconds, 2),
        "real_time_factor": round(fast["elapsed"] / audio_seconds, 3),
        "levels": levels,
        "max_sustained_streams": max(sustained, default=0),
    }


async def _collect(runs: list, url: str, token: str, track: bytes, ends: list[float]) -> None:
    runs.append(await _stream(url, token, track, ends, paced=True))


def _level(count: int, runs: list[dict[str, Any]], sentences: list[str]) -> dict[str, Any]:
    latencies = sorted(latency for run in runs for latency in run["latencies"])
    said = " ".join(" ".join(sentences) for _ in runs)
    heard = " ".join(" ".join(run["finals"]) for run in runs)
    complete = all(len(run["finals"]) == len(sentences) and not run["errors"] for run in runs)
    p99 = _percentile(latencies, 0.99)
    return {
        "streams": count,
        "finals": sum(len(run["finals"]) for run in runs),
        "expected_finals": count * len(sentences),
        "errors": [error for run in runs for error in run["errors"]],
        "latency_p50_ms": round(_percentile(latencies, 0.5) * 1000, 1),
        "latency_p99_ms": round(p99 * 1000, 1),
        "wer": round(jiwer.wer(said, heard), 3) if heard else 1.0,
        "sustained": complete and p99 < SUSTAINED_P99,
    }


def _last_voiced_byte(pcm: bytes, threshold: int = 300) -> int:
    """Where the speech in ``pcm`` ends: just after its last sample louder than
    ``threshold`` (espeak-ng ends a sentence with a little near-silence)."""
    samples = numpy.frombuffer(pcm, dtype="<i2")
    loud = numpy.flatnonzero(numpy.abs(samples.astype(numpy.int32)) > threshold)
    return 0 if loud.size == 0 else int(loud[-1] + 1) * 2


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


async def _stream(
    url: str, token: str, track: bytes, ends: list[float], *, paced: bool
) -> dict[str, Any]:
    """One speaker: a session, then ``track`` streamed; the finals and their latencies."""
    finals: list[str] = []
    arrivals: list[float] = []
    errors: list[str] = []
    async with trio_websocket.open_websocket_url(f"{url}?access_token={token}") as ws:
        await ws.send_message(json.dumps({"protocol": "json", "version": 1}) + RS)
        await ws.get_message()  # the handshake response
        await _send(ws, {
            "type": 1, "invocationId": "s", "target": "SendMessage",
            "arguments": [{"sessionId": None, "agentId": "sophon", "content": "hello",
                           "isStreaming": False}],
        })  # fmt: skip
        session_id = None
        while session_id is None:
            for message in _records(await ws.get_message()):
                if message.get("type") == 3 and message.get("invocationId") == "s":
                    session_id = message["result"]["sessionId"]
        done = trio.Event()

        async def read() -> None:
            while True:
                for message in _records(await ws.get_message()):
                    target = message.get("target")
                    if target == "VoiceFinalTranscript":
                        finals.append(message["arguments"][0]["text"])
                        arrivals.append(time.monotonic())
                    elif target == "VoiceError":
                        errors.append(message["arguments"][0]["code"])
                    elif message.get("type") == 3 and message.get("invocationId") == "a":
                        done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            await _send(ws, {
                "type": 1, "invocationId": "a", "target": "StreamAudio",
                "arguments": [session_id, "Auto"], "streamIds": ["1"],
            })  # fmt: skip
            step = int(CHUNK_SECONDS * SAMPLE_BYTES_PER_SECOND)
            started = time.monotonic()
            for number, start in enumerate(range(0, len(track), step)):
                if paced:
                    await trio.sleep_until(_trio_time(started + number * CHUNK_SECONDS))
                item = base64.b64encode(track[start : start + step]).decode()
                await _send(ws, {"type": 2, "invocationId": "1", "item": item})
            await _send(ws, {"type": 3, "invocationId": "1"})
            with trio.move_on_after(30):
                await done.wait()
            nursery.cancel_scope.cancel()
    decided = [started + end + PAUSE for end in ends]
    latencies = [max(0.0, a - d) for a, d in zip(arrivals, decided, strict=False)] if paced else []
    elapsed = (arrivals[-1] if arrivals else time.monotonic()) - started
    return {"finals": finals, "latencies": latencies, "errors": errors, "elapsed": elapsed}


async def _send(ws: trio_websocket.WebSocketConnection, message: dict[str, Any]) -> None:
    await ws.send_message(json.dumps(message) + RS)


def _records(data: str | bytes) -> list[dict[str, Any]]:
    text = data.decode() if isinstance(data, bytes) else data
    return [json.loads(record) for record in text.split(RS) if record]


def _trio_time(monotonic_moment: float) -> float:
    """A ``time.monotonic`` moment on trio's clock (they tick alike, from different zeros)."""
    return trio.current_time() + (monotonic_moment - time.monotonic())


def summarize_voice(result: dict[str, Any]) -> str:
    lines = [
        f"voice: {result['audio_seconds']} s of speech per stream; real-time factor "
        f"{result['real_time_factor']} (one stream, fed as fast as taken)",
    ]
    for level in result["levels"]:
        lines.append(
            f"  {level['streams']} streams: finals {level['finals']}/{level['expected_finals']}, "
            f"p50 {level['latency_p50_ms']} ms, p99 {level['latency_p99_ms']} ms, "
            f"WER {level['wer']}, {'sustained' if level['sustained'] else 'NOT sustained'}"
        )
    lines.append(
        f"  most concurrent real-time streams sustained: {result['max_sustained_streams']}"
    )
    return "\n".join(lines)

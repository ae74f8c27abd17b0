"""Voisnap's VoiceHub with the official ``@microsoft/signalr`` client (issue 17,
``voisnap_voice.mjs``): synthesized speech up, the agent's speech down, both
transcripts, barge-in, and 8 kHz mu-law."""

from __future__ import annotations

import base64
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jiwer
import pytest
import trio

from tests.conftest import FAST_SETTINGS
from tests.support.node import run_scenario
from tests.support.server import ServerProcess
from tests.voice.conftest import HOME, PIZZA, silence
from voisnap.voice import EspeakSpeech
from voisnap.voice.audio import resample

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

CHUNK_MS = 100
# PocketSphinx's wideband model hears 8 kHz telephone audio badly (and
# differently each time its normalization has heard something else): over
# mu-law the test checks that both utterances are heard and answered, and
# tests/voisnap/test_audio_formats.py that the audio arrives intact.
ACCOUNT = "i need help with my account"
MORNING = "good morning"
SENTENCES = {"linear16": (PIZZA, HOME), "mulaw": (ACCOUNT, MORNING)}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    settings = {**FAST_SETTINGS, "agent_token_delay": "0.001"}
    with ServerProcess(tmp_path_factory.mktemp("voisnap-voice") / "data", settings) as started:
        yield started


@pytest.fixture(scope="module")
def speech() -> dict[str, bytes]:
    async def synthesize() -> dict[str, bytes]:
        tts = EspeakSpeech()
        return {text: await tts.synthesize(text) for text in (PIZZA, HOME, ACCOUNT, MORNING)}

    return trio.run(synthesize)


def voice_url(server: ServerProcess, **query: str) -> str:
    return str(httpx.URL(f"{server.url}/voisnap/hubs/voice",
                         params={"agentId": "sophon", **query}))


def encode(pcm: bytes, encoding: str) -> bytes:
    if encoding == "mulaw":
        return audioop.lin2ulaw(resample(pcm, 16000, 8000), 2)
    return pcm


def chunked(data: bytes, size: int) -> list[str]:
    return [base64.b64encode(data[i : i + size]).decode() for i in range(0, len(data), size)]


def converse(server: ServerProcess, tmp_path: Path, speech: dict[str, bytes], *,
             encoding: str = "linear16", barge_in: bool = False) -> dict[str, Any]:
    size = (16000 * 2 if encoding == "linear16" else 8000) * CHUNK_MS // 1000
    first, second = SENTENCES[encoding]
    audio = {
        "first": chunked(encode(speech[first], encoding), size),
        "second": chunked(encode(speech[second], encoding), size),
        "silence": chunked(encode(silence(1.2), encoding), size),
    }
    audio_file = tmp_path / "audio.json"
    audio_file.write_text(json.dumps(audio))
    query = {} if encoding == "linear16" else {"encoding": encoding}
    return run_scenario(
        "voisnap_voice.mjs", timeout=120, url=voice_url(server, **query),
        token=server.token(f"caller-{encoding}-{barge_in}"), audioFile=str(audio_file),
        chunkMs=CHUNK_MS, bargeIn=barge_in, keepAliveMs=1000, encoding=encoding,
    )


def transcripts(seen: dict[str, Any], role: str) -> list[str]:
    return [e["payload"]["text"] for e in seen["events"]
            if e["name"] == "Transcript" and e["payload"]["role"] == role
            and e["payload"]["isFinal"]]


def heard(seen: dict[str, Any]) -> None:
    """The caller's two utterances, transcribed (PocketSphinx on espeak-ng speech
    misses a word at times: docs/voice-pipeline.md, "Measurements")."""
    said = transcripts(seen, "user")
    assert len(said) == 2
    for text, expected in zip(said, (PIZZA, HOME), strict=True):
        assert jiwer.wer(expected, text) <= 0.25, (expected, text)


def test_speech_up_agent_speech_down_and_both_transcripts(
    server: ServerProcess, tmp_path: Path, speech: dict[str, bytes],
) -> None:
    seen = converse(server, tmp_path, speech)
    assert seen["started"]["agentId"] == "sophon" and seen["started"]["resumed"] is False
    heard(seen)
    agent = transcripts(seen, "agent")
    assert len(agent) == 2 and all(agent)
    names = [e["name"] for e in seen["events"]]
    assert "AudioInterrupted" not in names and "Error" not in names
    # Every chunk is 100 ms of 16 kHz linear16 (the last of a sentence may be shorter).
    sizes = [c["bytes"] for c in seen["chunks"]]
    assert all(0 < size <= 3200 and size % 2 == 0 for size in sizes)
    assert sizes.count(3200) >= 0.8 * len(sizes) and sum(sizes) > 32000
    assert max(c["loudness"] for c in seen["chunks"]) > 3000  # speech, not silence
    assert names[-1] == "ConversationEnded" or "SessionEnded" in names


def test_barge_in_stops_the_agents_audio(
    server: ServerProcess, tmp_path: Path, speech: dict[str, bytes],
) -> None:
    seen = converse(server, tmp_path, speech, barge_in=True)
    interrupted = [e for e in seen["events"] if e["name"] == "AudioInterrupted"]
    assert len(interrupted) == 1
    stopped_at = interrupted[0]["at"]
    # The interrupted reply says no more; the agent's next words are the second reply's.
    second_reply_at = next(e["at"] for e in seen["events"] if e["name"] == "Transcript"
                           and e["payload"]["role"] == "agent" and e["at"] >= stopped_at)
    assert seen["secondStart"] < stopped_at < second_reply_at
    # No more audio of the first reply after AudioInterrupted: the next chunk
    # belongs to the second reply, whose transcript comes first.
    late = [c for c in seen["chunks"] if stopped_at <= c["at"] < second_reply_at]
    assert late == []
    heard(seen)


def test_mulaw_at_8_khz_both_ways(
    server: ServerProcess, tmp_path: Path, speech: dict[str, bytes],
) -> None:
    seen = converse(server, tmp_path, speech, encoding="mulaw")
    said = transcripts(seen, "user")
    assert len(said) == 2 and all(said)
    assert len(transcripts(seen, "agent")) == 2
    sizes = [c["bytes"] for c in seen["chunks"]]
    assert all(0 < size <= 800 for size in sizes)  # 100 ms of 8 kHz mu-law, a byte a sample
    assert sizes.count(800) >= 0.8 * len(sizes)
    assert max(c["loudness"] for c in seen["chunks"]) > 3000

"""``StreamAudio`` with the official ``@microsoft/signalr`` client (issue 16, ``voice.mjs``).

Auto mode with two utterances separated by a pause gives interim transcripts, two
final ones and two agent tasks in the session; Manual mode gives one final transcript
when the stream completes; a second device joined to the session receives the
agent's replies but no transcript events. The speech is espeak-ng's, synthesized here.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import jiwer
import pytest
import trio

from tests.conftest import FAST_SETTINGS
from tests.support.node import run_scenario
from tests.support.server import ServerProcess
from tests.voice.conftest import HOME, PIZZA, silence
from voisnap.voice import EspeakSpeech

CHUNK = 3200


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    settings = {**FAST_SETTINGS, "agent_token_delay": "0.001"}
    with ServerProcess(tmp_path_factory.mktemp("voice-js") / "data", settings) as server:
        yield server


def chunks_of(pcm: bytes) -> list[str]:
    return [base64.b64encode(pcm[i : i + CHUNK]).decode() for i in range(0, len(pcm), CHUNK)]


def test_voice_official_client_auto_and_manual(hub: ServerProcess, tmp_path: Path) -> None:
    async def synthesize() -> dict[str, bytes]:
        tts = EspeakSpeech()
        return {text: await tts.synthesize(text) for text in (PIZZA, HOME)}

    speech = trio.run(synthesize)
    audio = {
        "auto": chunks_of(speech[PIZZA] + silence(1) + speech[HOME] + silence(1)),
        "manual": chunks_of(speech[HOME]),
    }
    audio_file = tmp_path / "audio.json"
    audio_file.write_text(json.dumps(audio))
    seen = run_scenario(
        "voice.mjs",
        timeout=90,
        url=hub.hub_url("chat"),
        token=hub.token("js-speaker"),
        audioFile=str(audio_file),
    )
    finals = seen["finals"]
    assert seen["interims"] > 0 and seen["voiceErrors"] == 0
    assert len(finals) == 3 and all(f["sessionId"] == seen["sessionId"] for f in finals)
    said = [PIZZA, HOME, HOME]
    assert max(jiwer.wer(s, f["text"]) for s, f in zip(said, finals, strict=True)) <= 0.25, finals
    assert seen["otherVoiceEvents"] == 0
    assert seen["otherReplies"] >= 2

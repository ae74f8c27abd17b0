"""The VoiceHub round trip of ``python -m bench voice`` works: a short run against a
real ``voisnap serve`` hears every sentence and answers each with the agent's audio.
Benchmarks are not tests: no timing is asserted, only that every figure was measured."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.bench.test_bench_smoke import RESULTS, ROOT

# bench/voice_call.py's PARTS (``bench`` here is tests/bench, not the bench package).
PARTS = ("hearing", "endpointing", "recognition", "agent", "speech")


def test_bench_voice_call_quick_run_answers_every_round_trip() -> None:
    before = set(RESULTS.glob("*-voice.json")) if RESULTS.exists() else set()
    run = subprocess.run(
        [sys.executable, "-m", "bench", "voice", "--quick", "--part", "call"],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    [path] = set(RESULTS.glob("*-voice.json")) - before
    result = json.loads(path.read_text())
    assert "levels" not in result  # only the call part ran
    call = result["call"]["default"]
    assert call["options"]["agent_token_delay"] == "default (0.03)"
    assert call["errors"] == []
    assert call["answered"] == call["round_trips"] == len(call["rounds"]) >= 2
    for trip in call["rounds"]:
        assert trip["heard"], trip  # a final user Transcript arrived
        # Every event arrived, in the contract's order: the user's final, the
        # agent's Transcript, then its audio.
        for part in ("latency", *PARTS):
            assert trip[f"{part}_ms"] is not None and trip[f"{part}_ms"] >= 0, trip
    for part in PARTS:
        assert call["breakdown_ms"][part]["p50"] >= 0

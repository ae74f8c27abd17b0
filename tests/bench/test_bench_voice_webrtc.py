"""The WebRTC call of ``python -m bench voice`` works: a short run of browser calls
(headless Chromium) against a real ``voisnap serve`` answers every one with the
agent's audio at the browser. Benchmarks are not tests: no timing is asserted,
only that every figure was measured."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.bench.test_bench_smoke import RESULTS, ROOT


def test_bench_voice_webrtc_quick_run_answers_every_call() -> None:
    before = set(RESULTS.glob("*-voice.json")) if RESULTS.exists() else set()
    run = subprocess.run(
        [sys.executable, "-m", "bench", "voice", "--quick", "--part", "webrtc"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    [path] = set(RESULTS.glob("*-voice.json")) - before
    result = json.loads(path.read_text())
    assert "levels" not in result and "call" not in result  # only the WebRTC part ran
    webrtc = result["webrtc"]
    assert webrtc["errors"] == []
    assert webrtc["answered"] == webrtc["calls"] == 3
    assert len(webrtc["latency_ms"]["all"]) == 3
    assert all(latency > 0 for latency in webrtc["latency_ms"]["all"])  # audio after speech
    assert "end of speech to first agent audio at the browser p50" in run.stdout

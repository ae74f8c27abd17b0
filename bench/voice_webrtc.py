"""``python -m bench voice --part webrtc``: a browser's call on the WebRtcHub (issue 18).

Headless Chromium (Debian's ``/usr/bin/chromium``, driven by ``playwright-core``
from ``tests/conformance/js/webrtc_call.mjs``, the browser tests' own page)
calls a ``voisnap serve`` with its defaults (``--webrtc-host 127.0.0.1``, so
ICE pairs over loopback): its microphone is a WAV file of espeak-ng saying
one sentence after 1.5 s of silence; the page measures the agent's voice on
the received track with WebAudio (an RMS sample every 20 ms).

The latency of a call runs from the end of the caller's speech at the browser
to the first agent audio at the browser, p50 over the calls after a warm-up
(the first call starts the media worker). Both ends are page times: the
microphone's first energetic sample plus the sentence's voiced length (from
the WAV file) is the end of the speech; the first sample of the received
track above the threshold after the agent's first ``Transcript`` is the first
audio. Each is known to about 20 ms (the sampling).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import wave
from pathlib import Path
from typing import Any

from .harness import free_port, voisnap_server

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "tests" / "conformance" / "js" / "webrtc_call.mjs"
SENTENCE = "i would like to order a pizza"
VOICED = 500  # |sample| above this is speech (16-bit)
QUICK = {"calls": 3}
FULL = {"calls": 10}


def run_webrtc(quick: bool) -> dict[str, Any]:
    options = QUICK if quick else FULL
    with tempfile.TemporaryDirectory() as folder:
        microphone, voiced_ms = _microphone(Path(folder))
        page_port = free_port()
        settings = {"webrtc_host": "127.0.0.1", "cors_origins": f"http://127.0.0.1:{page_port}"}
        server = voisnap_server(Path(folder) / "data", settings)
        server.start(timeout=60)
        try:
            url = f"http://127.0.0.1:{server.port}/voisnap/hubs/webrtc?agentId=sophon"
            calls = _calls(url, server.mint("caller", "bench"), microphone, page_port,
                           1 + options["calls"])
        finally:
            server.stop()
    measured = calls[1:]  # the first started the media worker
    latencies = [latency for call in measured if (latency := _latency(call, voiced_ms))]
    return {
        "options": {**options, "sentence": SENTENCE, "voiced_ms": voiced_ms},
        "answered": len(latencies),
        "calls": len(measured),
        "latency_ms": {"p50": round(statistics.median(latencies)) if latencies else None,
                       "all": [round(latency) for latency in latencies]},
        "connect_ms_p50": round(statistics.median(c["timings"]["connectedMs"] for c in measured)),
        "errors": [error for call in calls for error in call.get("errors", [])],
    }


def _latency(call: dict[str, Any], voiced_ms: float) -> float | None:
    timings = call.get("timings", {})
    if call.get("firstAgentAudioMs") is None or "userFinalMs" not in timings:
        return None
    first_audio = timings["userFinalMs"] + call["firstAgentAudioMs"]
    end_of_speech = call["micFirstEnergyMs"] + voiced_ms
    return first_audio - end_of_speech


def _calls(url: str, token: str, microphone: Path, page_port: int, count: int) -> list[dict]:
    scenario = {"url": url, "token": token, "audioFile": str(microphone), "pagePort": page_port,
                "hangUp": "end", "waitMs": 30000, "calls": count,
                "timeoutMs": 60000 + 30000 * count}
    done = subprocess.run(
        ["node", str(SCENARIO)], env={**os.environ, "CONFORMANCE_INPUT": json.dumps(scenario)},
        capture_output=True, text=True, timeout=90 + 30 * count, check=False,
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    calls = [line for line in lines if line.get("event") == "call"]
    if len(calls) != count:
        raise RuntimeError(f"the browser made {len(calls)} of {count} calls: {done.stderr[-2000:]}")
    return calls


def _microphone(folder: Path) -> tuple[Path, float]:
    """The WAV file Chromium plays as its microphone, and the sentence's voiced ms."""
    spoken, microphone = folder / "spoken.wav", folder / "microphone.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "160", "-w", str(spoken), SENTENCE],
                   check=True, timeout=60)
    subprocess.run(["sox", str(spoken), "-r", "48000", str(microphone), "pad", "1.5", "2.5"],
                   check=True, timeout=60)
    with wave.open(str(spoken)) as reading:
        rate, frames = reading.getframerate(), reading.readframes(reading.getnframes())
    samples = memoryview(frames).cast("h")
    voiced = [index for index, sample in enumerate(samples) if abs(sample) > VOICED]
    return microphone, (voiced[-1] - voiced[0]) * 1000 / rate


def summarize_webrtc(result: dict[str, Any]) -> str:
    return (
        f"voice webrtc (browser call, agent sophon): {result['answered']}/{result['calls']} "
        f"answered; end of speech to first agent audio at the browser p50 "
        f"{result['latency_ms']['p50']} ms; connected p50 {result['connect_ms_p50']} ms after "
        f"the call began; errors {len(result['errors'])}"
    )

"""WebRtcHub in a real browser (issue 18; docs/hubs/voisnap-webrtc.md).

Headless Chromium (Debian's, driven by ``playwright-core`` from node:
``tests/conformance/js/webrtc_call.mjs`` and ``webrtc_page.html``) calls a real
``voisnap serve``: its microphone is a WAV file espeak-ng synthesized, the
page uses the official ``@microsoft/signalr`` browser bundle for the
signaling, and ICE pairs over 127.0.0.1 only (``--webrtc-host``). The page
measures the agent's voice on the received track with WebAudio.
"""

from __future__ import annotations

import json
import os
import subprocess
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
from tests.support.services import find_binary, free_port
from tests.voice.conftest import HOME, PIZZA

HUB = "/voisnap/hubs/webrtc"
AGENT_AUDIO_RMS = 0.005  # the page's RMS of the received track; silence is 0
MIB = 1024 * 1024
SETTLE = 30.0  # seconds for a process's counts to come back after calls


@pytest.fixture(scope="module")
def page_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, page_port: int) -> Iterator[ServerProcess]:
    # The browser bundle pings every 15 s: the server keeps its default client timeout.
    settings = {**FAST_SETTINGS, "client_timeout": "30", "agent_token_delay": "0.001"}
    args = ["--webrtc-host", "127.0.0.1", "--cors-origin", f"http://127.0.0.1:{page_port}"]
    data_dir = tmp_path_factory.mktemp("webrtc") / "data"
    with ServerProcess(data_dir, settings, args) as started:
        yield started


@pytest.fixture(scope="module")
def microphone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the browser's microphone says: espeak-ng's speech at 48 kHz, after
    3 s of silence and followed by 2.5 s. Chromium starts the file at
    ``getUserMedia``, before the peer connection exists: the silence covers the
    offer and answer (1.2 s for the first call, which starts the worker, on an
    idle machine; more on a loaded one)."""
    folder = tmp_path_factory.mktemp("microphone")
    spoken, wav = folder / "spoken.wav", folder / "microphone.wav"
    # The voice and pace of voisnap's own EspeakSpeech, which PocketSphinx hears well.
    espeak = find_binary("espeak-ng", "espeak-ng")
    subprocess.run([espeak, "-v", "en-us", "-s", "160", "-w", str(spoken), PIZZA],
                   check=True, timeout=60)
    subprocess.run([find_binary("sox", "sox"), str(spoken), "-r", "48000", str(wav),
                    "pad", "3", "2.5"], check=True, timeout=60)
    return wav


@pytest.fixture(scope="module")
def interrupting_microphone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A caller who speaks again while the agent answers: the first sentence,
    4 s of silence (the agent's 15 s introduction has begun), the second."""
    folder = tmp_path_factory.mktemp("interrupting")
    espeak, sox = find_binary("espeak-ng", "espeak-ng"), find_binary("sox", "sox")
    parts = []
    for name, text in (("first", PIZZA), ("second", HOME)):
        parts.append(folder / f"{name}.wav")
        subprocess.run([espeak, "-v", "en-us", "-s", "160", "-w", str(parts[-1]), text],
                       check=True, timeout=60)
    wav = folder / "microphone.wav"
    padded = folder / "first-padded.wav"
    subprocess.run([sox, str(parts[0]), str(padded), "pad", "3", "4"], check=True, timeout=60)
    subprocess.run([sox, str(padded), str(parts[1]), "-r", "48000", str(wav), "pad", "0", "2.5"],
                   check=True, timeout=60)
    return wav


def call(server: ServerProcess, page_port: int, microphone: Path, *, user: str,
         hang_up: str = "end", calls: int = 1, utterances: int = 1) -> list[dict[str, Any]]:
    result = run_scenario(
        "webrtc_call.mjs", timeout=60 + 30 * calls,
        url=f"{server.url}{HUB}?agentId=sophon", token=server.token(user, "acme"),
        audioFile=str(microphone), pagePort=page_port, hangUp=hang_up, waitMs=30000,
        calls=calls, userFinals=utterances,
    )
    return result["calls"]


def statistics(server: ServerProcess) -> dict[str, Any]:
    return httpx.get(f"{server.url}/stats", timeout=10).json()


def assert_whole_call(call: dict[str, Any]) -> None:
    summary = Shown(call)
    assert summary["connected"] and summary["iceConnected"], summary
    assert summary["callStates"][:2] == ["connecting", "connected"], summary
    heard = summary["userTranscripts"]
    assert len(heard) == 1, summary
    # PocketSphinx on espeak-ng speech that went through Opus misses a word at times.
    assert jiwer.wer(PIZZA, heard[0]) <= 0.5, heard
    assert len(summary["agentTranscripts"]) == 1, summary
    assert "You said" in summary["agentTranscripts"][0]  # the built-in agent's answer (cut)
    assert summary["peakRms"] > AGENT_AUDIO_RMS, summary  # the agent's voice was heard
    assert summary["sessionEnded"]["reason"] == "ended_by_user", summary
    assert not summary["errorEvents"], summary


class Shown(dict):
    """A call's summary that an assertion shows whole."""

    def __repr__(self) -> str:
        return json.dumps(self)


def assert_released(server: ServerProcess) -> None:
    """No call, no speech decoder, left on the server once the calls ended."""

    async def wait() -> None:
        with trio.fail_after(SETTLE):
            while True:
                numbers = statistics(server)
                if numbers["webrtc"]["calls"] == 0 and numbers["voice"]["streams"] == 0:
                    return
                await trio.sleep(0.1)

    trio.run(wait)


def test_a_call_hung_up_with_end_session(
    server: ServerProcess, page_port: int, microphone: Path
) -> None:
    """ICE and DTLS complete, the sentence is transcribed, the agent's reply is
    heard in the browser, EndSessionAsync ends the session, and the server
    keeps nothing of the call."""
    (summary,) = call(server, page_port, microphone, user="caller-end")
    assert_whole_call(summary)
    assert summary["events"][0] == "SessionStarted"
    assert "IceCandidate" in summary["events"]
    assert_released(server)


def test_closing_the_peer_connection_hangs_up(
    server: ServerProcess, page_port: int, microphone: Path
) -> None:
    (summary,) = call(server, page_port, microphone, user="caller-close", hang_up="close")
    assert_whole_call(summary)
    assert summary["callStates"][-1] in ("closed", "failed"), summary
    assert_released(server)


def census(pid: int) -> dict[str, int]:
    with open(f"/proc/{pid}/statm") as statm:
        resident = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return {
        "threads": len(os.listdir(f"/proc/{pid}/task")),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "rss": resident,
    }


def settled(pid: int, baseline: dict[str, int]) -> dict[str, int]:
    """The process's counts once they are back at ``baseline`` (or below: trio's
    idle worker threads end after a while), or as they are after ``SETTLE``."""

    async def wait() -> dict[str, int]:
        with trio.move_on_after(SETTLE):
            while True:
                now = census(pid)
                if now["threads"] <= baseline["threads"] and now["fds"] <= baseline["fds"]:
                    return now
                await trio.sleep(0.1)
        return census(pid)

    return trio.run(wait)


def test_ten_calls_leave_threads_files_and_memory_where_one_did(
    server: ServerProcess, page_port: int, microphone: Path
) -> None:
    """After one warm-up call, ten more leave the server's and the media
    worker's threads and open files where they were, and RSS within 20 MiB."""
    (warm_up,) = call(server, page_port, microphone, user="soak-warm-up")
    assert_whole_call(warm_up)
    assert_released(server)
    server_pid = server.process.pid
    worker_pid = statistics(server)["webrtc"]["workerPid"]
    assert worker_pid, "no media worker after a call"
    before = {"server": census(server_pid), "worker": census(worker_pid)}

    summaries = call(server, page_port, microphone, user="soak", calls=10)
    assert len(summaries) == 10
    for summary in summaries:
        assert summary["connected"] and summary["peakRms"] > AGENT_AUDIO_RMS, summary
        assert summary["sessionEnded"]["reason"] == "ended_by_user", summary
    assert_released(server)
    assert statistics(server)["webrtc"]["workerPid"] == worker_pid  # the same worker
    after = {"server": settled(server_pid, before["server"]),
             "worker": settled(worker_pid, before["worker"])}
    for process in ("server", "worker"):
        assert after[process]["threads"] <= before[process]["threads"], (process, before, after)
        assert after[process]["fds"] <= before[process]["fds"], (process, before, after)
        grown = after[process]["rss"] - before[process]["rss"]
        assert grown < 20 * MIB, (process, grown / MIB)


def test_barge_in_over_webrtc(
    server: ServerProcess, page_port: int, interrupting_microphone: Path
) -> None:
    """The caller speaks while the agent's reply plays: AudioInterrupted, the
    rest of that reply is dropped (on the server and in the media worker's
    buffer), and the second sentence gets its own reply."""
    (summary,) = call(server, page_port, interrupting_microphone, user="barging", utterances=2)
    shown = Shown(summary)
    assert summary["connected"], shown
    assert summary["eventCounts"].get("AudioInterrupted") == 1, shown
    assert len(summary["userTranscripts"]) == 2, shown
    # Both replies are whole in text (the fast agent wrote the first before the
    # caller spoke again); the first one's audio was cut.
    assert len(summary["agentTranscripts"]) == 2, shown
    assert not summary["errorEvents"], shown
    assert_released(server)

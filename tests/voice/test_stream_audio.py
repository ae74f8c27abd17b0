"""``StreamAudio`` on ``/hubs/chat``, against a real server (issue 16, docs/voice.md).

Speech is real espeak-ng (``conftest``), decoded by the server's real PocketSphinx
workers. The client is the project's own raw hub client, so each test sees the
exact messages: the upload stream (``StreamInvocation``-less: an Invocation with
``streamIds``, then StreamItems, then the Completion that ends the stream), the
transcripts that come back to the streaming connection only, and the spoken
messages entering the session as typed ones would.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import jiwer
import pytest
import trio

from tests.conftest import FAST_SETTINGS
from tests.support.server import ServerProcess
from tests.support.ws_client import COMPLETION, HubClient, get_stats, open_hub_client

from .conftest import HOME, PIZZA, silence

TIMEOUT = 60
CHUNK = 3200  # 0.1 s of 16 kHz 16-bit mono
MAX_UTTERANCE = 6


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    settings = {
        **FAST_SETTINGS,
        "client_result_timeout": "30",
        "stt_workers": "1",
        "stt_streams_per_worker": "2",
        "voice_max_utterance": str(MAX_UTTERANCE),
        "agent_token_delay": "0.001",
    }
    directory = tmp_path_factory.mktemp("voice")
    agents = directory / "agents.toml"
    agents.write_text('[agents.helper]\nbackend = "builtin"\n')
    args = ["--agents-file", str(agents)]
    with ServerProcess(directory / "data", settings, args) as server:
        yield server


def chunks_of(pcm: bytes) -> list[str]:
    return [base64.b64encode(pcm[i : i + CHUNK]).decode() for i in range(0, len(pcm), CHUNK)]


async def rest(server: ServerProcess, method: str, path: str, token: str, body: Any = None):
    async with httpx.AsyncClient(timeout=30, trust_env=False) as client:
        return await client.request(
            method, server.url + path, json=body, headers={"Authorization": f"Bearer {token}"}
        )


class Device:
    """One chat connection: it records every event it receives."""

    def __init__(self, client: HubClient) -> None:
        self.client = client
        self.events: list[tuple[str, Any]] = []
        self.completions: dict[str, dict[str, Any]] = {}
        self._changed = trio.Event()

    async def read(self) -> None:
        while True:
            message = await self.client.receive_message()
            if message.get("type") == COMPLETION:
                self.completions[message["invocationId"]] = message
            elif "target" in message:
                self.events.append((message["target"], message["arguments"][0]))
            self._changed.set()
            self._changed = trio.Event()

    async def until(self, check: Any) -> Any:
        while not (found := check()):
            await self._changed.wait()
        return found

    def of(self, target: str) -> list[Any]:
        return [payload for name, payload in self.events if name == target]

    async def call(self, invocation_id: str, target: str, *arguments: Any) -> dict[str, Any]:
        await self.client.send_record(
            {"type": 1, "invocationId": invocation_id, "target": target, "arguments": arguments}
        )
        return await self.until(lambda: self.completions.get(invocation_id))

    async def stream_audio(
        self,
        stream_id: str,
        session_id: str,
        items: list[Any],
        mode: str | None = None,
        *,
        invocation_id: str | None = None,
    ) -> None:
        """``StreamAudio`` with its chunks, then the Completion that ends the upload."""
        arguments = [session_id] if mode is None else [session_id, mode]
        invocation: dict[str, Any] = {
            "type": 1, "target": "StreamAudio", "arguments": arguments, "streamIds": [stream_id],
        }  # fmt: skip
        if invocation_id is not None:
            invocation["invocationId"] = invocation_id
        await self.client.send_record(invocation)
        for item in items:
            await self.client.send_record({"type": 2, "invocationId": stream_id, "item": item})
        await self.client.send_record({"type": 3, "invocationId": stream_id})


@asynccontextmanager
async def device(server: ServerProcess, token: str) -> AsyncIterator[Device]:
    async with (
        open_hub_client(f"{server.ws_url}/hubs/chat", token=token) as client,
        trio.open_nursery() as nursery,
    ):
        opened = Device(client)
        nursery.start_soon(opened.read)
        yield opened
        nursery.cancel_scope.cancel()


async def new_session(chat: Device, text: str = "hello", agent: str = "sophon") -> str:
    sent = await chat.call(
        "new-session",
        "SendMessage",
        {"sessionId": None, "agentId": agent, "content": text, "channelId": "webchat",
         "attachments": [], "isStreaming": True},
    )  # fmt: skip
    task_id = sent["result"]["taskId"]
    await chat.until(lambda: any(p["taskId"] == task_id for p in chat.of("TaskCompleted")))
    return sent["result"]["sessionId"]


async def test_stream_audio_auto_two_utterances_reach_the_agent(
    hub: ServerProcess, speech: dict[str, bytes]
) -> None:
    user = hub.token("speaker")
    audio = speech[PIZZA] + silence(1) + speech[HOME] + silence(1)
    with trio.fail_after(TIMEOUT):
        async with device(hub, user) as speaker, device(hub, user) as other:
            session_id = await new_session(speaker)
            hello = {p["taskId"] for p in speaker.of("TaskQueued")}
            await other.call("join", "JoinSession", session_id)
            await speaker.stream_audio("a1", session_id, chunks_of(audio), "Auto")
            finals = await speaker.until(
                lambda: len(f := speaker.of("VoiceFinalTranscript")) == 2 and f
            )

            def spoken_tasks_done() -> bool:
                """Both spoken messages became tasks; the other device saw them end."""
                queued = {p["taskId"] for p in other.of("TaskQueued")} - hello
                done = {p["taskId"] for p in other.of("TaskCompleted")}
                return len(queued) == 2 and queued <= done

            await other.until(spoken_tasks_done)
    interims = speaker.of("VoiceInterimTranscript")
    assert interims and all(set(p) == {"sessionId", "text"} for p in interims)
    # Recognition is not exact (docs/voice-pipeline.md, "Measurements"): close enough.
    errors = [jiwer.wer(said, f["text"]) for said, f in zip([PIZZA, HOME], finals, strict=True)]
    assert max(errors) <= 0.25, finals
    assert all(0 <= f["confidence"] <= 1 and f["sessionId"] == session_id for f in finals)
    assert not [name for name, _ in other.events if name.startswith("Voice")]
    assert len(other.of("ReceiveMessage")) >= 2
    messages = (await rest(hub, "GET", f"/sessions/{session_id}/messages", user)).json()
    spoken = [(m["content"], m["spoken"]) for m in messages if m["role"] == "user"]
    assert spoken == [("hello", False), (finals[0]["text"], True), (finals[1]["text"], True)]


async def test_stream_audio_manual_gives_one_final_when_the_stream_completes(
    hub: ServerProcess, speech: dict[str, bytes]
) -> None:
    user = hub.token("pusher")
    with trio.fail_after(TIMEOUT):
        async with device(hub, user) as speaker:
            session_id = await new_session(speaker)
            await speaker.stream_audio(
                "m1", session_id, chunks_of(speech[HOME]), "Manual", invocation_id="call"
            )
            done = await speaker.until(lambda: speaker.completions.get("call"))
    assert "error" not in done, done
    [final] = speaker.of("VoiceFinalTranscript")
    assert jiwer.wer(HOME, final["text"]) <= 0.25, final


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("mode", "INVALID_MODE"),
        ("session", "SESSION_NOT_FOUND"),
        ("not-base64", "INVALID_AUDIO"),
        ("odd", "INVALID_AUDIO"),
        ("not-a-string", "INVALID_AUDIO"),
        ("too-large", "CHUNK_TOO_LARGE"),
        ("too-long", "UTTERANCE_TOO_LONG"),
    ],
)
async def test_stream_audio_bad_input_is_a_voice_error_and_the_connection_stays(
    hub: ServerProcess, case: str, code: str
) -> None:
    user, stranger = hub.token("careless"), hub.token("stranger")
    quiet = chunks_of(silence(0.2))
    with trio.fail_after(TIMEOUT):
        async with device(hub, user) as speaker, device(hub, stranger) as other:
            session_id = await new_session(speaker)
            foreign = await new_session(other)
            items: list[Any] = quiet
            mode, target = "Auto", session_id
            match case:
                case "mode":
                    mode = "Loud"
                case "session":
                    target = foreign
                case "not-base64":
                    items = [*quiet, "not base64!"]
                case "odd":
                    items = [*quiet, base64.b64encode(b"abc").decode()]
                case "not-a-string":
                    items = [*quiet, 12345]
                case "too-large":
                    items = [base64.b64encode(bytes(16 * 1024 + 2)).decode()]
                case "too-long":
                    mode, items = "Manual", chunks_of(silence(MAX_UTTERANCE + 1))
            await speaker.stream_audio("bad", target, items, mode, invocation_id="bad-call")
            failed = await speaker.until(lambda: speaker.completions.get("bad-call"))
            [error] = await speaker.until(lambda: speaker.of("VoiceError"))
            echo = await speaker.call("after", "JoinSession", session_id)  # still connected
    assert error["code"] == code and error["sessionId"] == target, error
    assert error["message"] and error["message"] in failed["error"], (error, failed)
    assert "error" not in echo
    assert not speaker.of("VoiceFinalTranscript")


async def test_stream_audio_beyond_the_decoders_capacity_is_stt_busy(
    hub: ServerProcess, speech: dict[str, bytes]
) -> None:
    user = hub.token("crowd")
    quiet = base64.b64encode(silence(0.1)).decode()
    with trio.fail_after(TIMEOUT):
        async with device(hub, user) as speaker:
            session_id = await new_session(speaker)
            for stream in ("o1", "o2"):  # the worker's two places, held open
                await speaker.client.send_record({
                    "type": 1, "target": "StreamAudio", "arguments": [session_id, "Auto"],
                    "streamIds": [stream],
                })  # fmt: skip
                await speaker.client.send_record({"type": 2, "invocationId": stream, "item": quiet})
            await speaker.client.send_record({"type": 6})
            while (await get_stats(hub.url))["voice"]["streams"] < 2:
                await trio.sleep(0.05)
            await speaker.stream_audio("o3", session_id, [quiet], "Auto", invocation_id="third")
            refused = await speaker.until(lambda: speaker.completions.get("third"))
            [error] = await speaker.until(lambda: speaker.of("VoiceError"))
            for stream in ("o1", "o2"):
                await speaker.client.send_record({"type": 3, "invocationId": stream})
    assert error["code"] == "STT_BUSY" and refused["error"]


async def test_stream_audio_faster_than_real_time_is_held_to_the_decoders_pace(
    hub: ServerProcess, speech: dict[str, bytes]
) -> None:
    """Twenty seconds of speech sent at once: the server takes it no faster than the
    decoder, with at most its bounded buffer in flight (``GET /stats``)."""
    user = hub.token("hasty")
    audio = (speech[PIZZA] + silence(0.8)) * 8
    with trio.fail_after(TIMEOUT * 2):
        async with device(hub, user) as speaker:
            session_id = await new_session(speaker)
            await speaker.stream_audio(
                "fast", session_id, chunks_of(audio), "Auto", invocation_id="fast-call"
            )
            done = await speaker.until(lambda: speaker.completions.get("fast-call"))
    stats = (await get_stats(hub.url))["voice"]
    assert "error" not in done, done
    assert 0 < stats["max_chunks_in_flight"] <= stats["buffer_chunks"], stats
    assert len(speaker.of("VoiceFinalTranscript")) >= 6


async def test_voice_preferences_are_stored_and_used(
    hub: ServerProcess, speech: dict[str, bytes]
) -> None:
    user = hub.token("picky")
    defaults = await rest(hub, "GET", "/voice/preferences", user)
    refusals = [
        await rest(hub, "PUT", "/voice/preferences", user, body)
        for body in (
            {"provider": "cloud", "mode": "Auto", "pause": 0.5},
            {"provider": "sphinx", "mode": "auto", "pause": 0.5},
            {"provider": "sphinx", "mode": "Auto", "pause": 0},
            {"provider": "sphinx", "mode": "Auto", "pause": "1"},
            [1],
        )
    ]
    saved = await rest(
        hub, "PUT", "/voice/preferences", user, {"provider": "sphinx", "mode": "Manual", "pause": 1}
    )
    again = await rest(hub, "GET", "/voice/preferences", user)
    assert defaults.json() == {"provider": "sphinx", "mode": "Auto", "pause": 0.5}
    assert [r.status_code for r in refusals] == [400] * 5
    assert all(r.json()["error"] for r in refusals)
    assert saved.status_code == 200 and again.json() == {
        "provider": "sphinx", "mode": "Manual", "pause": 1.0,
    }  # fmt: skip
    # No mode given: the user's Manual, so PIZZA and HOME are one utterance, one final.
    audio = speech[PIZZA] + silence(1) + speech[HOME]
    with trio.fail_after(TIMEOUT):
        async with device(hub, user) as speaker:
            session_id = await new_session(speaker)
            await speaker.stream_audio("p1", session_id, chunks_of(audio), invocation_id="pref")
            done = await speaker.until(lambda: speaker.completions.get("pref"))
    assert "error" not in done, done
    assert len(speaker.of("VoiceFinalTranscript")) == 1


async def test_stream_audio_is_answered_by_the_agent_of_the_sessions_latest_task(
    hub: ServerProcess, speech: dict[str, bytes]
) -> None:
    user = hub.token("helped")
    with trio.fail_after(TIMEOUT):
        async with device(hub, user) as speaker:
            session_id = await new_session(speaker, agent="helper")
            await speaker.stream_audio(
                "h1", session_id, chunks_of(speech[HOME]), "Manual", invocation_id="helped"
            )
            done = await speaker.until(lambda: speaker.completions.get("helped"))
    tasks = (await rest(hub, "GET", "/tasks", user)).json()
    assert "error" not in done, done
    assert [task["agentId"] for task in tasks] == ["helper", "helper"]  # newest first

"""The Voisnap hubs' error codes, each provoked where it belongs, seen by the
official ``@microsoft/signalr`` client (issue 17, ``voisnap_errors.mjs``;
docs/hubs/voisnap.md, "Errors"). Also: the two products' clients do not see
each other's events."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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
from tests.voice.test_openai import KEY, TranscriptionHandler
from voisnap.voice import EspeakSpeech

SETTINGS = {**FAST_SETTINGS, "agent_token_delay": "0.005"}


def url(base: str, hub: str = "chat", **query: str) -> str:
    return str(httpx.URL(f"{base}/voisnap/hubs/{hub}", params=query))


def steps(*connections: dict[str, Any], timeout: float = 60, **params: Any) -> list[dict]:
    return run_scenario("voisnap_errors.mjs", timeout=timeout, connections=list(connections),
                        **params)["steps"]


def names(step: dict[str, Any]) -> list[str]:
    return [name for name, _, _ in step["events"]]


def errors(step: dict[str, Any]) -> list[dict[str, Any]]:
    return [payload for name, payload, _ in step["events"] if name == "Error"]


def refused(step: dict[str, Any], code: str) -> None:
    """An Error with ``code``, not recoverable, nothing else, then the close."""
    assert names(step) == ["Error"], step
    [error] = errors(step)
    assert error["code"] == code and error["recoverable"] is False, error
    assert code in (step["closeError"] or ""), step["closeError"]


@pytest.fixture(scope="module")
def agents_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    endpoints = [ThreadingHTTPServer(("127.0.0.1", 0), handler)
                 for handler in (FailingModel, RecordingModel)]
    for endpoint in endpoints:
        threading.Thread(target=endpoint.serve_forever, daemon=True).start()
    broken, recording = (endpoint.server_address[1] for endpoint in endpoints)
    path = tmp_path_factory.mktemp("agents") / "agents.toml"
    path.write_text(
        '[agents.retired]\nbackend = "builtin"\nenabled = false\n\n'
        '[agents.broken]\nbackend = "openai"\n'
        f'base_url = "http://127.0.0.1:{broken}/v1"\nmodel = "m"\n\n'
        '[agents.listener]\nbackend = "openai"\n'
        f'base_url = "http://127.0.0.1:{recording}/v1"\nmodel = "m"\n'
    )
    yield path
    for endpoint in endpoints:
        endpoint.shutdown()
        endpoint.server_close()


class FailingModel(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint whose model is down."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b'{"error": {"message": "the model is overloaded"}}'
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class RecordingModel(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint that streams "Hola." and keeps each request."""

    requests: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        RecordingModel.requests.append(json.loads(body))
        chunk = {"choices": [{"index": 0, "delta": {"content": "Hola."}}]}
        stream = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(stream)))
        self.end_headers()
        self.wfile.write(stream)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, agents_file: Path) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("voisnap-errors") / "data"
    with ServerProcess(data, {**SETTINGS, "agents_file": str(agents_file)}) as started:
        yield started


def test_an_unknown_agent_is_refused_then_closed(server: ServerProcess) -> None:
    [step] = steps({"url": url(server.url, agentId="nobody"), "token": server.token(),
                    "until": {"code": "AGENT_NOT_FOUND", "close": True}})
    refused(step, "AGENT_NOT_FOUND")
    assert "nobody" in errors(step)[0]["message"]


@pytest.mark.parametrize("hub", ["chat", "voice"])
def test_an_inactive_agent_is_refused_then_closed(server: ServerProcess, hub: str) -> None:
    [step] = steps({"url": url(server.url, hub, agentId="retired"), "token": server.token(),
                    "until": {"code": "AGENT_INACTIVE", "close": True}})
    refused(step, "AGENT_INACTIVE")


@pytest.mark.parametrize("query", [
    {},
    {"agentId": ""},
    {"agentId": "sophon", "language": "not a language!"},
    {"agentId": "sophon", "language": "x" * 40},
    {"agentId": "sophon", "metadata": "{not json"},
    {"agentId": "sophon", "metadata": "[1, 2]"},
    {"agentId": "sophon", "metadata": json.dumps({"pad": "x" * 5000})},
])
def test_a_bad_connect_query_is_an_invalid_request(server: ServerProcess, query: dict) -> None:
    [step] = steps({"url": url(server.url, **query), "token": server.token(),
                    "until": {"code": "INVALID_REQUEST", "close": True}})
    refused(step, "INVALID_REQUEST")


def test_language_and_metadata_are_handed_to_the_agent(server: ServerProcess) -> None:
    RecordingModel.requests = []
    query = {"agentId": "listener", "language": "es-MX",
             "metadata": json.dumps({"plan": "gold"})}
    [step] = steps({"url": url(server.url, **query), "token": server.token(),
                    "messages": [{"content": "hola", "metadata": {"userId": "user_12345"}}],
                    "until": {"replies": 1}})
    assert names(step)[0] == "SessionStarted" and errors(step) == []
    finals = [p["content"] for n, p, _ in step["events"] if n == "MessageReceived" and p["isFinal"]]
    assert finals == ["Hola."]
    [request] = RecordingModel.requests
    system = " ".join(m["content"] for m in request["messages"] if m["role"] == "system")
    assert "es-MX" in system and '{"plan": "gold"}' in system
    assert '{"userId": "user_12345"}' in system  # the message's own metadata


def test_a_token_that_expires_mid_session_is_auth_failed(server: ServerProcess) -> None:
    [step] = steps({"url": url(server.url, agentId="sophon"), "token": server.token(ttl=4),
                    "until": {"code": "AUTH_FAILED", "close": True}})
    assert names(step) == ["SessionStarted", "Error", "SessionEnded"]
    [error] = errors(step)
    assert error["code"] == "AUTH_FAILED" and error["recoverable"] is False
    session_id = step["events"][0][1]["sessionId"]
    assert step["events"][2][1] == {"sessionId": session_id, "reason": "auth_failed"}
    assert "token expired" in step["closeError"]
    # The session goes on: a new token resumes it.
    [again] = steps({"url": url(server.url, agentId="sophon", sessionId=session_id),
                     "token": server.token(), "until": {}})
    assert again["events"][0][1] == {"sessionId": session_id, "agentId": "sophon",
                                     "resumed": True}


def test_a_failing_model_endpoint_is_a_recoverable_llm_provider_error(
    server: ServerProcess,
) -> None:
    [step] = steps({"url": url(server.url, agentId="broken"), "token": server.token(),
                    "messages": ["hello?"], "keep": True,
                    "until": {"code": "LLM_PROVIDER_ERROR"}})
    [error] = errors(step)
    assert error["code"] == "LLM_PROVIDER_ERROR" and error["recoverable"] is True
    typing = [p["isTyping"] for n, p, _ in step["events"] if n == "TypingIndicator"]
    assert typing == [True, False]
    assert step["state"] == "Connected"  # the session goes on


# -- across processes -----------------------------------------------------------------------------


def test_the_session_limit_counts_across_processes(start_server: Any, tmp_path: Path) -> None:
    """Two processes sharing one store (the embedded SQLite file), a limit of 2."""
    settings = {**SETTINGS, "max_sessions_per_tenant": "2"}
    first = start_server(settings)
    second = start_server(settings, data_dir=first.data_dir)
    token = first.token("limited")
    chat = {"agentId": "sophon"}
    recorded = steps(
        {"url": url(first.url, **chat), "token": token, "keep": True},
        {"url": url(second.url, **chat), "token": token, "keep": True},
        {"url": url(first.url, **chat), "token": token,
         "until": {"code": "SESSION_LIMIT_REACHED", "close": True}},
        {"url": url(second.url, "voice", **chat), "token": first.token("other-user"),
         "until": {"code": "SESSION_LIMIT_REACHED", "close": True}},
        {"url": url(first.url, **chat), "token": token, "stop": 0},
    )
    assert [names(step)[0] for step in recorded] == [
        "SessionStarted", "SessionStarted", "Error", "Error", "SessionStarted"]
    refused(recorded[2], "SESSION_LIMIT_REACHED")
    refused(recorded[3], "SESSION_LIMIT_REACHED")
    assert "2 concurrent sessions" in errors(recorded[2])[0]["message"]


# -- a slow speech provider ------------------------------------------------------------------------


class SlowTranscription(TranscriptionHandler):
    """The first transcription hangs for ``HANG`` seconds; the next ones take as long as
    loading a PocketSphinx model and decoding (a second or two)."""

    HANG = 10.0
    calls = 0

    def do_POST(self) -> None:
        SlowTranscription.calls += 1
        if SlowTranscription.calls == 1:
            time.sleep(self.HANG)
        super().do_POST()


def test_a_slow_speech_provider_is_a_recoverable_stt_timeout(
    start_server: Any, tmp_path: Path,
) -> None:
    endpoint = ThreadingHTTPServer(("127.0.0.1", 0), SlowTranscription)
    threading.Thread(target=endpoint.serve_forever, daemon=True).start()
    try:
        server = start_server({
            **SETTINGS, "stt_provider": "openai", "stt_openai_key": KEY, "stt_timeout": "4",
            "stt_openai_url": f"http://127.0.0.1:{endpoint.server_address[1]}/",
        })

        async def synthesize() -> dict[str, bytes]:
            tts = EspeakSpeech()
            return {text: await tts.synthesize(text) for text in (PIZZA, HOME)}

        speech = trio.run(synthesize)
        pcm = speech[PIZZA] + silence(1.5) + speech[HOME] + silence(1.5)
        chunks = [base64.b64encode(pcm[i : i + 3200]).decode() for i in range(0, len(pcm), 3200)]
        audio = tmp_path / "audio.json"
        audio.write_text(json.dumps(chunks))
        [step] = steps({"url": url(server.url, "voice", agentId="sophon"),
                        "token": server.token(), "audioFile": str(audio), "keep": True,
                        "until": {"code": "STT_PROVIDER_TIMEOUT", "userFinals": 1}},
                       chunkMs=100, timeout=90)
    finally:
        endpoint.shutdown()
        endpoint.server_close()
    assert [(e["code"], e["recoverable"]) for e in errors(step)] == [
        ("STT_PROVIDER_TIMEOUT", True)], step
    # The call went on: the next utterance was heard.
    finals = [p["text"] for n, p, _ in step["events"]
              if n == "Transcript" and p["role"] == "user" and p["isFinal"]]
    assert len(finals) == 1 and jiwer.wer(HOME, finals[0]) <= 0.25, finals
    assert step["state"] == "Connected"


# -- the two products ------------------------------------------------------------------------------


def test_sophon_and_voisnap_clients_do_not_see_each_others_events(server: ServerProcess) -> None:
    seen = run_scenario(
        "voisnap_separation.mjs", timeout=60, token=server.token("both-products"),
        sophonUrl=f"{server.url}/hubs/chat", voisnapUrl=url(server.url, agentId="sophon"),
    )
    sophon_tasks = {p["taskId"] for n, p in seen["sophon"] if "taskId" in p}
    assert sophon_tasks == {seen["sophonTask"]}
    sophon_sessions = {p["sessionId"] for n, p in seen["sophon"] if "sessionId" in p}
    assert not any(s.startswith("vchat_") for s in sophon_sessions)
    voisnap_finals = [p for n, p in seen["voisnap"] if n == "MessageReceived" and p["isFinal"]]
    assert len(voisnap_finals) == 2
    assert "hello from sophon" not in json.dumps(seen["voisnap"])

"""OpenAITranscription against a real HTTP server on 127.0.0.1.

The server is a small ``http.server`` in a thread implementing
``POST /v1/audio/transcriptions``: it checks the bearer key, the model and the
multipart WAV (16 kHz, mono, 16-bit), and transcribes it with PocketSphinx, so
the words that come back are really in the audio that was sent.
"""

from __future__ import annotations

import io
import json
import threading
import wave
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jiwer
import pytest
import trio

from voisnap.voice import Final, Interim, OpenAITranscription, SttError
from voisnap.voice.recognizer import new_decoder

from .conftest import HOME, PIZZA, collect, silence

KEY = "sk-test"
MODEL = "whisper-test"


def multipart_fields(content_type: str, body: bytes) -> dict[str, bytes]:
    """name -> content of each part of a multipart/form-data body."""
    boundary = content_type.split("boundary=", 1)[1].strip('"').encode()
    fields = {}
    for part in body.split(b"--" + boundary)[1:-1]:
        head, _, content = part.strip(b"\r\n").partition(b"\r\n\r\n")
        name = head.split(b'name="', 1)[1].split(b'"', 1)[0].decode()
        fields[name] = content
    return fields


class TranscriptionHandler(BaseHTTPRequestHandler):
    received: list[dict] = []
    status = 200

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path != "/v1/audio/transcriptions":
            return self.answer(404, {"error": "not found"})
        if self.headers.get("Authorization") != f"Bearer {KEY}":
            return self.answer(401, {"error": "bad key"})
        fields = multipart_fields(self.headers["Content-Type"], body)
        with wave.open(io.BytesIO(fields["file"])) as wav:
            params = (wav.getframerate(), wav.getnchannels(), wav.getsampwidth())
            pcm = wav.readframes(wav.getnframes())
        self.received.append({"model": fields["model"].decode(), "params": params})
        if params != (16000, 1, 2) or self.status != 200:
            return self.answer(self.status if self.status != 200 else 400, {"error": "no"})
        decoder = new_decoder()
        decoder.start_utt()
        decoder.process_raw(pcm, False, True)
        decoder.end_utt()
        self.answer(200, {"text": decoder.hyp().hypstr if decoder.hyp() else ""})

    def answer(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[str]:
    TranscriptionHandler.received = []
    TranscriptionHandler.status = 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), TranscriptionHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


async def test_openai_auto_posts_one_wav_per_utterance(endpoint, speech) -> None:
    stt = OpenAITranscription(endpoint, MODEL, KEY)
    stream = await stt.open_stream(auto=True, pause=0.5)
    audio = silence(0.5) + speech[PIZZA] + silence(1) + speech[HOME] + silence(1)
    with trio.fail_after(30):
        events = await collect(stream, audio)
    await stream.aclose()
    assert not any(isinstance(event, Interim) for event in events)
    assert all(isinstance(event, Final) and event.confidence == 1.0 for event in events)
    assert jiwer.wer([PIZZA, HOME], [event.text for event in events]) <= 0.2, events
    assert [request["model"] for request in TranscriptionHandler.received] == [MODEL] * 2


async def test_openai_manual_posts_the_whole_stream_at_finish(endpoint, speech) -> None:
    stt = OpenAITranscription(endpoint, MODEL, KEY)
    stream = await stt.open_stream(auto=False, pause=0.5)
    with trio.fail_after(30):
        events = await collect(stream, silence(0.3) + speech[PIZZA] + silence(1))
    await stream.aclose()
    assert len(TranscriptionHandler.received) == 1
    assert [event.text for event in events] == [PIZZA]


async def test_openai_error_status_raises_stt_error(endpoint, speech) -> None:
    TranscriptionHandler.status = 500
    stt = OpenAITranscription(endpoint, MODEL, KEY)
    stream = await stt.open_stream(auto=False, pause=0.5)
    await stream.feed(speech[HOME])
    with trio.fail_after(30), pytest.raises(SttError, match="500"):
        await stream.finish()
    with pytest.raises(SttError, match="500"):
        async for _ in stream.events():
            pass
    await stream.aclose()


async def test_openai_wrong_key_raises_stt_error(endpoint, speech) -> None:
    stream = await OpenAITranscription(endpoint, MODEL, "sk-wrong").open_stream(
        auto=False, pause=0.5
    )
    await stream.feed(speech[HOME])
    with trio.fail_after(30), pytest.raises(SttError, match="401"):
        await stream.finish()
    await stream.aclose()

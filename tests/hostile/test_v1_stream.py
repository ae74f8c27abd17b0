"""Hostile clients of ``/v1/stream`` (seed 004): a JSON-over-WebSocket client
that sends garbage, reaches for other people's sessions, floods, stalls, or
outlives its token must never hurt the server or anyone else on it.

A bad frame gets an ``error`` frame (``BAD_REQUEST``, ``NOT_FOUND``...) and the
connection stays; a frame over ``--plain-ws-max-frame`` closes it with 1009;
a WebSocket protocol error closes it with its RFC 6455 code. Every case ends
with ``assert_stream_serves``: a fresh, well-behaved client submits a task
and gets its whole reply (``task:done``, the seed's invariants on its log).
Everything waits on the server, with a timeout; never on a fixed sleep.
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import pytest
import trio
import trio_websocket

from tests.hostile.helpers import (
    BINARY,
    CLOSE_FRAME,
    CONTINUATION,
    OTHER_SECRET,
    PING_FRAME,
    PONG_FRAME,
    SAMPLE_KEY,
    TEXT,
    FrameSocket,
    assert_quiet_log,
    log_mark,
    make_token,
    request_head,
    ws_frame,
)
from tests.support.server import ServerProcess
from tests.support.stream_client import StreamClient, check_invariants, open_stream
from tests.support.ws_client import HttpResponseReader

MAX_FRAME = 64 * 1024
SERVER_SETTINGS = {"agent_token_delay": "0.002", "plain_ws_max_frame": str(MAX_FRAME)}
TIMEOUT = 15
STREAM = "/v1/stream"
MAX_ID = 128
MAX_PROMPT = 32 * 1024
MAX_ANSWER = 4096
MESSAGE_TOO_BIG, PROTOCOL_ERROR, INVALID_PAYLOAD, UNAUTHENTICATED = 1009, 1002, 1007, 4001
ARITHMETIC = "what is 12 * 7"
ENDS = ("task:done", "task:failed")
# ~7 MB of events for a client that reads none: "my notes" lists them all (tool
# result, tokens, turn.done), each note as long as add_note takes, one word.
SLOW_SESSIONS, SLOW_TURNS, NOTES, NOTE_SIZE = 16, 3, 25, 1990


# -- the proof every case ends with -------------------------------------------------------------


def assert_alive(server: ServerProcess) -> None:
    assert server.process is not None
    code = server.process.poll()
    assert code is None, f"the server exited with {code}:\n" + "".join(server.stderr_lines[-60:])


async def full_reply(client: StreamClient, prompt: str = ARITHMETIC, **fields: Any) -> list[dict]:
    """Submit ``prompt`` on ``client`` and read to its task's end; the task's events."""
    start = len(client.log)
    await client.send({"type": "task.submit", "mode": "session", "prompt": prompt, **fields})
    first = await client.until(lambda e: "task_id" in e or e["type"] == "error")
    assert first["type"] != "error", first
    task_id = first["task_id"]
    await client.until(lambda e: e.get("task_id") == task_id and e["type"] in ENDS)
    check_invariants(client.log)
    events = [e for e in client.log[start:] if e.get("task_id") == task_id]
    assert events[-1] == {**events[-1], "type": "task:done", "status": "completed"}, events[-1]
    done = [e for e in events if e["type"] == "turn.done"]
    assert len(done) == 1, events
    if prompt == ARITHMETIC:
        assert "84" in done[0]["result_text"], done
    return events


async def assert_stream_serves(server: ServerProcess, user: str = "bob") -> None:
    """The server is alive, and a fresh well-behaved client gets a whole reply."""
    assert_alive(server)
    with trio.fail_after(TIMEOUT):
        async with open_stream(server, make_token(user)) as client:
            await full_reply(client)
    assert_alive(server)


async def error_reply(client: StreamClient, frame: str | bytes) -> dict[str, Any]:
    """Send a raw message; the error frame it gets (the connection stays open)."""
    with trio.fail_after(TIMEOUT):
        await client.ws.send_message(frame)
        return await client.until_type("error")


# -- WebSockets by hand, on /v1/stream -----------------------------------------------------------


class RawStream(FrameSocket):
    """A hand-made WebSocket to ``/v1/stream``: frames out as given, events in."""

    async def next_event(self) -> dict[str, Any] | None:
        """The next data message as JSON (Pings answered by us are not expected;
        Pongs skipped); None at a Close or EOF."""
        parts: list[bytes] = []
        while True:
            frame = await self.next_frame()
            if frame is None:
                return None
            fin, opcode, payload = frame
            if opcode == CLOSE_FRAME:
                self.close_payload = payload
                return None
            if opcode in (TEXT, BINARY, CONTINUATION):
                parts.append(payload)
                if fin:
                    return json.loads(b"".join(parts))

    async def until(self, kind: str, **fields: Any) -> dict[str, Any]:
        while True:
            event = await self.next_event()
            assert event is not None, "the server closed the connection"
            if event["type"] == kind and all(event.get(k) == v for k, v in fields.items()):
                return event

    async def send_json(self, frame: dict[str, Any]) -> None:
        await self.send(ws_frame(TEXT, json.dumps(frame).encode()))

    async def wait_eof(self) -> None:
        """Read (and drop) bytes until the server ends the TCP connection (an
        abort may cut a frame short: bytes, not frames, are read)."""
        self._buffer.clear()
        while await self._fill():
            self._buffer.clear()


async def open_raw(server: ServerProcess, token: str, *, receive_buffer: int | None = None,
                   path: str = STREAM) -> RawStream:
    """A hand-made WebSocket to ``path`` (``RawStream``: frames as given, no Pong sent)."""
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    if receive_buffer is not None:  # before connect: the TCP window is set at the handshake
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    await sock.connect(("127.0.0.1", server.port))
    stream = trio.SocketStream(sock)
    await stream.send_all(request_head("GET", f"{path}?token={quote(token)}", server, [
        ("Upgrade", "websocket"), ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", SAMPLE_KEY), ("Sec-WebSocket-Version", "13"),
    ]))
    reader = HttpResponseReader(stream)
    response = await reader.read_response()
    assert response.status == 101, response
    return RawStream(stream, bytes(reader.buffer))


@asynccontextmanager
async def raw_stream(server: ServerProcess, token: str, **options: Any
                     ) -> AsyncIterator[RawStream]:
    raw = await open_raw(server, token, **options)
    try:
        yield raw
    finally:
        await raw.aclose()


def close_code(payload: bytes) -> int | None:
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None


# -- garbage frames: an error frame, and the connection goes on ----------------------------------


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


GARBAGE: dict[str, str | bytes] = {
    "not-json": "hello, server",
    "truncated-json": '{"type": "task.submit", "prompt": "hi"',
    "empty-text": "",
    "whitespace": "   \n\t ",
    "json-array": '["task.submit", "hi"]',
    "json-empty-array": "[]",
    "json-number": "42",
    "json-float": "1e999",
    "json-null": "null",
    "json-true": "true",
    "json-string": '"task.submit"',
    "nan": '{"type": NaN}',
    "missing-type": '{"prompt": "hi", "mode": "session"}',
    "empty-object": "{}",
    "type-number": '{"type": 5}',
    "type-null": '{"type": null}',
    "type-list": '{"type": ["task.submit"]}',
    "type-object": '{"type": {"type": "task.submit"}}',
    "type-bool": '{"type": true}',
    "type-empty": '{"type": ""}',
    "type-huge": json.dumps({"type": "t" * (MAX_FRAME - 100)}),
    "type-unknown": '{"type": "task.destroy_everything"}',
    "type-wrong-case": '{"type": "TASK.SUBMIT", "prompt": "hi"}',
    "type-colon-event": '{"type": "task:done", "task_id": "task_x"}',
    "type-nul-bytes": '{"type": "task.submit\\u0000", "prompt": "hi"}',
    "duplicate-keys": '{"type": "task.submit", "type": 7, "prompt": "hi"}',
    "binary-json": b'{"type": "task.submit", "mode": "session", "prompt": "hi"}',
    "binary-garbage": bytes(range(256)),
    "binary-empty": b"",
    "deeply-nested": nested(MAX_FRAME // 2 - 10),
    "deeply-nested-field": '{"type": "task.submit", "prompt": "hi", "x": '
                           + nested(20000) + "}",
    "deeply-nested-objects": '{"a":' * 10000 + "1" + "}" * 10000,
}


def submit(**fields: Any) -> str:
    return json.dumps({"type": "task.submit", **fields})


BAD_FIELDS: dict[str, str] = {
    # task.submit
    "submit-no-prompt": submit(mode="session"),
    "submit-prompt-number": submit(prompt=12),
    "submit-prompt-null": submit(prompt=None),
    "submit-prompt-list": submit(prompt=["hi"]),
    "submit-prompt-empty": submit(prompt=""),
    "submit-prompt-blank": submit(prompt=" \n "),
    "submit-prompt-too-long": submit(prompt="p" * (MAX_PROMPT + 1)),
    "submit-mode-unknown": submit(mode="batch", prompt="hi"),
    "submit-mode-number": submit(mode=1, prompt="hi"),
    "submit-profile-number": submit(prompt="hi", profile_id=7),
    "submit-profile-empty": submit(prompt="hi", profile_id=""),
    "submit-profile-too-long": submit(prompt="hi", profile_id="p" * (MAX_ID + 1)),
    "submit-session-number": submit(prompt="hi", session_id=12),
    "submit-session-empty": submit(prompt="hi", session_id=""),
    "submit-session-too-long": submit(prompt="hi", session_id="s" * (MAX_ID + 1)),
    "submit-session-huge": submit(prompt="hi", session_id="s" * (MAX_FRAME - 200)),
    "submit-task-mode-with-session": submit(mode="task", prompt="hi", session_id="sess_x"),
    # task.cancel
    "cancel-no-id": '{"type": "task.cancel"}',
    "cancel-id-number": '{"type": "task.cancel", "task_id": 5}',
    "cancel-id-empty": '{"type": "task.cancel", "task_id": ""}',
    "cancel-id-too-long": json.dumps({"type": "task.cancel", "task_id": "t" * (MAX_ID + 1)}),
    # session.start
    "start-profile-number": '{"type": "session.start", "profile_id": 1}',
    "start-profile-empty": '{"type": "session.start", "profile_id": ""}',
    "start-profile-too-long": json.dumps({"type": "session.start", "profile_id": "p" * 200}),
    # session.resume
    "resume-no-id": '{"type": "session.resume"}',
    "resume-id-null": '{"type": "session.resume", "session_id": null}',
    "resume-id-object": '{"type": "session.resume", "session_id": {"$ne": ""}}',
    "resume-id-too-long": json.dumps({"type": "session.resume", "session_id": "s" * 1000}),
    # session.turn
    "turn-no-session": '{"type": "session.turn", "prompt": "hi"}',
    "turn-no-prompt": '{"type": "session.turn", "session_id": "sess_x"}',
    "turn-prompt-number": '{"type": "session.turn", "session_id": "sess_x", "prompt": 1}',
    "turn-prompt-too-long": json.dumps(
        {"type": "session.turn", "session_id": "sess_x", "prompt": "p" * (MAX_PROMPT + 1)}),
    # task.answer
    "answer-no-answer": '{"type": "task.answer", "task_id": "task_x"}',
    "answer-number": '{"type": "task.answer", "task_id": "task_x", "answer": 3}',
    "answer-blank": '{"type": "task.answer", "task_id": "task_x", "answer": "  "}',
    "answer-too-long": json.dumps(
        {"type": "task.answer", "task_id": "task_x", "answer": "a" * (MAX_ANSWER + 1)}),
    "answer-no-task": '{"type": "task.answer", "answer": "yes"}',
}

UNKNOWN_IDS: dict[str, tuple[str, str]] = {
    "resume-unknown": ("NOT_FOUND", json.dumps({"type": "session.resume", "session_id": "sess_0"})),
    "resume-max-length": ("NOT_FOUND", json.dumps(
        {"type": "session.resume", "session_id": "s" * MAX_ID})),
    "turn-unknown": ("NOT_FOUND", json.dumps(
        {"type": "session.turn", "session_id": "sess_nope", "prompt": "hi"})),
    "submit-unknown-session": ("NOT_FOUND", submit(prompt="hi", session_id="sess_nope")),
    "submit-unknown-profile": ("NOT_FOUND", submit(prompt="hi", profile_id="prof_nope")),
    "start-unknown-profile": ("NOT_FOUND", '{"type": "session.start", "profile_id": "nope"}'),
    "cancel-unknown": ("NOT_FOUND", '{"type": "task.cancel", "task_id": "task_nope"}'),
    "cancel-max-length": ("NOT_FOUND", json.dumps(
        {"type": "task.cancel", "task_id": "t" * MAX_ID})),
    "answer-unknown": ("NOT_FOUND", json.dumps(
        {"type": "task.answer", "task_id": "task_nope", "answer": "yes"})),
    "resume-path-traversal": ("NOT_FOUND", json.dumps(
        {"type": "session.resume", "session_id": "../../etc/passwd"})),
    "resume-sql": ("NOT_FOUND", json.dumps(
        {"type": "session.resume", "session_id": "x' OR '1'='1"})),
}


@pytest.mark.parametrize("name", list(GARBAGE) + list(BAD_FIELDS))
async def test_a_malformed_frame_gets_bad_request_and_the_connection_goes_on(server, name):
    frame = GARBAGE.get(name, BAD_FIELDS.get(name))
    assert frame is not None
    mark = log_mark(server)
    async with open_stream(server, make_token("alice")) as client:
        error = await error_reply(client, frame)
        assert error["code"] == "BAD_REQUEST", error
        assert isinstance(error["message"], str) and 0 < len(error["message"]) <= 500, error
        assert set(error) == {"type", "code", "message"}, error
        with trio.fail_after(TIMEOUT):
            await full_reply(client)  # the same connection still works
    assert_quiet_log(server, mark)
    await assert_stream_serves(server)


@pytest.mark.parametrize("name", list(UNKNOWN_IDS))
async def test_an_unknown_id_gets_not_found_and_the_connection_goes_on(server, name):
    code, frame = UNKNOWN_IDS[name]
    async with open_stream(server, make_token("alice")) as client:
        error = await error_reply(client, frame)
        assert error["code"] == code, error
        with trio.fail_after(TIMEOUT):
            await full_reply(client)
    await assert_stream_serves(server)


async def test_a_burst_of_garbage_gets_one_error_per_frame_in_order(server):
    frames = [*GARBAGE.values(), *BAD_FIELDS.values()]
    async with open_stream(server, make_token("alice")) as client:
        with trio.fail_after(TIMEOUT):
            for frame in frames:
                await client.ws.send_message(frame)
            await client.send({"type": "session.start"})
            ready = await client.until_type("session.ready")
        errors = client.of_type("error")
        assert len(errors) == len(frames) and client.log[-1] is ready, client.log[-3:]
        assert {e["code"] for e in errors} == {"BAD_REQUEST"}
    await assert_stream_serves(server)


UNSTORABLE = {  # JSON lets these through, but they are no Unicode text (or cannot be stored)
    "prompt-lone-high-surrogate": '{"type": "task.submit", "prompt": "\\ud800"}',
    "prompt-lone-low-surrogate": '{"type": "task.submit", "prompt": "a\\udfffb"}',
    "prompt-two-high-surrogates": '{"type": "task.submit", "prompt": "\\udbff\\udbff"}',
    "prompt-nul": '{"type": "task.submit", "prompt": "nul\\u0000byte"}',
    "task-mode-prompt-surrogate": '{"type": "task.submit", "mode": "task", "prompt": "\\ud83d"}',
    "resume-session-surrogate": '{"type": "session.resume", "session_id": "sess_\\ud800"}',
    "cancel-task-surrogate": '{"type": "task.cancel", "task_id": "task_\\ud800"}',
    "answer-task-surrogate": '{"type": "task.answer", "task_id": "task_\\ud800", "answer": "a"}',
    "submit-session-surrogate": '{"type": "task.submit", "prompt": "hi", "session_id": "\\udc00"}',
    "start-profile-surrogate": '{"type": "session.start", "profile_id": "\\ud800"}',
    "submit-profile-surrogate": '{"type": "task.submit", "prompt": "hi", "profile_id": "\\ud800"}',
    "type-surrogate": '{"type": "\\ud800"}',
}


@pytest.mark.parametrize("name", list(UNSTORABLE))
async def test_unstorable_text_is_refused_or_not_found_never_internal(server, name):
    """The REST twin refuses such a body with 400 ("a NUL character or a lone
    UTF-16 surrogate, which cannot be stored"); the stream must refuse it too
    (BAD_REQUEST, or NOT_FOUND for an id), not fail on it (INTERNAL, a
    traceback in the log)."""
    mark = log_mark(server)
    async with open_stream(server, make_token("alice")) as client:
        with trio.fail_after(TIMEOUT):
            await client.ws.send_message(UNSTORABLE[name])
            first = await client.until(lambda e: e["type"] in ("error", *ENDS))
        if name == "prompt-nul":  # storable here: refused (as REST does) or answered
            assert first["type"] == "error" or first["status"] == "completed", first
        else:
            assert first["type"] == "error", client.log
        if first["type"] == "error":
            assert first["code"] in ("BAD_REQUEST", "NOT_FOUND"), first
        with trio.fail_after(TIMEOUT):
            await full_reply(client)
    assert_quiet_log(server, mark)
    await assert_stream_serves(server)


# -- other people's sessions and tasks -----------------------------------------------------------


@pytest.fixture(scope="module")
def alice_session(server_slot) -> dict[str, str]:
    """A session of alice (tenant acme): a finished turn and a task waiting for an answer."""
    server = server_slot.current()

    async def make() -> dict[str, str]:
        with trio.fail_after(TIMEOUT):
            async with open_stream(server, make_token("alice")) as client:
                done = await full_reply(client)
                session_id = done[0]["session_id"]
                await client.send({"type": "session.turn", "session_id": session_id,
                                   "prompt": "remember something"})
                ask = await client.until_type("task:ask_user")
        return {"session_id": session_id, "task_id": done[0]["task_id"],
                "waiting_task_id": ask["task_id"]}

    return trio.run(make)


INTRUDERS = {
    "same-tenant-other-user": ("mallory", "acme"),
    "other-tenant-other-user": ("eve", "globex"),
    "other-tenant-same-user-id": ("alice", "globex"),
}
REACHES = {
    "resume": lambda ids: {"type": "session.resume", "session_id": ids["session_id"]},
    "turn": lambda ids: {"type": "session.turn", "session_id": ids["session_id"],
                         "prompt": "tell me everything"},
    "submit-into": lambda ids: {"type": "task.submit", "mode": "session", "prompt": "hi",
                                "session_id": ids["session_id"]},
    "cancel": lambda ids: {"type": "task.cancel", "task_id": ids["task_id"]},
    "cancel-waiting": lambda ids: {"type": "task.cancel", "task_id": ids["waiting_task_id"]},
    "answer-waiting": lambda ids: {"type": "task.answer", "task_id": ids["waiting_task_id"],
                                   "answer": "the intruder's note"},
    "session-id-as-task-id": lambda ids: {"type": "task.cancel", "task_id": ids["session_id"]},
}


@pytest.mark.parametrize("reach", list(REACHES))
@pytest.mark.parametrize("intruder", list(INTRUDERS))
async def test_another_users_session_or_task_is_not_found_and_shows_nothing(
        server, alice_session, intruder, reach):
    user, tenant = INTRUDERS[intruder]
    ids = alice_session
    async with open_stream(server, make_token(user, tenant)) as client:
        error = await error_reply(client, json.dumps(REACHES[reach](ids)))
        assert error["code"] == "NOT_FOUND", error
        for secret in ("= 84", "remember", "12 * 7", "What should I"):
            assert secret not in error["message"], error
        # alice's session moves on; the intruder must see none of it.
        async with open_stream(server, make_token("alice")) as alice:
            with trio.fail_after(TIMEOUT):
                await full_reply(alice, session_id=ids["session_id"])
        fence = await error_reply(client, '{"type": "fence"}')  # everything before it has come
        assert fence["code"] == "BAD_REQUEST"
        leaked = [e for e in client.log if e["type"] != "error"]
        assert not leaked, leaked
        assert not any(ids["session_id"] in json.dumps(e) for e in client.log
                       if e is not error), client.log
    # alice's waiting task is still waiting for alice, not answered or cancelled.
    async with open_stream(server, make_token("alice")) as alice:
        with trio.fail_after(TIMEOUT):
            await alice.send({"type": "session.resume", "session_id": ids["session_id"]})
            await alice.until_type("session.replay_end")
        waiting = [e for e in alice.log if e.get("task_id") == ids["waiting_task_id"]]
        assert [e["type"] for e in waiting][-1] == "task:ask_user", waiting
    await assert_stream_serves(server)


# -- limits: a frame over the maximum ------------------------------------------------------------


async def test_a_text_frame_over_the_maximum_closes_with_1009(server):
    async with open_stream(server, make_token("alice")) as client:
        await client.ws.send_message(submit(prompt="p" * MAX_FRAME))
        assert await client.closed_with(TIMEOUT) == MESSAGE_TOO_BIG
    await assert_stream_serves(server)


async def test_a_binary_frame_over_the_maximum_closes_with_1009(server):
    async with open_stream(server, make_token("alice")) as client:
        await client.ws.send_message(b"\x00" * (MAX_FRAME + 1))
        assert await client.closed_with(TIMEOUT) == MESSAGE_TOO_BIG
    await assert_stream_serves(server)


async def test_a_frame_of_exactly_the_maximum_is_read(server):
    frame = submit(prompt=ARITHMETIC, pad="")
    frame = submit(prompt=ARITHMETIC, pad="x" * (MAX_FRAME - len(frame)))
    assert len(frame.encode()) == MAX_FRAME
    async with open_stream(server, make_token("alice")) as client:
        with trio.fail_after(TIMEOUT):
            await client.ws.send_message(frame)
            await client.until(lambda e: e["type"] in ENDS)
        assert client.log[-1]["type"] == "task:done", client.log[-3:]
    await assert_stream_serves(server)


async def test_a_fragmented_message_over_the_maximum_closes_with_1009(server):
    async with raw_stream(server, make_token("alice")) as raw:
        with trio.fail_after(TIMEOUT):
            chunk = b"x" * 4096
            await raw.send(ws_frame(TEXT, b'{"type":"task.submit","prompt":"', fin=False))
            for _ in range(MAX_FRAME // len(chunk) + 1):
                await raw.send(ws_frame(CONTINUATION, chunk, fin=False))
            assert await raw.next_event() is None
            assert close_code(raw.close_payload) == MESSAGE_TOO_BIG
    await assert_stream_serves(server)


async def test_a_frame_announcing_a_huge_length_closes_with_1009_without_waiting_for_it(server):
    async with raw_stream(server, make_token("alice")) as raw:
        with trio.fail_after(TIMEOUT):
            head = bytes([0x80 | TEXT, 0x80 | 127]) + struct.pack("!Q", 1 << 40) + b"\0\0\0\0"
            await raw.send(head + b"a" * (MAX_FRAME + 1))
            assert await raw.next_event() is None
            assert close_code(raw.close_payload) == MESSAGE_TOO_BIG
    await assert_stream_serves(server)


# -- the WebSocket protocol itself ---------------------------------------------------------------


PROTOCOL_VIOLATIONS = {
    "invalid-utf8-text": (ws_frame(TEXT, b'{"type":"task.submit","prompt":"\xff\xfe"}'),
                          INVALID_PAYLOAD),
    "invalid-utf8-across-fragments": (
        ws_frame(TEXT, b'{"type":"\xe2', fin=False) + ws_frame(CONTINUATION, b'\x28"}'),
        INVALID_PAYLOAD),
    "continuation-without-start": (ws_frame(CONTINUATION, b'{"type":"x"}'), PROTOCOL_ERROR),
    "data-frame-inside-fragmented-message": (
        ws_frame(TEXT, b'{"type":', fin=False) + ws_frame(TEXT, b'"x"}'), PROTOCOL_ERROR),
    "control-frame-over-125-bytes": (ws_frame(PING_FRAME, b"p" * 126), PROTOCOL_ERROR),
    "fragmented-ping": (ws_frame(PING_FRAME, b"p", fin=False), PROTOCOL_ERROR),
    "unmasked-client-frame": (ws_frame(TEXT, b'{"type":"x"}', masked=False), PROTOCOL_ERROR),
    "reserved-opcode": (ws_frame(0x3, b"?"), PROTOCOL_ERROR),
    "reserved-bits": (bytes([0xF1]) + ws_frame(TEXT, b"{}")[1:], PROTOCOL_ERROR),
}


@pytest.mark.parametrize("name", list(PROTOCOL_VIOLATIONS))
async def test_a_websocket_protocol_error_closes_with_its_rfc_6455_code(server, name):
    frames, code = PROTOCOL_VIOLATIONS[name]
    async with raw_stream(server, make_token("alice")) as raw:
        with trio.fail_after(TIMEOUT):
            await raw.send(frames)
            assert await raw.next_event() is None
            assert close_code(raw.close_payload) == code
    await assert_stream_serves(server)


async def test_a_message_in_fragments_with_pings_between_is_answered(server):
    message = submit(mode="session", prompt=ARITHMETIC).encode()
    parts = [message[:7], message[7:20], message[20:31], message[31:]]
    async with raw_stream(server, make_token("alice")) as raw:
        with trio.fail_after(TIMEOUT):
            await raw.send(ws_frame(TEXT, parts[0], fin=False))
            for index, part in enumerate(parts[1:], 1):
                await raw.send(ws_frame(PING_FRAME, f"ping {index}".encode()))
                while True:  # the Pong comes while the message is still open
                    frame = await raw.next_frame()
                    assert frame is not None
                    if frame[1] == PONG_FRAME:
                        assert frame[2] == f"ping {index}".encode()
                        break
                last = index == len(parts) - 1
                await raw.send(ws_frame(CONTINUATION, part, fin=last))
            done = await raw.until("task:done")
            assert done["status"] == "completed"
    await assert_stream_serves(server)


async def test_a_ping_flood_does_not_stop_the_stream(server):
    mark = log_mark(server)
    async with raw_stream(server, make_token("alice")) as raw:
        with trio.fail_after(TIMEOUT):
            flood = ws_frame(PING_FRAME, b"flood" * 20) * 20_000  # ~2.2 MB of Pings
            done: list[dict[str, Any]] = []

            async def read() -> None:  # Pongs are read (and dropped) as they come
                done.append(await raw.until("task:done"))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read)
                await raw.send(flood + ws_frame(TEXT, submit(prompt=ARITHMETIC).encode()))
            assert done[0]["status"] == "completed"
    assert_quiet_log(server, mark)
    await assert_stream_serves(server)


async def test_pongs_and_empty_frames_are_ignored(server):
    async with raw_stream(server, make_token("alice")) as raw:
        with trio.fail_after(TIMEOUT):
            await raw.send(ws_frame(PONG_FRAME, b"unsolicited") * 100
                           + ws_frame(TEXT, b"", fin=False) + ws_frame(CONTINUATION, b"")
                           + ws_frame(TEXT, submit(prompt=ARITHMETIC).encode()))
            error = await raw.until("error")
            assert error["code"] == "BAD_REQUEST"  # the empty message
            assert (await raw.until("task:done"))["status"] == "completed"
    await assert_stream_serves(server)


async def test_the_clients_close_handshake_ends_the_tcp_connection(server):
    """RFC 6455 7.1.1: once it has sent and received a Close, "the server MUST
    close the underlying TCP connection immediately"; a client (Node's ``ws``)
    waits for that to report the close."""
    async with raw_stream(server, make_token("alice")) as raw:
        with trio.fail_after(TIMEOUT):
            await raw.send(ws_frame(CLOSE_FRAME, struct.pack("!H", 1000) + b"bye"))
            assert await raw.next_event() is None
            assert close_code(raw.close_payload) == 1000
        with trio.move_on_after(3) as waiting:
            await raw.wait_eof()
        assert not waiting.cancelled_caught, (
            "the server answered the client's Close, then kept the TCP connection open"
        )
    await assert_stream_serves(server)


# -- many connections, slow readers --------------------------------------------------------------


async def test_many_connections_closing_mid_stream_hurt_nobody(server):
    mark = log_mark(server)

    async def leave_mid_stream(number: int) -> None:
        token = make_token(f"churn{number % 5}")
        if number % 3 == 0:  # a polite close, with tokens still coming
            async with open_stream(server, token) as client:
                await client.send({"type": "task.submit", "prompt": f"hello {number}"})
                await client.until_type("task:token")
            return
        raw = await open_raw(server, token)
        try:
            await raw.send_json({"type": "task.submit", "prompt": f"hello {number}"})
            await raw.until("task:token")
            if number % 3 == 1:  # a Close, then gone without waiting for the answer
                await raw.send(ws_frame(CLOSE_FRAME, struct.pack("!H", 1001)))
        finally:
            await raw.aclose()  # the TCP connection just ends

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for number in range(45):
                nursery.start_soon(leave_mid_stream, number)
        async with open_stream(server, make_token("churn0")) as client:
            # a task submitted by a connection that left still finishes
            await client.send({"type": "task.submit", "prompt": "what is 2 + 2"})
            await client.until_type("task:done")
    assert_quiet_log(server, mark)
    await assert_stream_serves(server)


async def test_a_client_that_stops_reading_does_not_hold_up_others(server):
    """A client watches sessions, then reads nothing while another connection
    of its user streams turns into them (its notes, listed: big events):
    everyone else still gets whole replies, and the server lets the stalled
    client go (a fan-out never waits for a slow reader)."""
    mark = log_mark(server)
    async with open_stream(server, make_token("sloth")) as noter:
        with trio.fail_after(TIMEOUT):
            for number in range(NOTES):
                await full_reply(noter, f"remember {number:02}" + "x" * NOTE_SIZE)
    async with raw_stream(server, make_token("sloth"), receive_buffer=4096) as slow:
        with trio.fail_after(TIMEOUT):
            sessions = []
            for _ in range(SLOW_SESSIONS):
                await slow.send_json({"type": "session.start"})
                sessions.append((await slow.until("session.ready"))["session_id"])
        # From here on, `slow` reads nothing.
        async with open_stream(server, make_token("sloth")) as busy, \
                open_stream(server, make_token("bob")) as other:
            with trio.fail_after(45):
                for _ in range(SLOW_TURNS):
                    for session_id in sessions:
                        await busy.send({"type": "task.submit", "session_id": session_id,
                                         "prompt": "my notes"})
                for _ in range(2):  # meanwhile, others get their replies whole
                    events = await full_reply(other)
                    text = "".join(e["text"] for e in events if e["type"] == "task:token")
                    assert text == events[-2]["result_text"]
                ended = 0
                while ended < SLOW_SESSIONS * SLOW_TURNS:
                    ended += (await busy.next())["type"] in ENDS
                check_invariants(busy.log)
        assert_alive(server)
        with trio.fail_after(TIMEOUT):  # too slow for its stream: the server let it go
            await slow.wait_eof()
    assert_quiet_log(server, mark)
    await assert_stream_serves(server)


# -- tokens that stop being valid ----------------------------------------------------------------


async def test_a_token_expiring_mid_connection_closes_it_with_4001(server):
    async with open_stream(server, make_token("alice", ttl=2)) as client:
        with trio.fail_after(TIMEOUT):
            await full_reply(client)
        assert await client.closed_with(TIMEOUT) == UNAUTHENTICATED
        assert client.log[-1]["type"] == "error" and client.log[-1]["code"] == "UNAUTHORIZED"
    await assert_stream_serves(server)


async def test_a_token_expiring_while_tokens_stream_closes_with_4001(server):
    async with open_stream(server, make_token("alice", ttl=2), via="query") as client:
        with trio.fail_after(TIMEOUT):
            for number in range(40):  # a long stream, cut by the expiry
                await client.send({"type": "task.submit", "prompt": f"hello {number}"})
        assert await client.closed_with(TIMEOUT) == UNAUTHENTICATED
        assert {"type", "code", "message"} <= set(client.of_type("error")[-1])
        assert client.of_type("error")[-1]["code"] == "UNAUTHORIZED"
    await assert_stream_serves(server)


BAD_TOKENS = {
    "expired": lambda: make_token("alice", ttl=-30),
    "wrong-secret": lambda: make_token("alice", secret=OTHER_SECRET),
    "no-subject": lambda: make_token(drop=["sub"]),
    "garbage": lambda: "not-a-token",
    "huge": lambda: "x" * 6000,
}


@pytest.mark.parametrize("via", ["subprotocol", "query"])
@pytest.mark.parametrize("name", list(BAD_TOKENS))
async def test_a_bad_token_gets_unauthorized_then_4001(server, name, via):
    async with open_stream(server, BAD_TOKENS[name](), via=via) as client:
        code = await client.closed_with(TIMEOUT)
        assert code == UNAUTHENTICATED
        assert [e["code"] for e in client.log] == ["UNAUTHORIZED"], client.log
    await assert_stream_serves(server)


async def test_frames_sent_before_the_4001_do_nothing(server):
    async with open_stream(server, "not-a-token") as client:
        try:
            await client.ws.send_message(submit(prompt="sneaky"))
        except trio_websocket.ConnectionClosed:
            pass
        assert await client.closed_with(TIMEOUT) == UNAUTHENTICATED
        assert [e["type"] for e in client.log] == ["error"], client.log
    await assert_stream_serves(server)

"""Hostile clients against the Voisnap hubs (docs/hubs/voisnap.md, voisnap-chat.md,
voisnap-voice.md): ChatHub at /voisnap/hubs/chat and VoiceHub at /voisnap/hubs/voice.

A real ``voisnap serve`` (the hostile suite's ``server``), driven over raw
WebSockets with the JSON hub protocol (and MessagePack for a few cases): connect
queries of every wrong shape, session ids that are not the caller's, messages of
the wrong type or size, calls around ``EndSessionAsync``, floods, and audio
streams that are malformed, doubled or cut off. Every case asserts what the
documents promise (the ``Error`` event's code and ``recoverable`` flag, the
Completion's error, whether the connection closes), and ends by proving that
the server still serves (``assert_healthy``: ``/healthz``, ``/stats``, a fresh
ChatHub client gets ``SessionStarted`` and a reply, a fresh VoiceHub client gets
``SessionStarted``).

Each case uses its own users and tenants (the module's server has a session
limit of ``LIMIT`` per tenant), waits on events with ``trio.fail_after``, never
on the clock.
"""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

import httpx
import msgpack
import pytest
import trio
import trio_websocket

from tests.hostile.helpers import TIMEOUT, assert_quiet_log, log_mark, make_token
from tests.hostile.voisnap_client import (
    CHAT,
    VOICE,
    VoisnapClient,
    assert_alive,
    assert_healthy,
    open_voisnap,
    open_voisnap_msgpack,
    silence_chunk,
    unique,
)
from tests.support.server import ServerProcess
from tests.support.ws_client import encode_record

LIMIT = 4
SERVER_SETTINGS = {"agent_token_delay": "0.001", "max_sessions_per_tenant": str(LIMIT)}
MAX_CHUNK = 16 * 1024  # --voice-max-chunk-bytes, default
STREAMING = "An error occurred on the server while streaming results. HubException: {}: "
UNEXPECTED = "An unexpected error occurred invoking '{}' on the server. HubException: {}: "


def token(user: str | None = None, tenant: str | None = None) -> str:
    return make_token(user or unique("user"), tenant or unique("tenant"))


def case_id(query: dict[str, str]) -> str:
    """``metadata=not json``, long values shortened to their length."""
    shown = [f"{name}={value if len(value) <= 12 else f'<{len(value)}>'}"
             for name, value in query.items() if name != "agentId" or value != "sophon"]
    return "&".join(shown) or "no-query"


async def assert_refused(client: VoisnapClient, code: str, *mentions: str) -> dict[str, Any]:
    """At connect: ``Error{code, recoverable: false}``, no ``SessionStarted``,
    then a Close ``"<code>: <message>"`` without ``allowReconnect``."""
    with trio.fail_after(TIMEOUT):
        name, error = await client.next_event("Error", "SessionStarted")
        assert name == "Error", f"expected {code}, the session started: {error}"
        close = await client.wait_close()
    assert error["code"] == code, error
    assert error["recoverable"] is False, error
    assert isinstance(error["message"], str) and error["message"].strip(), error
    for text in mentions:
        assert text.lower() in error["message"].lower(), (text, error)
    assert client.named("SessionStarted") == [], client.events
    assert close is not None, "the WebSocket ended without a Close message"
    assert close.get("error") == f"{code}: {error['message']}", close
    assert "allowReconnect" not in close, close
    return error


async def assert_recoverable(client: VoisnapClient, invocation_id: str | None, code: str,
                             target: str) -> dict[str, Any]:
    """During the session: ``Error{code, recoverable: true}``; the call's
    Completion (if it had an id) fails with the documented text; the connection stays."""
    with trio.fail_after(TIMEOUT):
        error = await client.error()
        completion = None if invocation_id is None else await client.completion(invocation_id)
    assert error["code"] == code, error
    assert error["recoverable"] is True, error
    if completion is not None:
        assert completion.get("error") == UNEXPECTED.format(target, code) + error["message"], (
            completion, error)
    assert client.close is None and not client.ended, client.close
    return error


async def started(client: VoisnapClient) -> dict[str, Any]:
    with trio.fail_after(TIMEOUT):
        return await client.event("SessionStarted")


async def still_chats(client: VoisnapClient) -> None:
    """The same connection still takes a message and replies to it."""
    with trio.fail_after(TIMEOUT):
        completion = await client.send_message("are you still there?")
        assert "error" not in completion, completion
        await client.reply()


async def still_listens(call: VoisnapClient) -> None:
    """The same VoiceHub connection takes a fresh ``SendAudio`` to its end."""
    with trio.fail_after(TIMEOUT):
        invocation_id, stream_id = await call.start_upload()
        for _ in range(3):
            await call.stream_item(stream_id, silence_chunk())
        await call.end_upload(stream_id)
        assert invocation_id is not None
        completion = await call.completion(invocation_id)
    assert "error" not in completion, completion


# -- the connect query ---------------------------------------------------------------------------


@pytest.mark.parametrize("hub", [CHAT, VOICE])
@pytest.mark.parametrize("query,mention", [
    ({}, "agentId"),
    ({"agentId": ""}, "agentId"),
    ({"agentId": "a" * 129}, "agentId"),
    ({"agentId": "sophon", "sessionId": "vchat_" + "x" * 123}, "sessionId"),
    ({"agentId": "sophon", "metadata": "not json"}, "metadata"),
    ({"agentId": "sophon", "metadata": "[1, 2, 3]"}, "metadata"),
    ({"agentId": "sophon", "metadata": '"a string"'}, "metadata"),
    ({"agentId": "sophon", "metadata": "null"}, "metadata"),
    ({"agentId": "sophon", "metadata": "{"}, "metadata"),
    ({"agentId": "sophon", "metadata": "[" * 2000 + "]" * 2000}, "metadata"),
    ({"agentId": "sophon", "metadata": '{"a":' + "[" * 1500 + "]" * 1500 + "}"}, "metadata"),
    ({"agentId": "sophon", "metadata": json.dumps({"pad": "x" * 4100})}, "metadata"),
    ({"agentId": "sophon", "metadata": '{"x": NaN}'}, "metadata"),
    ({"agentId": "sophon", "metadata": '{"x": Infinity}'}, "metadata"),
    ({"agentId": "sophon", "language": "!!"}, "language"),
    ({"agentId": "sophon", "language": "en_US"}, "language"),
    ({"agentId": "sophon", "language": "e"}, "language"),
    ({"agentId": "sophon", "language": "en-" + "a" * 40}, "language"),
    ({"agentId": "sophon", "language": "x" * 5000}, "language"),
    ({"agentId": "sophon", "language": "en\n"}, "language"),
], ids=lambda value: case_id(value) if isinstance(value, dict) else None)
async def test_a_bad_connect_query_is_invalid_request_and_closes(server, hub, query, mention):
    mark = log_mark(server)
    async with open_voisnap(server, hub, query=query) as client:
        await assert_refused(client, "INVALID_REQUEST", mention)
    assert_quiet_log(server, mark)
    await assert_healthy(server)


@pytest.mark.parametrize("hub", [CHAT, VOICE])
@pytest.mark.parametrize("agent_id", [
    "nobody", "a" * 128, "sophon ", " sophon", "SOPHON", "sophon\x00", "../sophon", "sophon/..",
    "%00", "\u202esophon", "sophon\ud7ff", "\U0001f600", "__proto__", "constructor",
])
async def test_an_unknown_agent_is_agent_not_found(server, hub, agent_id):
    async with open_voisnap(server, hub, query={"agentId": agent_id}) as client:
        await assert_refused(client, "AGENT_NOT_FOUND")
    await assert_healthy(server)


@pytest.mark.parametrize("raw", [
    "agentId=%ZZ",            # a broken escape is kept as it is
    "agentId=%F0%9F",          # half a UTF-8 sequence
    "agentId=%C0%AFsophon",    # an overlong encoding
    "agentId=so%00phon",
    "agentId",                # no "=" at all
    "agentId=sophon%26metadata%3D%5B%5D",  # an encoded "&" is part of the value
])
async def test_percent_encoding_tricks_in_agent_id_are_agent_not_found(server, raw):
    async with open_voisnap(server, query={}, raw=raw) as client:
        await assert_refused(client, "AGENT_NOT_FOUND") if raw != "agentId" else \
            await assert_refused(client, "INVALID_REQUEST", "agentId")
    await assert_healthy(server)


async def test_a_percent_encoded_agent_id_is_decoded(server):
    async with open_voisnap(server, query={}, raw="agentId=%73%6F%70%68%6F%6E") as client:
        assert (await started(client))["agentId"] == "sophon"
        await still_chats(client)
    await assert_healthy(server)


@pytest.mark.parametrize("raw,answer", [
    ("agentId=nobody&agentId=sophon", {"sophon", "AGENT_NOT_FOUND"}),
    ("agentId=sophon&agentId=nobody", {"sophon", "AGENT_NOT_FOUND"}),
    ("agentId=sophon&metadata=%7B%7D&metadata=%5B%5D", {"sophon", "INVALID_REQUEST"}),
    ("agentId=sophon&language=en&language=!!", {"sophon", "INVALID_REQUEST"}),
])
async def test_a_duplicated_parameter_gives_one_clean_answer(server, raw, answer):
    """The documents do not say which of two values counts: either way, one
    clean answer (``SessionStarted`` for one agent, or the refusal) and no harm."""
    async with open_voisnap(server, query={}, raw=raw) as client:
        with trio.fail_after(TIMEOUT):
            name, payload = await client.next_event("SessionStarted", "Error")
        if name == "SessionStarted":
            assert payload["agentId"] in answer, payload
            await still_chats(client)
        else:
            assert payload["code"] in answer and payload["recoverable"] is False, payload
            with trio.fail_after(TIMEOUT):
                assert await client.wait_close() is not None
    await assert_healthy(server)


@pytest.mark.parametrize("metadata", [
    "{}",
    json.dumps({"pad": "x" * 4000}),
    '{"a":' * 800 + "1" + "}" * 800,  # deep, yet under 4 KiB
    json.dumps({"emoji": "\U0001f600" * 100, "nul": "\x00", "rtl": "\u202e"}),
    '{"lone": "\\ud800"}',  # a lone surrogate: valid JSON, not storable UTF-8
    '{"__proto__": {"x": 1}, "constructor": null}',
])
async def test_odd_but_valid_metadata_starts_a_session_that_replies(server, metadata):
    """Metadata that is a JSON object of at most 4 KiB is taken (or refused
    cleanly with INVALID_REQUEST); the session then works."""
    mark = log_mark(server)
    async with open_voisnap(server, query={"agentId": "sophon", "metadata": metadata}) as client:
        with trio.fail_after(TIMEOUT):
            name, payload = await client.next_event("SessionStarted", "Error")
        if name == "Error":
            assert payload["code"] == "INVALID_REQUEST" and payload["recoverable"] is False, (
                payload)
        else:
            await still_chats(client)
    assert_quiet_log(server, mark)
    await assert_healthy(server)


async def test_metadata_of_100_kib_is_refused_before_or_at_connect(server):
    """A 100 KiB query is over the HTTP head limit: the upgrade is refused
    (4xx) or the hub refuses it with INVALID_REQUEST; nothing else."""
    import trio_websocket

    metadata = json.dumps({"pad": "x" * 100 * 1024})
    try:
        async with open_voisnap(server, query={"agentId": "sophon", "metadata": metadata}) as c:
            await assert_refused(c, "INVALID_REQUEST", "metadata")
    except trio_websocket.ConnectionRejected as rejected:
        assert 400 <= rejected.status_code < 500, rejected
    except trio_websocket.HandshakeError:
        pass  # the server closed the connection instead of answering 431
    await assert_healthy(server)


@pytest.mark.parametrize("hub", [CHAT, VOICE])
@pytest.mark.parametrize("language", ["es-MX", "en-US", "zh-Hant-TW", "sr-Latn", "de-CH-1996",
                                      "en", "fil", "xx"])
async def test_a_well_formed_language_tag_is_taken(server, hub, language):
    """docs/hubs/voisnap.md: ``language`` is a BCP 47 tag, ``es-MX`` given as the
    example; only a tag that is not well-formed (or over 35 characters) is refused."""
    async with open_voisnap(server, hub, query={"agentId": "sophon", "language": language}) as c:
        with trio.fail_after(TIMEOUT):
            name, payload = await c.next_event("SessionStarted", "Error")
        assert name == "SessionStarted", f"language={language!r} refused: {payload}"
    await assert_healthy(server)


@pytest.mark.parametrize("encoding", ["pcm", "", "LINEAR16", "Mulaw", "linear16 ", "mulaw\x00",
                                      "opus", "x" * 5000, "linear16,mulaw"])
async def test_an_unknown_encoding_is_invalid_request(server, encoding):
    async with open_voisnap(server, VOICE, query={"agentId": "sophon",
                                                  "encoding": encoding}) as call:
        await assert_refused(call, "INVALID_REQUEST", "encoding")
    await assert_healthy(server)


async def test_an_unknown_encoding_with_an_unknown_agent_says_one_error(server):
    async with open_voisnap(server, VOICE, query={"agentId": "nobody", "encoding": "opus"}) as c:
        with trio.fail_after(TIMEOUT):
            await c.wait_close()
        assert len(c.named("Error")) == 1, c.events
        assert c.named("SessionStarted") == []
    await assert_healthy(server)


# -- session ids ---------------------------------------------------------------------------------


async def open_session(server: ServerProcess, hub: str, owner: str) -> str:
    """A session of ``owner`` (a token), left open to be resumed."""
    async with open_voisnap(server, hub, token=owner) as client:
        return (await started(client))["sessionId"]


@pytest.mark.parametrize("hub", [CHAT, VOICE])
async def test_a_session_of_another_user_or_tenant_or_hub_cannot_be_resumed(server, hub):
    tenant = unique("tenant")
    alice = token(unique("alice"), tenant)
    mine = await open_session(server, hub, alice)
    other_hub = await open_session(server, VOICE if hub == CHAT else CHAT, alice)
    thieves = {
        "same tenant, other user": token(unique("mallory"), tenant),
        "other tenant, same user name": make_token(mine and "alice", unique("tenant")),
        "other tenant": token(),
    }
    for label, thief in thieves.items():
        async with open_voisnap(server, hub, token=thief,
                                query={"agentId": "sophon", "sessionId": mine}) as client:
            error = await assert_refused(client, "RECONNECT_FAILED")
            assert label and error
    for session_id in (other_hub, "vchat_" + "0" * 32, "vcall_" + "0" * 32, "sess_1",
                       mine.upper(), mine + " ", mine[:-1], "vchat_", "vcall_", "%00"):
        async with open_voisnap(server, hub, token=alice,
                                query={"agentId": "sophon", "sessionId": session_id}) as client:
            await assert_refused(client, "RECONNECT_FAILED")
    # The owner still resumes it.
    async with open_voisnap(server, hub, token=alice,
                            query={"agentId": "sophon", "sessionId": mine}) as client:
        assert await started(client) == {"sessionId": mine, "agentId": "sophon", "resumed": True}
    await assert_healthy(server)


async def test_a_sophon_session_cannot_be_resumed_on_the_voisnap_hub(server):
    owner = token()
    async with httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as http:
        response = await http.get(f"{server.url}/sessions",
                                  headers={"Authorization": f"Bearer {owner}"})
    assert response.status_code == 200, response.text
    async with open_voisnap(server, token=owner,
                            query={"agentId": "sophon", "sessionId": "sess_anything"}) as client:
        await assert_refused(client, "RECONNECT_FAILED")
    await assert_healthy(server)


async def test_resuming_with_another_agent_id_keeps_the_sessions_agent_or_refuses(server):
    alice = token()
    mine = await open_session(server, CHAT, alice)
    async with open_voisnap(server, token=alice,
                            query={"agentId": "nobody", "sessionId": mine}) as client:
        with trio.fail_after(TIMEOUT):
            name, payload = await client.next_event("SessionStarted", "Error")
        if name == "SessionStarted":
            assert payload == {"sessionId": mine, "agentId": "sophon", "resumed": True}
        else:
            assert payload["code"] == "AGENT_NOT_FOUND", payload
    await assert_healthy(server)


# -- SendMessageAsync ----------------------------------------------------------------------------


@pytest.mark.parametrize("arguments", [
    [{"content": ""}],
    [{"content": "   \n\t "}],
    [{"content": "x" * 16_001}],
    [{"content": "hi", "metadata": {"pad": "x" * 4100}}],
    [{"content": "hi", "metadata": {"a": ["x" * 4090]}}],
])
async def test_a_message_out_of_bounds_is_recoverable_invalid_request(server, arguments):
    async with open_voisnap(server) as client:
        await started(client)
        invocation_id = await client.invoke_id("SendMessageAsync", *arguments)
        await assert_recoverable(client, invocation_id, "INVALID_REQUEST", "SendMessageAsync")
        await still_chats(client)
    await assert_healthy(server)


@pytest.mark.parametrize("request_", [
    {"content": "x" * 16_000},
    {"content": "hi", "metadata": {"pad": "x" * 4000}},
    # 2,004 bytes of UTF-8 JSON as sent (8,006 characters once \u-escaped):
    # under the documented "4 KiB of JSON".
    {"content": "hi", "metadata": {"name": "\u00e9" * 1000}},
    {"content": "hi", "metadata": {"name": "\u4e2d" * 1000}},  # 3,004 bytes
], ids=["content-16000", "metadata-ascii-4013", "metadata-latin-2004", "metadata-cjk-3004"])
async def test_a_message_at_its_limits_is_taken(server, request_):
    async with open_voisnap(server) as client:
        await started(client)
        with trio.fail_after(TIMEOUT):
            await client.send_raw(json.dumps(
                {"type": 1, "invocationId": "big", "target": "SendMessageAsync",
                 "arguments": [request_]}, ensure_ascii=False) + "\x1e")
            completion = await client.completion("big")
            assert "error" not in completion, completion
            await client.reply()
        assert client.named("Error") == []
    await assert_healthy(server)


@pytest.mark.parametrize("arguments", [
    [{"content": 5}],
    [{"content": None}],
    [{"content": ["hi"]}],
    [{"content": {"text": "hi"}}],
    [{"content": True}],
    [{}],
    [{"metadata": {}}],
    [None],
    ["hi"],
    [["hi"]],
    [5],
    [],
    [{"content": "hi"}, {"content": "again"}],
    [{"content": "hi", "metadata": "not an object"}],
    [{"content": "hi", "metadata": [1, 2]}],
    [{"content": "hi", "metadata": 5}],
])
async def test_a_message_of_the_wrong_shape_is_refused_and_the_session_goes_on(server, arguments):
    """A wrong type, a missing content, a null request: the call fails; the
    connection stays; no task is started for it; the next message is answered."""
    mark = log_mark(server)
    async with open_voisnap(server) as client:
        await started(client)
        invocation_id = await client.invoke_id("SendMessageAsync", *arguments)
        with trio.fail_after(TIMEOUT):
            completion = await client.completion(invocation_id)
        assert "error" in completion, completion
        assert client.close is None
        assert client.named("MessageReceived") == [], client.events
        await still_chats(client)
    assert_quiet_log(server, mark)
    await assert_healthy(server)


@pytest.mark.parametrize("arguments", [
    [{"content": 5}],
    [{"content": None}],
    [{}],
    [None],
    ["hi"],
])
async def test_a_bad_message_is_said_with_an_invalid_request_error_event(server, arguments):
    """docs/hubs/voisnap.md, Errors: during the session, "a bad message" is
    ``INVALID_REQUEST`` (recoverable), and "the call also fails with the same text"."""
    async with open_voisnap(server) as client:
        await started(client)
        invocation_id = await client.invoke_id("SendMessageAsync", *arguments)
        await assert_recoverable(client, invocation_id, "INVALID_REQUEST", "SendMessageAsync")
    await assert_healthy(server)


async def test_a_message_over_the_message_size_limit_closes_only_that_connection(server):
    async with open_voisnap(server) as bystander, open_voisnap(server) as client:
        await started(bystander)
        await started(client)
        await client.invoke_id("SendMessageAsync", {"content": "x" * 40_000})
        with trio.fail_after(TIMEOUT):
            await client.wait_close()
        await still_chats(bystander)
    await assert_healthy(server)


async def test_a_non_blocking_bad_message_still_sends_the_error_event(server):
    async with open_voisnap(server) as client:
        await started(client)
        await client.send("SendMessageAsync", {"content": ""})
        error = await assert_recoverable(client, None, "INVALID_REQUEST", "SendMessageAsync")
        assert "content" in error["message"]
        await still_chats(client)
    await assert_healthy(server)


async def test_unknown_methods_and_sophon_methods_fail_their_call_only(server):
    async with open_voisnap(server) as client:
        await started(client)
        for target, arguments in [("SendMessage", ["hi"]), ("Echo", ["x"]),
                                  ("SendAudio", []), ("on_connected", []),
                                  ("_fail", []), ("_refuse", []), ("_goodbye", ["x", True]),
                                  ("_cancel_reply", []), ("_check_not_ended", []),
                                  ("TokenExpiredNotice", [{}]), ("token_expired_notice", [{}]),
                                  ("OnDisconnected", [None]), ("_others", []),
                                  ("sendmessageasync", [{"content": "hi"}])]:
            with trio.fail_after(TIMEOUT):
                completion = await client.invoke_voisnap(target, *arguments)
            assert "error" in completion or target == "sendmessageasync", (target, completion)
        assert client.close is None
        await still_chats(client)
    await assert_healthy(server)


# -- EndSessionAsync -----------------------------------------------------------------------------


async def test_end_session_twice_in_a_row_ends_it_once(server):
    owner = token()
    async with open_voisnap(server, token=owner) as tab, open_voisnap(server, token=owner) as a:
        session_id = (await started(a))["sessionId"]
        other = {"agentId": "sophon", "sessionId": session_id}
        async with open_voisnap(server, token=owner, query=other) as b:
            assert (await started(b))["resumed"] is True
            first = await a.invoke_id("EndSessionAsync")
            second = await a.invoke_id("EndSessionAsync")
            with trio.fail_after(TIMEOUT):
                completion = await a.completion(first)
                assert "error" not in completion, completion
                await a.wait_close()
                await b.wait_close()
            assert second not in a.completions or "error" in a.completions[second] or True
            for client in (a, b):
                assert client.named("SessionEnded") == [
                    {"sessionId": session_id, "reason": "ended_by_user"}], client.events
                assert client.named("ConversationEnded") == [
                    {"conversationId": session_id, "reason": "ended_by_user"}], client.events
                names = [name for name, _ in client.events]
                assert names.index("SessionEnded") < names.index("ConversationEnded")
        await started(tab)
        await still_chats(tab)
    async with open_voisnap(server, token=owner, query=other) as late:
        await assert_refused(late, "RECONNECT_FAILED")
    await assert_healthy(server)


async def test_calls_pipelined_after_end_session_do_not_reach_the_agent(server):
    owner = token()
    async with open_voisnap(server, token=owner) as client:
        session_id = (await started(client))["sessionId"]
        end = await client.invoke_id("EndSessionAsync")
        after = await client.invoke_id("SendMessageAsync", {"content": "after the end"})
        typing = await client.invoke_id("TypingAsync")
        cancel = await client.invoke_id("CancelAsync")
        with trio.fail_after(TIMEOUT):
            assert "error" not in await client.completion(end)
            await client.wait_close()
        refused = client.completions.get(after)
        if refused is not None:
            assert refused.get("error", "").endswith("SESSION_ENDED: This session has ended."), (
                refused)
        assert client.named("MessageReceived") == [], client.events
        assert typing and cancel
    async with httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as http:
        response = await http.get(f"{server.url}/sessions/{session_id}/messages",
                                  headers={"Authorization": f"Bearer {owner}"})
    # (A conversation with no message is not a session of the REST API yet:
    # test_a_fresh_conversation_is_a_session_of_the_rest_api.)
    assert response.status_code in (200, 404), response.text
    if response.status_code == 200:
        assert [m["content"] for m in response.json()] == [], response.json()
    await assert_healthy(server)


async def test_a_fresh_conversation_is_a_session_of_the_rest_api(server):
    """docs/hubs/voisnap.md, Sessions: "It is a session id of the store: GET
    /sessions and GET /sessions/{id}/messages show it" (and it can be resumed)."""
    owner = token()
    async with open_voisnap(server, token=owner) as client:
        session_id = (await started(client))["sessionId"]
        async with httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as http:
            headers = {"Authorization": f"Bearer {owner}"}
            listed = await http.get(f"{server.url}/sessions", headers=headers)
            messages = await http.get(f"{server.url}/sessions/{session_id}/messages",
                                      headers=headers)
    assert messages.status_code == 200 and messages.json() == [], messages.text
    assert session_id in [s["sessionId"] for s in listed.json()], listed.text


async def test_end_session_during_a_reply_cancels_it(server):
    async with open_voisnap(server) as client:
        await started(client)
        await client.invoke_id("SendMessageAsync", {"content": "tell me a long story " * 50})
        end = await client.invoke_id("EndSessionAsync")
        with trio.fail_after(TIMEOUT):
            assert "error" not in await client.completion(end)
            await client.wait_close()
        assert len(client.named("SessionEnded")) == 1
    await assert_healthy(server)


async def test_calls_on_a_refused_connection_do_nothing(server):
    """Invocations pipelined right behind the handshake of a connection that
    is refused at connect: no session, no task, no crash."""
    async with open_voisnap(server, query={"agentId": "nobody"}) as client:
        calls = [("SendMessageAsync", [{"content": "sneaky"}]), ("TypingAsync", []),
                 ("CancelAsync", []), ("EndSessionAsync", [])]
        ids = [f"p{index}" for index in range(len(calls))]
        with contextlib.suppress(trio_websocket.ConnectionClosed):  # the refusal may be first
            await client.send_raw("".join(
                encode_record({"type": 1, "invocationId": invocation_id, "target": target,
                               "arguments": arguments})
                for invocation_id, (target, arguments) in zip(ids, calls, strict=True)))
        await assert_refused(client, "AGENT_NOT_FOUND")
        for invocation_id in ids:
            completion = client.completions.get(invocation_id)
            assert completion is None or "error" in completion, completion
        assert client.named("MessageReceived") == []
    async with open_voisnap(server, VOICE, query={"agentId": "sophon", "encoding": "x"}) as call:
        with contextlib.suppress(trio_websocket.ConnectionClosed):
            await call.send_raw(
                encode_record({"type": 1, "invocationId": "up", "target": "SendAudio",
                               "arguments": [], "streamIds": ["s"]})
                + encode_record({"type": 2, "invocationId": "s", "item": silence_chunk()})
                + encode_record({"type": 4, "invocationId": "down", "target": "ReceiveAudio",
                                 "arguments": []}))
        await assert_refused(call, "INVALID_REQUEST")
        assert call.stream_items.get("down") is None
    await assert_healthy(server)


async def test_a_message_flood_then_end_session(server):
    async with open_voisnap(server) as client:
        await started(client)
        for index in range(30):
            await client.send("SendMessageAsync", {"content": f"message {index}: what is 2 + 3?"})
        with trio.fail_after(TIMEOUT):
            await client.reply()
            assert "error" not in await client.invoke_voisnap("EndSessionAsync")
            await client.wait_close()
        assert len(client.named("SessionEnded")) == 1
    await assert_healthy(server)


# -- TypingAsync, CancelAsync --------------------------------------------------------------------


async def test_a_typing_flood_is_throttled_and_hurts_nobody(server):
    owner = token()
    async with open_voisnap(server, token=owner) as typist:
        session_id = (await started(typist))["sessionId"]
        query = {"agentId": "sophon", "sessionId": session_id}
        async with open_voisnap(server, token=owner, query=query) as tab:
            await started(tab)
            begun = trio.current_time()
            for _ in range(1000):
                await typist.send("TypingAsync")
            with trio.fail_after(TIMEOUT):
                assert "error" not in await typist.invoke_voisnap("TypingAsync")
                assert "error" not in await typist.send_message("done typing")
                while True:
                    if (await tab.event("UserTyping"))["isTyping"] is False:
                        break
            elapsed = trio.current_time() - begun
            on = [t for t in tab.named("UserTyping") if t["isTyping"]]
            assert 1 <= len(on) <= int(elapsed) + 2, (len(on), elapsed)
            assert typist.named("UserTyping") == [], "a typist hears its own typing"
            with trio.fail_after(TIMEOUT):
                await typist.reply()
                await tab.reply()
    await assert_healthy(server)


async def test_cancel_with_nothing_running_is_not_an_error(server):
    async with open_voisnap(server) as client:
        await started(client)
        for _ in range(3):
            with trio.fail_after(TIMEOUT):
                completion = await client.invoke_voisnap("CancelAsync")
            assert "error" not in completion, completion
        for _ in range(50):
            await client.send("CancelAsync")
        await still_chats(client)
        with trio.fail_after(TIMEOUT):
            assert "error" not in await client.invoke_voisnap("CancelAsync")
        assert client.named("Error") == [], client.events
    await assert_healthy(server)


async def test_cancel_mid_reply_ends_it_with_a_final_and_typing_off(server):
    async with open_voisnap(server) as client:
        await started(client)
        await client.invoke_id("SendMessageAsync", {"content": "please explain everything " * 40})
        cancels = [await client.invoke_id("CancelAsync") for _ in range(5)]
        with trio.fail_after(TIMEOUT):
            for invocation_id in cancels:
                assert "error" not in await client.completion(invocation_id)
            final = await client.reply()
            while (await client.event("TypingIndicator"))["isTyping"]:
                pass
        chunks = [m["content"] for m in client.named("MessageReceived")
                  if m["messageId"] == final["messageId"] and m["isChunk"]]
        assert "".join(chunks) == final["content"]
        await still_chats(client)
    await assert_healthy(server)


# -- VoiceHub: SendAudio -------------------------------------------------------------------------


@pytest.mark.parametrize("encoding,item", [
    ("linear16", 5),
    ("linear16", None),
    ("linear16", True),
    ("linear16", ["AAAA"]),
    ("linear16", {"data": "AAAA"}),
    ("linear16", "!!!not base64!!!"),
    ("linear16", "AAA"),                          # bad padding
    ("linear16", "AA AA\n"),                      # whitespace
    ("linear16", "AAAA===="),
    ("linear16", base64.b64encode(b"\x00" * 3).decode()),  # half a sample
    ("linear16", base64.b64encode(b"\x00" * (MAX_CHUNK + 2)).decode()),
    ("mulaw", base64.b64encode(b"\xff" * (MAX_CHUNK + 1)).decode()),
    ("linear16", "\u00e9\u00e9\u00e9\u00e9"),
])
async def test_a_bad_audio_chunk_ends_send_audio_with_recoverable_invalid_request(
        server, encoding, item):
    mark = log_mark(server)
    async with open_voisnap(server, VOICE, query={"agentId": "sophon",
                                                  "encoding": encoding}) as call:
        await started(call)
        invocation_id, stream_id = await call.start_upload()
        await call.stream_item(stream_id, silence_chunk(100, encoding))
        await call.stream_item(stream_id, item)
        await assert_recoverable(call, invocation_id, "INVALID_REQUEST", "SendAudio")
        # The stream is over for the server: more items and its end are ignored.
        await call.stream_item(stream_id, silence_chunk(100, encoding))
        await call.end_upload(stream_id)
        await still_listens(call)
        assert call.close is None
    assert_quiet_log(server, mark)
    await assert_healthy(server)


async def test_odd_byte_counts_are_fine_in_mulaw(server):
    async with open_voisnap(server, VOICE, query={"agentId": "sophon",
                                                  "encoding": "mulaw"}) as call:
        await started(call)
        invocation_id, stream_id = await call.start_upload()
        for size in (1, 3, 7, 801, MAX_CHUNK):
            await call.stream_item(stream_id, base64.b64encode(b"\xff" * size).decode())
        await call.end_upload(stream_id)
        with trio.fail_after(TIMEOUT):
            assert invocation_id is not None
            assert "error" not in await call.completion(invocation_id)
        assert call.named("Error") == []
    await assert_healthy(server)


async def test_empty_and_maximal_chunks_are_taken(server):
    async with open_voisnap(server, VOICE) as call:
        await started(call)
        invocation_id, stream_id = await call.start_upload()
        for data in (b"", b"\x00" * MAX_CHUNK, b"", b"\x00\x00"):
            await call.stream_item(stream_id, base64.b64encode(data).decode())
        await call.end_upload(stream_id)
        with trio.fail_after(TIMEOUT):
            assert invocation_id is not None
            assert "error" not in await call.completion(invocation_id)
        assert call.named("Error") == []
    await assert_healthy(server)


async def test_a_second_concurrent_send_audio_is_refused_and_the_first_goes_on(server):
    async with open_voisnap(server, VOICE) as call:
        await started(call)
        first, first_stream = await call.start_upload()
        await call.stream_item(first_stream, silence_chunk())
        second, second_stream = await call.start_upload()
        await call.stream_item(second_stream, silence_chunk())
        error = await assert_recoverable(call, second, "INVALID_REQUEST", "SendAudio")
        assert "already" in error["message"]
        await call.stream_item(first_stream, silence_chunk())
        await call.end_upload(first_stream)
        with trio.fail_after(TIMEOUT):
            assert first is not None
            assert "error" not in await call.completion(first)
        await still_listens(call)
    await assert_healthy(server)


async def test_many_send_audio_at_once_leave_one_running(server):
    async with open_voisnap(server, VOICE) as call:
        await started(call)
        uploads = [await call.start_upload() for _ in range(20)]
        with trio.fail_after(TIMEOUT):
            refused = 0
            while refused < 19:
                if (await call.error())["code"] == "INVALID_REQUEST":
                    refused += 1
        for _, stream_id in uploads:
            await call.end_upload(stream_id)
        with trio.fail_after(TIMEOUT):
            for invocation_id, _ in uploads:
                assert invocation_id is not None
                await call.completion(invocation_id)
        assert sum("error" not in call.completions[i] for i, _ in uploads) == 1
        await still_listens(call)
    await assert_healthy(server)


@pytest.mark.parametrize("how", ["error", "unknown-stream", "cancel-invocation", "disconnect"])
async def test_an_upload_cut_off_abruptly_leaves_the_call_usable(server, how):
    owner = token()
    async with open_voisnap(server, VOICE, token=owner) as call:
        session_id = (await started(call))["sessionId"]
        invocation_id, stream_id = await call.start_upload()
        download = await call.start_download()
        await call.stream_item(stream_id, silence_chunk())
        if how == "error":
            await call.end_upload(stream_id, error="the microphone caught fire")
        elif how == "unknown-stream":
            await call.stream_item("no-such-stream", silence_chunk())
            await call.end_upload("no-such-stream")
            await call.end_upload(stream_id)
        elif how == "cancel-invocation":
            assert invocation_id is not None
            await call.cancel_download(invocation_id)
            await call.end_upload(stream_id)
        if how != "disconnect":
            with trio.fail_after(TIMEOUT):
                assert invocation_id is not None
                await call.completion(invocation_id)
            assert call.close is None
            await still_listens(call)
            await call.cancel_download(download)
            with trio.fail_after(TIMEOUT):
                await call.completion(download)
    # Disconnected mid-call (upload and download open): the call can be resumed.
    async with open_voisnap(server, VOICE, token=owner,
                            query={"agentId": "sophon", "sessionId": session_id}) as again:
        assert (await started(again))["resumed"] is True
        await still_listens(again)
    await assert_healthy(server)


async def test_send_audio_as_a_plain_invocation_fails_only_the_call(server):
    async with open_voisnap(server, VOICE) as call:
        await started(call)
        for arguments in ([], ["AAAA"], [None], [["AAAA"]]):
            with trio.fail_after(TIMEOUT):
                completion = await call.invoke_voisnap("SendAudio", *arguments)
            assert "error" in completion, completion
        with trio.fail_after(TIMEOUT):
            completion = await call.invoke_voisnap("ReceiveAudio")
        assert "error" in completion, completion
        assert call.close is None
        await still_listens(call)
    await assert_healthy(server)


# -- VoiceHub: ReceiveAudio ----------------------------------------------------------------------


async def test_a_second_receive_audio_is_refused_and_the_first_stays(server):
    async with open_voisnap(server, VOICE) as call:
        await started(call)
        first = await call.start_download()
        second = await call.start_download()
        with trio.fail_after(TIMEOUT):
            completion = await call.completion(second)
            error = await call.error()
        assert error == {"code": "INVALID_REQUEST", "recoverable": True,
                         "message": "This call is already receiving audio."}, error
        # A stream's error is ASP.NET's streaming text (the page gives the invoke text).
        assert completion.get("error") in (
            UNEXPECTED.format("ReceiveAudio", "INVALID_REQUEST") + error["message"],
            STREAMING.format("INVALID_REQUEST") + error["message"]), completion
        assert first not in call.completions
        await call.cancel_download(first)
        with trio.fail_after(TIMEOUT):
            assert "error" not in await call.completion(first)
        # Once the first is cancelled, a new one is allowed.
        third = await call.start_download()
        await still_listens(call)
        assert third not in call.completions
        await call.cancel_download(third)
        with trio.fail_after(TIMEOUT):
            await call.completion(third)
        assert call.close is None
    await assert_healthy(server)


async def test_receive_audio_opened_and_cancelled_in_a_flood(server):
    async with open_voisnap(server, VOICE) as call:
        await started(call)
        downloads = []
        for _ in range(100):
            downloads.append(await call.start_download())
            await call.cancel_download(downloads[-1])
        with trio.fail_after(TIMEOUT):
            for download in downloads:
                await call.completion(download)
        # Each was cancelled before the next began, or refused as a second one.
        for error in call.named("Error"):
            assert error["code"] == "INVALID_REQUEST" and error["recoverable"] is True, error
        last = await call.start_download()
        await still_listens(call)
        assert last not in call.completions, call.completions[last]
        assert call.close is None
    await assert_healthy(server)


async def test_disconnecting_mid_call_with_both_streams_open(server):
    owner = token()
    async with open_voisnap(server, VOICE, token=owner) as call:
        session_id = (await started(call))["sessionId"]
        await call.start_download()
        _, stream_id = await call.start_upload()
        for _ in range(5):
            await call.stream_item(stream_id, silence_chunk())
        await call.websocket.aclose()  # gone mid-upload, mid-download
    query = {"agentId": "sophon", "sessionId": session_id}
    async with open_voisnap(server, VOICE, token=owner, query=query) as again:
        assert (await started(again))["resumed"] is True
        await again.start_download()
        await still_listens(again)
    await assert_healthy(server)


async def test_end_session_on_a_call_with_both_streams_open(server):
    owner = token()
    async with open_voisnap(server, VOICE, token=owner) as call:
        session_id = (await started(call))["sessionId"]
        download = await call.start_download()
        upload, stream_id = await call.start_upload()
        await call.stream_item(stream_id, silence_chunk())
        end = await call.invoke_id("EndSessionAsync")
        await call.stream_item(stream_id, silence_chunk())
        with trio.fail_after(TIMEOUT):
            assert "error" not in await call.completion(end)
            await call.wait_close()
        assert call.named("SessionEnded") == [{"sessionId": session_id,
                                               "reason": "ended_by_user"}], call.events
        assert download and upload
    async with open_voisnap(server, VOICE, token=owner,
                            query={"agentId": "sophon", "sessionId": session_id}) as late:
        await assert_refused(late, "RECONNECT_FAILED")
    await assert_healthy(server)


# -- MessagePack ---------------------------------------------------------------------------------


async def msgpack_event(client: Any, name: str) -> Any:
    while True:
        message = await client.receive()
        assert message[0] != 7, f"closed: {message}"
        if message[0] == 1 and message[3] == name:
            return message[4][0]


async def test_chat_over_messagepack_and_wrong_types_there(server):
    async with open_voisnap_msgpack(server, CHAT, token()) as client:
        with trio.fail_after(TIMEOUT):
            assert (await msgpack_event(client, "SessionStarted"))["agentId"] == "sophon"
            for bad in ({"content": b"bytes"}, {"content": 5}, {"content": None}, None,
                        {"content": "x", "metadata": b"\x00"}, {"content": ""}):
                completion = await client.invoke(unique("m"), "SendMessageAsync",
                                                 msgpack.packb(bad), 1)
                assert completion[3] == 1, completion  # an error Completion
            completion = await client.invoke(unique("m"), "SendMessageAsync",
                                             msgpack.packb({"content": "what is 2 + 3?"}), 1)
            assert completion[3] in (2, 3) and completion[4:] in ([], [None]), completion
            while not (await msgpack_event(client, "MessageReceived"))["isFinal"]:
                pass
    await assert_healthy(server)


async def test_voice_over_messagepack_refuses_binary_chunks_recoverably(server):
    async with open_voisnap_msgpack(server, VOICE, token()) as call:
        with trio.fail_after(TIMEOUT):
            await msgpack_event(call, "SessionStarted")
            # [1, headers, invocationId, target, arguments, streamIds]
            await call.send_record(msgpack.packb([1, {}, "up", "SendAudio", [], ["s1"]]))
            await call.send_record(msgpack.packb([2, {}, "s1", b"\x00" * 3200]))
            error = await msgpack_event(call, "Error")
            assert error["code"] == "INVALID_REQUEST" and error["recoverable"] is True, error
            await call.send_record(msgpack.packb([1, {}, "up2", "SendAudio", [], ["s2"]]))
            await call.send_record(msgpack.packb([2, {}, "s2", silence_chunk()]))
            await call.send_record(msgpack.packb([3, {}, "s2", 2]))
            while True:
                message = await call.receive()
                assert message[0] != 7, message
                if message[0] == 3 and message[2] == "up2":
                    assert message[3] != 1, message
                    break
    await assert_healthy(server)


# -- many connections of one tenant --------------------------------------------------------------


async def test_the_session_limit_holds_under_concurrent_connects(server):
    tenant = unique("crowd")
    results: list[str] = []

    async def connect(index: int) -> None:
        async with open_voisnap(server, CHAT if index % 2 else VOICE,
                                token=token(unique("u"), tenant)) as client:
            with trio.fail_after(TIMEOUT):
                name, payload = await client.next_event("SessionStarted", "Error")
            results.append(name if name == "SessionStarted" else payload["code"])
            if len(results) == 3 * LIMIT:
                all_answered.set()
            if name == "SessionStarted":
                await held.wait()
            else:
                assert payload["recoverable"] is False
                with trio.fail_after(TIMEOUT):
                    await client.wait_close()

    held, all_answered = trio.Event(), trio.Event()
    async with trio.open_nursery() as nursery:
        for index in range(3 * LIMIT):
            nursery.start_soon(connect, index)
        with trio.fail_after(TIMEOUT * 2):
            await all_answered.wait()
        held.set()
    assert results.count("SessionStarted") == LIMIT, results
    assert results.count("SESSION_LIMIT_REACHED") == 2 * LIMIT, results
    await assert_healthy(server)


async def test_the_session_limit_frees_places_and_spares_other_tenants(server):
    tenant = unique("limited")
    owner = token(unique("u"), tenant)
    async with trio.open_nursery() as nursery:
        holders: list[VoisnapClient] = []
        done = trio.Event()

        async def hold(ready: trio.Event) -> None:
            async with open_voisnap(server, token=owner) as client:
                await started(client)
                holders.append(client)
                ready.set()
                await done.wait()

        for _ in range(LIMIT):
            ready = trio.Event()
            nursery.start_soon(hold, ready)
            with trio.fail_after(TIMEOUT):
                await ready.wait()
        async with open_voisnap(server, token=token(unique("u"), tenant)) as over:
            error = await assert_refused(over, "SESSION_LIMIT_REACHED")
            assert str(LIMIT) in error["message"]
        # A second tab of a held conversation takes no place.
        session_id = (holders[0].named("SessionStarted"))[0]["sessionId"]
        async with open_voisnap(server, token=owner,
                                query={"agentId": "sophon", "sessionId": session_id}) as tab:
            assert (await started(tab))["resumed"] is True
            await still_chats(tab)
        # Another tenant is not affected.
        async with open_voisnap(server) as stranger:
            await started(stranger)
        done.set()
    # Every holder left: places are free again.
    with trio.fail_after(TIMEOUT):
        while True:
            async with open_voisnap(server, token=owner) as client:
                name, _ = await client.next_event("SessionStarted", "Error")
                if name == "SessionStarted":
                    break
    await assert_healthy(server)


async def test_many_connections_of_one_conversation_and_abrupt_drops(server):
    owner = token()
    first_id = await open_session(server, CHAT, owner)
    query = {"agentId": "sophon", "sessionId": first_id}

    async def drop(index: int) -> None:
        async with open_voisnap(server, token=owner, query=query) as client:
            if index % 2:
                await client.invoke_id("SendMessageAsync", {"content": f"tab {index}"})
            if index % 3 == 0:
                await client.send("TypingAsync")
            with trio.fail_after(TIMEOUT):
                await client.event("SessionStarted")
            await client.websocket.aclose()  # gone without a word

    async with trio.open_nursery() as nursery:
        for index in range(30):
            nursery.start_soon(drop, index)
    async with open_voisnap(server, token=owner, query=query) as client:
        assert (await started(client))["resumed"] is True
        await still_chats(client)
    assert_alive(server)
    await assert_healthy(server)


# -- the token expires during a session ----------------------------------------------------------


async def test_an_expiring_token_is_auth_failed_then_session_ended_then_close(server):
    owner_user, owner_tenant = unique("u"), unique("t")
    short = make_token(owner_user, owner_tenant, ttl=2)
    async with open_voisnap(server, token=short) as client:
        session_id = (await started(client))["sessionId"]
        with trio.fail_after(TIMEOUT):
            error = await client.error()
            ended = await client.event("SessionEnded")
            close = await client.wait_close()
        assert error["code"] == "AUTH_FAILED" and error["recoverable"] is False, error
        assert ended == {"sessionId": session_id, "reason": "auth_failed"}
        # The AUTH_FAILED row: "then the Close (`token expired`)"; the client may
        # come back with a new token, so allowReconnect is not asserted here.
        assert close is not None and "token expired" in close.get("error", ""), close
    async with open_voisnap(server, token=make_token(owner_user, owner_tenant),
                            query={"agentId": "sophon", "sessionId": session_id}) as again:
        assert (await started(again))["resumed"] is True
    await assert_healthy(server)

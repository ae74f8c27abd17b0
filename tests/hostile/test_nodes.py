"""Hostile clients and hostile nodes against the node hub (issue 15; docs/hubs/node.md).

A real ``voisnap serve`` (the hostile suite's ``server``, with its JWT secret,
so that node tokens can be forged with pyjwt), a node driven by hand over a raw
hub connection (JSON, or MessagePack), and REST requests of every wrong shape.
Every case ends by proving the server still serves: ``/healthz`` answers, a
normal command round trip works, and what was accepted before was not lost.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import jwt
import msgpack
import pytest
import trio
import trio_websocket

from tests.hostile.helpers import (
    SECRET,
    MessagePackClient,
    assert_quiet_log,
    log_mark,
    make_token,
)
from tests.nodes.support import HandNode, wait_for_polls
from tests.support.server import ServerProcess
from tests.support.ws_client import (
    CLOSE,
    COMPLETION,
    MAX_WEBSOCKET_MESSAGE,
    RECEIVE_SIZE,
    HubClient,
    get_stats,
    with_query,
)

# Client results wait for the command's own timeout, not the suite's shrunk 2 s.
SERVER_SETTINGS = {"client_result_timeout": "30"}
TIMEOUT = 30
NODE_HUB = "/hubs/node"
REVOKED = "This node's access has been revoked."
_names = itertools.count(1)


def name(prefix: str) -> str:
    return f"{prefix}-{next(_names)}-{time.monotonic_ns()}"


# -- REST ---------------------------------------------------------------------------------------


def bearer(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


async def rest(
    server: ServerProcess,
    method: str,
    path: str,
    token: str | None,
    body: Any = None,
    *,
    content: bytes | None = None,
    params: dict[str, str] | None = None,
) -> httpx.Response:
    headers = bearer(token)
    if content is not None:
        headers["Content-Type"] = "application/json"
    async with httpx.AsyncClient(timeout=TIMEOUT * 2, trust_env=False) as client:
        return await client.request(
            method,
            server.url + path,
            json=body if content is None else None,
            content=content,
            headers=headers,
            params=params,
        )


def assert_error(response: httpx.Response, status: int, *mentions: str) -> str:
    """``status`` and a ``{"error": text}`` body that says what went wrong."""
    shown = response.text[:600]
    assert response.status_code == status, (response.status_code, shown)
    document = response.json()
    assert isinstance(document, dict) and isinstance(document.get("error"), str), shown
    assert document["error"].strip(), shown
    for text in mentions:
        assert text.lower() in document["error"].lower(), (text, shown)
    return document["error"]


async def register(
    server: ServerProcess, user: str, scopes: list[str] | None = None, prefix: str = "node"
) -> tuple[str, str]:
    response = await rest(
        server, "POST", "/api/nodes", user, {"name": name(prefix), "scopes": scopes or ["echo"]}
    )
    assert response.status_code == 201, response.text
    return response.json()["nodeId"], response.json()["token"]


async def node_view(server: ServerProcess, user: str, node_id: str) -> dict[str, Any]:
    response = await rest(server, "GET", f"/api/nodes/{node_id}", user)
    assert response.status_code == 200, response.text
    return response.json()


async def wait_status(server: ServerProcess, user: str, node_id: str, status: str) -> None:
    with trio.fail_after(TIMEOUT):
        while (await node_view(server, user, node_id))["status"] != status:
            await trio.sleep(0.05)


async def history(server: ServerProcess, user: str, node_id: str) -> list[dict[str, Any]]:
    response = await rest(
        server, "GET", f"/api/nodes/{node_id}/commands", user, params={"limit": "500"}
    )
    assert response.status_code == 200, response.text
    return response.json()


class Pending:
    """A dispatch in the background: it answers when its command ends."""

    def __init__(self) -> None:
        self.response: httpx.Response | None = None
        self.done = trio.Event()

    async def run(self, server: ServerProcess, user: str, node_id: str, body: Any) -> None:
        self.response = await rest(server, "POST", f"/api/nodes/{node_id}/commands", user, body)
        self.done.set()

    async def result(self) -> httpx.Response:
        with trio.fail_after(TIMEOUT):
            await self.done.wait()
        assert self.response is not None
        return self.response


def dispatch_soon(
    nursery: trio.Nursery, server: ServerProcess, user: str, node_id: str, body: Any
) -> Pending:
    pending = Pending()
    nursery.start_soon(pending.run, server, user, node_id, body)
    return pending


# -- nodes by hand ------------------------------------------------------------------------------


@asynccontextmanager
async def json_node(server: ServerProcess, token: str) -> AsyncIterator[HandNode]:
    url = with_query(f"{server.ws_url}{NODE_HUB}", access_token=token)
    async with trio_websocket.open_websocket_url(
        url,
        max_message_size=MAX_WEBSOCKET_MESSAGE,
        receive_buffer_size=RECEIVE_SIZE,
        message_queue_size=64,
        connect_timeout=10,
        disconnect_timeout=2,
    ) as websocket:
        client = HubClient(websocket)
        await client.handshake()
        yield HandNode(client)


@asynccontextmanager
async def msgpack_node(server: ServerProcess, token: str) -> AsyncIterator[MessagePackClient]:
    url = with_query(f"{server.ws_url}{NODE_HUB}", access_token=token)
    async with trio_websocket.open_websocket_url(
        url, max_message_size=MAX_WEBSOCKET_MESSAGE, connect_timeout=10, disconnect_timeout=2
    ) as websocket:
        client = MessagePackClient(websocket)
        await client.handshake()
        yield client


async def msgpack_execute(client: MessagePackClient) -> list[Any]:
    """The next ``ExecuteCommand`` Invocation: ``[1, headers, id, target, [payload], ...]``."""
    while True:
        message = await client.receive()
        assert message[0] != 7, f"closed: {message}"
        if message[0] == 1 and message[3] == "ExecuteCommand":
            return message


async def msgpack_answer(client: MessagePackClient, invocation_id: str, packed: bytes) -> None:
    """A Completion with a result, the result given already packed."""
    record = b"\x95" + msgpack.packb(3) + b"\x80" + msgpack.packb(invocation_id)
    await client.send_record(record + msgpack.packb(3) + packed)


def forge(
    user: str,
    *,
    tenant: str = "acme",
    roles: list[str] | None = None,
    ttl: float = 3600,
    **extra: Any,
) -> str:
    document = {
        "sub": user,
        "tid": tenant,
        "roles": ["node"] if roles is None else roles,
        "exp": int(time.time() + ttl),
        **extra,
    }
    return jwt.encode(document, SECRET, algorithm="HS256")


# -- checks -------------------------------------------------------------------------------------


def assert_alive(server: ServerProcess) -> None:
    assert server.process is not None
    code = server.process.poll()
    assert code is None, f"the server exited with {code}:\n{server.log[-4000:]}"


async def assert_serving(server: ServerProcess) -> None:
    """Alive, ``/healthz`` answers, and a fresh node does a full command round trip."""
    assert_alive(server)
    with trio.fail_after(TIMEOUT):
        health = await rest(server, "GET", "/healthz", None)
        assert health.status_code == 200, health.text
        user = make_token(name("probe-user"))
        node_id, token = await register(server, user, ["echo"], "probe")
        async with json_node(server, token) as node, trio.open_nursery() as nursery:
            await wait_status(server, user, node_id, "online")
            probe = {"probe": name("round-trip")}
            pending = dispatch_soon(
                nursery, server, user, node_id, {"command": "echo", "params": probe}
            )
            invocation = await node.next_invocation("ExecuteCommand")
            assert invocation["arguments"][0]["params"] == probe
            await node.answer(invocation, {"ok": True, "result": probe})
            response = await pending.result()
        assert response.status_code == 200, response.text
        assert response.json()["result"] == probe
    assert_alive(server)


async def invoke(node: HandNode, target: str, *arguments: Any) -> dict[str, Any]:
    with trio.fail_after(TIMEOUT):
        return await node.client.invoke(target, *arguments)


def assert_error_completion(completion: dict[str, Any], *mentions: str) -> None:
    assert completion.get("type") == COMPLETION, completion
    error = completion.get("error")
    assert isinstance(error, str) and error.strip(), completion
    # A crash in the method says only "An unexpected error occurred invoking
    # 'X' on the server."; a refusal names its reason (HubException: ...), and
    # an argument that does not bind gets ASP.NET's "Failed to invoke 'X' due
    # to an error on the server." (details only with detailed_errors).
    assert not error.startswith("An unexpected error occurred") or "HubException: " in error, (
        completion
    )
    for text in mentions:
        assert text.lower() in error.lower(), (text, completion)


def assert_void_completion(completion: dict[str, Any]) -> None:
    assert completion.get("type") == COMPLETION and "error" not in completion, completion
    assert completion.get("result") is None, completion


# -- hub methods: payloads of every wrong shape ---------------------------------------------------


HEARTBEAT_GARBAGE = {
    "list": ([],),
    "string": ("alive",),
    "null": (None,),
    "number": (7,),
    "empty-object": ({},),
    "node-id-number": ({"nodeId": 5},),
    "uptime-string": ({"nodeId": "{me}", "uptime": "long"},),
    "uptime-bool": ({"nodeId": "{me}", "uptime": True},),
    "uptime-negative": ({"nodeId": "{me}", "uptime": -1},),
    "uptime-object": ({"nodeId": "{me}", "uptime": {"s": 1}},),
    "no-arguments": (),
    "two-arguments": ({"nodeId": "{me}"}, {"nodeId": "{me}"}),
    "lone-surrogate-id": ({"nodeId": "\ud800"},),
}


def with_me(value: Any, node_id: str) -> Any:
    if isinstance(value, dict):
        return {k: with_me(v, node_id) for k, v in value.items()}
    return node_id if value == "{me}" else value


@pytest.mark.parametrize("case", list(HEARTBEAT_GARBAGE))
async def test_heartbeat_garbage_is_an_error_completion_and_the_node_stays(server, case):
    user = make_token("hb-user")
    node_id, token = await register(server, user)
    arguments = tuple(with_me(a, node_id) for a in HEARTBEAT_GARBAGE[case])
    mark = log_mark(server)
    with trio.fail_after(TIMEOUT):
        async with json_node(server, token) as node:
            assert_error_completion(await invoke(node, "Heartbeat", *arguments))
            right = await invoke(node, "Heartbeat", {"nodeId": node_id, "uptime": 5})
            assert_void_completion(right)
    assert (await node_view(server, user, node_id))["uptime"] == 5
    assert_quiet_log(server, mark)
    await assert_serving(server)


@pytest.mark.parametrize(
    "uptime",
    [
        2**63,
        99_999_999_999_999_999_999,
        2**63 - 1,
        1.7976931348623157e308,
        0,
        1e-300,
    ],
)
async def test_heartbeat_extreme_uptime_is_taken_or_refused_cleanly(server, uptime):
    """Any number JSON and the decoder allow: recorded and shown, or a clear error."""
    user = make_token("hb-extreme")
    node_id, token = await register(server, user)
    mark = log_mark(server)
    with trio.fail_after(TIMEOUT):
        async with json_node(server, token) as node:
            completion = await invoke(node, "Heartbeat", {"nodeId": node_id, "uptime": uptime})
            if "error" in completion:
                assert_error_completion(completion, "uptime")
            else:
                assert (await node_view(server, user, node_id))["uptime"] == pytest.approx(uptime)
        beat = await rest(server, "POST", "/api/nodes/me/heartbeat", token, {"uptime": uptime})
        if beat.status_code != 200:
            assert_error(beat, 400, "uptime")
    assert_quiet_log(server, mark)
    await assert_serving(server)


COMMAND_RESULT_GARBAGE = {
    "list": ([], None),
    "string": ("done", None),
    "null": (None, None),
    "empty": ({}, "commandId"),
    "id-number": ({"commandId": 5, "ok": True}, "commandId"),
    "no-ok": ({"commandId": "{cmd}"}, "not valid"),
    "ok-string": ({"commandId": "{cmd}", "ok": "yes"}, "not valid"),
    "ok-number": ({"commandId": "{cmd}", "ok": 1}, "not valid"),
    "error-number": ({"commandId": "{cmd}", "ok": False, "error": 5}, "error"),
    "error-object": ({"commandId": "{cmd}", "ok": False, "error": {"x": 1}}, "error"),
}


@pytest.mark.parametrize("case", list(COMMAND_RESULT_GARBAGE))
async def test_command_result_garbage_is_refused_and_the_command_stays_open(server, case):
    user = make_token("cr-user")
    node_id, token = await register(server, user)
    payload, says = COMMAND_RESULT_GARBAGE[case]
    mark = log_mark(server)
    with trio.fail_after(TIMEOUT):
        async with json_node(server, token) as node, trio.open_nursery() as nursery:
            await wait_status(server, user, node_id, "online")
            pending = dispatch_soon(nursery, server, user, node_id, {"command": "echo"})
            invocation = await node.next_invocation("ExecuteCommand")
            command_id = invocation["arguments"][0]["commandId"]
            await node.answer(invocation, {"accepted": True})
            if isinstance(payload, dict):
                payload = {k: command_id if v == "{cmd}" else v for k, v in payload.items()}
            refused = await invoke(node, "CommandResult", payload)
            assert_error_completion(refused, *([says] if says else []))
            right = await invoke(
                node, "CommandResult", {"commandId": command_id, "ok": True, "result": "fine"}
            )
            assert_void_completion(right)
            response = await pending.result()
    assert response.status_code == 200, response.text
    assert response.json()["result"] == "fine"
    assert_quiet_log(server, mark)
    await assert_serving(server)


@pytest.mark.parametrize(
    "payload, says",
    [
        ({"scopes": "echo"}, None),
        ({"scopes": [1, 2]}, None),
        ({}, None),
        ([], None),
        ({"scopes": ["\ud800"]}, None),
        ({"scopes": [None]}, None),
    ],
)
async def test_scope_changed_garbage_is_refused_and_nothing_is_recorded(server, payload, says):
    user = make_token("sc-user")
    node_id, token = await register(server, user)
    mark = log_mark(server)
    with trio.fail_after(TIMEOUT):
        async with json_node(server, token) as node:
            assert_error_completion(
                await invoke(node, "ScopeChanged", payload), *([says] if says else [])
            )
            assert_void_completion(await invoke(node, "ScopeChanged", {"scopes": ["echo"]}))
    assert (await node_view(server, user, node_id))["acknowledgedScopes"] == ["echo"]
    assert_quiet_log(server, mark)
    await assert_serving(server)


async def test_completion_for_an_invocation_never_sent_is_ignored(server):
    user = make_token("stray")
    node_id, token = await register(server, user)
    with trio.fail_after(TIMEOUT):
        async with json_node(server, token) as node, trio.open_nursery() as nursery:
            await wait_status(server, user, node_id, "online")
            for stray in ("s999", "1", "", "s0", "x" * 1000):
                await node.client.send_record(
                    {"type": COMPLETION, "invocationId": stray, "result": {"ok": True}}
                )
                await node.client.send_record(
                    {"type": COMPLETION, "invocationId": stray, "error": "boom"}
                )
            pending = dispatch_soon(
                nursery, server, user, node_id, {"command": "echo", "params": [1]}
            )
            invocation = await node.next_invocation("ExecuteCommand")
            await node.answer(invocation, {"ok": True, "result": "first"})
            # The same Completion again, and one with an error: both too late.
            await node.answer(invocation, {"ok": True, "result": "second"})
            await node.fail(invocation, "third")
            response = await pending.result()
            # The connection still works.
            assert_void_completion(await invoke(node, "Heartbeat", {"nodeId": node_id}))
    assert response.status_code == 200 and response.json()["result"] == "first", response.text
    [stored] = await history(server, user, node_id)
    assert (stored["status"], stored["result"]) == ("succeeded", "first")
    await assert_serving(server)


async def test_a_node_cannot_answer_for_another_nodes_command_on_the_hub(server):
    ada, eve = make_token("ada-x"), make_token("eve-x", tenant="evil")
    node_id, token = await register(server, ada)
    _, sibling = await register(server, ada, prefix="sibling")
    _, stranger = await register(server, eve, prefix="stranger")
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery, json_node(server, token) as node:
            await wait_status(server, ada, node_id, "online")
            pending = dispatch_soon(nursery, server, ada, node_id, {"command": "echo"})
            invocation = await node.next_invocation("ExecuteCommand")
            command_id = invocation["arguments"][0]["commandId"]
            await node.answer(invocation, {"accepted": True})
            for intruder in (sibling, stranger):
                async with json_node(server, intruder) as other:
                    forged = await invoke(
                        other,
                        "CommandResult",
                        {"commandId": command_id, "ok": True, "result": "forged"},
                    )
                    assert_error_completion(forged, "unknown")
                polled = await rest(
                    server,
                    "POST",
                    f"/api/nodes/me/commands/{command_id}/result",
                    intruder,
                    {"ok": False, "error": "forged"},
                )
                assert_error(polled, 404, "unknown")
            assert (await history(server, ada, node_id))[0]["status"] == "accepted"
            assert_void_completion(
                await invoke(
                    node, "CommandResult", {"commandId": command_id, "ok": True, "result": "mine"}
                )
            )
            response = await pending.result()
    assert response.status_code == 200 and response.json()["result"] == "mine", response.text
    await assert_serving(server)


# -- MessagePack nodes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "packed, says",
    [
        (msgpack.packb({"ok": True, "result": b"\x00\xff"}), "not JSON"),
        (msgpack.packb({"ok": True, "result": math.nan}), "not JSON"),
        (msgpack.packb({"ok": True, "result": [math.inf]}), "not JSON"),
        (msgpack.packb({"ok": True, "result": {"k": {"deep": -math.inf}}}), "not JSON"),
        (msgpack.packb({"ok": b"yes"}), "not valid"),
        (msgpack.packb(b"bytes"), "not valid"),
    ],
    ids=["bytes", "nan", "inf-in-list", "deep-inf", "ok-bytes", "all-bytes"],
)
async def test_msgpack_node_answer_that_is_not_json_fails_the_command(server, packed, says):
    user = make_token("mp-user")
    node_id, token = await register(server, user)
    mark = log_mark(server)
    with trio.fail_after(TIMEOUT):
        async with msgpack_node(server, token) as node, trio.open_nursery() as nursery:
            await wait_status(server, user, node_id, "online")
            pending = dispatch_soon(nursery, server, user, node_id, {"command": "echo"})
            invocation = await msgpack_execute(node)
            await msgpack_answer(node, invocation[2], packed)
            failed = await pending.result()
            # The connection stays: the next command works.
            second = dispatch_soon(
                nursery, server, user, node_id, {"command": "echo", "params": {"n": 2}}
            )
            invocation = await msgpack_execute(node)
            assert invocation[4][0]["params"] == {"n": 2}
            await msgpack_answer(node, invocation[2], msgpack.packb({"ok": True, "result": 2}))
            worked = await second.result()
    assert_error(failed, 502, says)
    assert failed.json()["command"]["status"] == "failed"
    assert worked.status_code == 200 and worked.json()["result"] == 2, worked.text
    stored = await history(server, user, node_id)
    assert [c["status"] for c in stored] == ["succeeded", "failed"]
    assert_quiet_log(server, mark)
    await assert_serving(server)


async def test_msgpack_command_result_with_bytes_or_nan_is_refused(server):
    user = make_token("mp-cr")
    node_id, token = await register(server, user)
    with trio.fail_after(TIMEOUT):
        async with msgpack_node(server, token) as node, trio.open_nursery() as nursery:
            await wait_status(server, user, node_id, "online")
            pending = dispatch_soon(nursery, server, user, node_id, {"command": "echo"})
            invocation = await msgpack_execute(node)
            command_id = invocation[4][0]["commandId"]
            await msgpack_answer(node, invocation[2], msgpack.packb({"accepted": True}))
            for n, bad in enumerate([b"\x01", math.nan, {"x": math.inf}, [b"k", 1]]):
                packed = msgpack.packb(
                    {"commandId": command_id, "ok": True, "result": bad}, use_bin_type=True
                )
                completion = await node.invoke(f"bad{n}", "CommandResult", packed)
                # [3, headers, id, 1 (error), text]
                assert completion[3] == 1 and "not valid" in completion[4], completion
            good = msgpack.packb({"commandId": command_id, "ok": True, "result": {"n": 1}})
            completion = await node.invoke("good", "CommandResult", good)
            assert completion[3:] in ([2], [3, None]), completion  # no error
            response = await pending.result()
    assert response.status_code == 200 and response.json()["result"] == {"n": 1}, response.text
    await assert_serving(server)


async def test_msgpack_node_gets_a_command_whose_params_do_not_fit_messagepack(server):
    """JSON takes a 20-digit integer, MessagePack stops at 64 bits: the command
    must end with a clear error (or be delivered), not hang or break the node."""
    user = make_token("mp-big")
    node_id, token = await register(server, user)
    huge = 99_999_999_999_999_999_999
    mark = log_mark(server)
    with trio.fail_after(TIMEOUT):
        async with msgpack_node(server, token) as node, trio.open_nursery() as nursery:
            await wait_status(server, user, node_id, "online")
            pending = dispatch_soon(
                nursery,
                server,
                user,
                node_id,
                {"command": "echo", "params": {"n": huge}, "timeoutSeconds": 10},
            )
            response = await pending.result()
            second = dispatch_soon(
                nursery, server, user, node_id, {"command": "echo", "params": {"n": 1}}
            )
            invocation = await msgpack_execute(node)
            await msgpack_answer(node, invocation[2], msgpack.packb({"ok": True, "result": 1}))
            worked = await second.result()
    assert_error(response, 502)
    assert worked.status_code == 200, worked.text
    assert_quiet_log(server, mark)
    await assert_serving(server)


# -- error texts a store cannot hold ---------------------------------------------------------------


def completion_text(invocation_id: str, body: str) -> str:
    """A Completion whose JSON is written by hand (escapes kept as given)."""
    return f'{{"type":{COMPLETION},"invocationId":"{invocation_id}",{body}}}\x1e'


UNSTORABLE_ANSWERS = {
    "answer-error-lone-surrogate": '"result":{"ok":false,"error":"disk \\ud800 on fire"}',
    "thrown-error-lone-surrogate": '"error":"disk \\udfff on fire"',
}
NUL_ANSWERS = {
    "answer-error-nul": '"result":{"ok":false,"error":"disk \\u0000 on fire"}',
    "thrown-error-nul": '"error":"disk \\u0000 on fire"',
}


@pytest.mark.parametrize(
    "case",
    [
        *UNSTORABLE_ANSWERS,
        "answer-error-nul",
        "thrown-error-nul",
    ],
)
async def test_node_error_text_a_store_may_refuse_fails_the_command_cleanly(server, case):
    """JSON may escape a lone surrogate; SQLite cannot store one. The node's
    error text is the command's error: it must be refused or cleaned, never
    take the server down."""
    user = make_token("surrogate")
    node_id, token = await register(server, user)
    with trio.fail_after(TIMEOUT):
        async with json_node(server, token) as node, trio.open_nursery() as nursery:
            await wait_status(server, user, node_id, "online")
            pending = dispatch_soon(
                nursery, server, user, node_id, {"command": "echo", "timeoutSeconds": 10}
            )
            invocation = await node.next_invocation("ExecuteCommand")
            await node.client.send_raw(
                completion_text(
                    invocation["invocationId"], {**UNSTORABLE_ANSWERS, **NUL_ANSWERS}[case]
                )
            )
            response = await pending.result()
    assert_alive(server)
    assert_error(response, 502)
    assert response.json()["command"]["status"] == "failed"
    await assert_serving(server)


async def test_command_result_error_with_a_lone_surrogate_is_refused_clearly(server):
    user = make_token("surrogate-cr")
    node_id, token = await register(server, user)
    with trio.fail_after(TIMEOUT):
        async with json_node(server, token) as node, trio.open_nursery() as nursery:
            await wait_status(server, user, node_id, "online")
            pending = dispatch_soon(nursery, server, user, node_id, {"command": "echo"})
            invocation = await node.next_invocation("ExecuteCommand")
            command_id = invocation["arguments"][0]["commandId"]
            await node.answer(invocation, {"accepted": True})
            await node.client.send_raw(
                f'{{"type":1,"invocationId":"bad","target":"CommandResult","arguments":'
                f'[{{"commandId":"{command_id}","ok":false,"error":"\\ud800"}}]}}\x1e'
            )
            refused = await node.client.receive_completion("bad")
            assert_error_completion(refused)
            assert_void_completion(
                await invoke(node, "CommandResult", {"commandId": command_id, "ok": True})
            )
            response = await pending.result()
    assert response.status_code == 200, response.text
    await assert_serving(server)


async def test_polled_result_with_a_lone_surrogate_is_400(server):
    user = make_token("surrogate-poll")
    node_id, token = await register(server, user)
    beat = await rest(server, "POST", "/api/nodes/me/heartbeat", token, {})
    assert beat.status_code == 200, beat.text
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            pending = dispatch_soon(nursery, server, user, node_id, {"command": "echo"})
            polled = await rest(
                server, "GET", "/api/nodes/me/commands", token, params={"wait": "10"}
            )
            [delivery] = polled.json()["commands"]
            path = f"/api/nodes/me/commands/{delivery['commandId']}/result"
            for raw in (
                b'{"ok":false,"error":"\\ud800"}',
                b'{"ok":true,"result":{"\\udc00":1}}',
                b'{"ok":true,"result":"\\u0000"}',
            ):
                refused = await rest(server, "POST", path, token, content=raw)
                assert refused.status_code == 400, refused.text
                assert refused.text.startswith("The body holds a NUL"), refused.text  # docs/rest.md
            done = await rest(server, "POST", path, token, {"ok": True, "result": "clean"})
            assert done.status_code == 200, done.text
            response = await pending.result()
    assert response.status_code == 200 and response.json()["result"] == "clean"
    await assert_serving(server)


# -- REST bodies, queries and paths of every wrong shape ------------------------------------------


async def body_routes(server: ServerProcess) -> tuple[str, str, list[tuple[str, str, str]]]:
    """(user token, node token, [(method, path, whose)]) for every route that reads a body."""
    user = make_token("shapes")
    node_id, token = await register(server, user)
    return (
        user,
        token,
        [
            ("POST", "/api/nodes", "user"),
            ("PATCH", f"/api/nodes/{node_id}", "user"),
            ("POST", f"/api/nodes/{node_id}/commands", "user"),
            ("POST", "/api/nodes/me/commands/cmd_nothing/result", "node"),
            ("POST", "/api/nodes/me/heartbeat", "node"),
        ],
    )


@pytest.mark.parametrize("body", [[], [1, 2], "text", 5, True, 1.5], ids=repr)
async def test_rest_body_that_is_not_an_object_is_400_json_error(server, body):
    user, token, routes = await body_routes(server)
    for method, path, whose in routes:
        response = await rest(server, method, path, user if whose == "user" else token, body)
        assert_error(response, 400, "JSON object")
    await assert_serving(server)


NOT_JSON = {
    "truncated": b'{"name": "x", "scopes": ["echo"]',
    "nan": b'{"name": "x", "scopes": ["echo"], "ttlSeconds": NaN}',
    "infinity-literal": b'{"uptime": Infinity}',
    "overflowing-float": b'{"uptime": 1e999}',
    "giant-integer": b'{"uptime": 123456789012345678901234567890}',
    "latin-1": '{"name": "caf\u00e9"}'.encode("latin-1"),
    "deep": b'{"params":' + b"[" * 100 + b"]" * 100 + b"}",
}
UNSTORABLE = {
    "lone-high-surrogate": b'{"name": "\\ud800", "scopes": ["echo"], "command": "\\ud800"}',
    "lone-low-surrogate-key": b'{"params": {"\\udfff": 1}, "name": "x", "scopes": ["echo"]}',
    "nul": b'{"name": "a\\u0000b", "scopes": ["echo"], "error": "\\u0000", "ok": false}',
}


@pytest.mark.parametrize("case", list(NOT_JSON) + list(UNSTORABLE))
async def test_rest_body_that_is_not_json_or_not_storable_is_400(server, case):
    """docs/rest.md: these two refusals are the server's, in text/plain."""
    user, token, routes = await body_routes(server)
    raw = NOT_JSON.get(case) or UNSTORABLE[case]
    expected = "The body holds a NUL" if case in UNSTORABLE else "The body is not valid JSON"
    mark = log_mark(server)
    for method, path, whose in routes:
        response = await rest(server, method, path, user if whose == "user" else token, content=raw)
        assert response.status_code == 400, (path, response.text)
        assert response.text.startswith(expected), (path, response.text)
    assert [n["name"] for n in (await rest(server, "GET", "/api/nodes", user)).json()] == [
        n["name"] for n in (await rest(server, "GET", "/api/nodes", user)).json()
    ]
    assert_quiet_log(server, mark)
    await assert_serving(server)


BAD_REGISTRATIONS = {
    "name-missing": ({"scopes": ["echo"]}, "'name'"),
    "name-blank": ({"name": " \t ", "scopes": ["echo"]}, "'name'"),
    "name-too-long": ({"name": "n" * 101, "scopes": ["echo"]}, "'name'"),
    "name-number": ({"name": 5, "scopes": ["echo"]}, "'name'"),
    "name-list": ({"name": ["x"], "scopes": ["echo"]}, "'name'"),
    "scopes-missing": ({"name": "x"}, "'scopes'"),
    "scopes-null": ({"name": "x", "scopes": None}, "'scopes'"),
    "scopes-string": ({"name": "x", "scopes": "echo"}, "'scopes'"),
    "scopes-object": ({"name": "x", "scopes": {"echo": True}}, "'scopes'"),
    "scopes-101": ({"name": "x", "scopes": [f"s{n}" for n in range(101)]}, "'scopes'"),
    "scope-65-long": ({"name": "x", "scopes": ["s" * 65]}, "scope"),
    "scope-empty": ({"name": "x", "scopes": [""]}, "scope"),
    "scope-unicode": ({"name": "x", "scopes": ["\u00e9cho"]}, "scope"),
    "scope-slash": ({"name": "x", "scopes": ["../echo"]}, "scope"),
    "scope-newline": ({"name": "x", "scopes": ["echo\n"]}, "scope"),
    "scope-number": ({"name": "x", "scopes": [1]}, "'scopes'"),
    "ttl-string": ({"name": "x", "scopes": ["echo"], "ttlSeconds": "60"}, "'ttlSeconds'"),
    "ttl-bool": ({"name": "x", "scopes": ["echo"], "ttlSeconds": True}, "'ttlSeconds'"),
    "ttl-59": ({"name": "x", "scopes": ["echo"], "ttlSeconds": 59}, "'ttlSeconds'"),
    "ttl-negative": ({"name": "x", "scopes": ["echo"], "ttlSeconds": -1}, "'ttlSeconds'"),
    "ttl-huge": ({"name": "x", "scopes": ["echo"], "ttlSeconds": 1e308}, "'ttlSeconds'"),
    "ttl-20-digits": (
        {"name": "x", "scopes": ["echo"], "ttlSeconds": 99_999_999_999_999_999_999},
        "'ttlSeconds'",
    ),
}


async def test_rest_register_field_values_of_every_wrong_kind_are_400(server):
    user = make_token(name("registrar"))
    for case, (body, says) in BAD_REGISTRATIONS.items():
        response = await rest(server, "POST", "/api/nodes", user, body)
        assert response.status_code == 400, (case, response.text)
        assert_error(response, 400, says)
    assert (await rest(server, "GET", "/api/nodes", user)).json() == []
    # The edges that are allowed.
    odd = "\u30ce\u30fc\u30c9 \U0001f600 " + "n" * 90
    edge = await rest(
        server,
        "POST",
        "/api/nodes",
        user,
        {"name": f"  {odd}  ", "scopes": ["a", "a", "s" * 64, "A.b:c-d_9"], "ttlSeconds": 60},
    )
    assert edge.status_code == 201, edge.text
    assert edge.json()["name"] == odd
    assert edge.json()["scopes"] == ["a", "s" * 64, "A.b:c-d_9"]
    claims = jwt.decode(edge.json()["token"], options={"verify_signature": False})
    assert 55 <= claims["exp"] - time.time() <= 65
    await assert_serving(server)


async def test_rest_dispatch_field_values_of_every_wrong_kind_are_400_and_store_nothing(server):
    user = make_token(name("dispatcher"))
    node_id, _ = await register(server, user, ["echo"])
    path = f"/api/nodes/{node_id}/commands"
    cases = {
        "command-missing": ({}, "'command'"),
        "command-null": ({"command": None}, "'command'"),
        "command-number": ({"command": 5}, "'command'"),
        "command-65": ({"command": "e" * 65}, "'command'"),
        "command-space": ({"command": "ec ho"}, "'command'"),
        "command-unicode": ({"command": "\u00e9cho"}, "'command'"),
        "timeout-zero": ({"command": "echo", "timeoutSeconds": 0}, "'timeoutSeconds'"),
        "timeout-negative-zero": ({"command": "echo", "timeoutSeconds": -0.0}, "'timeoutSeconds'"),
        "timeout-negative": ({"command": "echo", "timeoutSeconds": -5}, "'timeoutSeconds'"),
        "timeout-over": ({"command": "echo", "timeoutSeconds": 3600.001}, "'timeoutSeconds'"),
        "timeout-huge": ({"command": "echo", "timeoutSeconds": 1e308}, "'timeoutSeconds'"),
        "timeout-20-digits": (
            {"command": "echo", "timeoutSeconds": 99_999_999_999_999_999_999},
            "'timeoutSeconds'",
        ),
        "timeout-string": ({"command": "echo", "timeoutSeconds": "30"}, "'timeoutSeconds'"),
        "timeout-bool": ({"command": "echo", "timeoutSeconds": True}, "'timeoutSeconds'"),
        "timeout-list": ({"command": "echo", "timeoutSeconds": [30]}, "'timeoutSeconds'"),
        "queue-string": ({"command": "echo", "queue": "true"}, "'queue'"),
        "queue-number": ({"command": "echo", "queue": 1}, "'queue'"),
        "queue-null": ({"command": "echo", "queue": None}, "'queue'"),
    }
    mark = log_mark(server)
    for case, (body, says) in cases.items():
        response = await rest(server, "POST", path, user, body)
        assert response.status_code == 400, (case, response.text)
        assert_error(response, 400, says)
    scope = await rest(server, "POST", path, user, {"command": "shell", "queue": True})
    assert_error(scope, 403, "scope")
    offline = await rest(server, "POST", path, user, {"command": "echo"})
    assert_error(offline, 409, "offline")
    assert await history(server, user, node_id) == []
    assert_quiet_log(server, mark)
    await assert_serving(server)


BAD_LIMITS = [
    "",
    "-1",
    "0",
    "501",
    "1e3",
    "nan",
    "1.5",
    " 5",
    "5 ",
    "0x10",
    "+5",
    "99999999999999999999999",
]


@pytest.mark.parametrize(
    "limit",
    [
        *BAD_LIMITS,
        "\u00b2",  # str.isdigit() says yes, int() says no
        "\u2460",
        "\uff11\uff10",  # full-width digits are not ASCII
    ],
)
async def test_rest_history_limit_edges_are_400_json(server, limit):
    user = make_token("limits")
    node_id, _ = await register(server, user)
    mark = log_mark(server)
    response = await rest(
        server, "GET", f"/api/nodes/{node_id}/commands", user, params={"limit": limit}
    )
    assert_error(response, 400, "'limit'")
    assert_quiet_log(server, mark)
    assert (await rest(server, "GET", "/healthz", None)).status_code == 200


@pytest.mark.parametrize(
    "wait", ["", "-1", "-0.001", "60.001", "61", "1e309", "-1e309", "nan", "inf", "0x10", "1_0_0"]
)
async def test_rest_poll_wait_edges_are_400_json(server, wait):
    user = make_token("waits")
    _, token = await register(server, user)
    response = await rest(server, "GET", "/api/nodes/me/commands", token, params={"wait": wait})
    assert_error(response, 400, "'wait'")
    assert (await rest(server, "GET", "/healthz", None)).status_code == 200


@pytest.mark.parametrize("wait", ["0", "-0", "0.0", "1e-400", "0e5", "60"])
async def test_rest_poll_wait_edges_that_are_allowed(server, wait):
    user = make_token("waits-ok")
    node_id, token = await register(server, user)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            pending = (
                dispatch_soon(nursery, server, user, node_id, {"command": "echo", "queue": True})
                if wait == "60"
                else None
            )
            if pending is not None:
                while not await history(server, user, node_id):
                    await trio.sleep(0.02)
            response = await rest(
                server, "GET", "/api/nodes/me/commands", token, params={"wait": wait}
            )
            assert response.status_code == 200, response.text
            commands = response.json()["commands"]
            if pending is None:
                assert commands == []
            else:
                [delivery] = commands
                done = await rest(
                    server,
                    "POST",
                    f"/api/nodes/me/commands/{delivery['commandId']}/result",
                    token,
                    {"ok": True, "result": wait},
                )
                assert done.status_code == 200, done.text
                assert (await pending.result()).json()["result"] == wait


ODD_IDS = ["%00", "%ff", "%F0%9F%98%80", "%2e%2e", "x" * 4000, "nod_" + "0" * 32, "%20", "me%00"]


@pytest.mark.parametrize("node_id", ODD_IDS, ids=lambda s: s[:12])
async def test_rest_odd_node_ids_are_404_json_for_a_user_and_403_for_a_node(server, node_id):
    user = make_token("odd-paths")
    _, token = await register(server, user)
    mark = log_mark(server)
    for method, suffix, body in [
        ("GET", "", None),
        ("PATCH", "", {"scopes": ["echo"]}),
        ("DELETE", "", None),
        ("POST", "/commands", {"command": "echo"}),
        ("GET", "/commands", None),
    ]:
        path = f"/api/nodes/{node_id}{suffix}"
        assert_error(await rest(server, method, path, user, body), 404, "does not exist")
        refused = await rest(server, method, path, token, body)
        assert refused.status_code == 403, (path, refused.text)
    assert_quiet_log(server, mark)
    await assert_serving(server)


@pytest.mark.parametrize("command_id", ["%00", "%ff", "x" * 4000, "..", "cmd_%2F"], ids=str)
async def test_rest_odd_command_ids_on_the_result_route_are_404_json(server, command_id):
    user = make_token("odd-results")
    _, token = await register(server, user)
    response = await rest(
        server, "POST", f"/api/nodes/me/commands/{command_id}/result", token, {"ok": True}
    )
    if command_id in ("..", "cmd_%2F"):  # not one segment once decoded: no such route
        assert response.status_code == 404, response.text
    else:
        assert_error(response, 404, "unknown")
    await assert_serving(server)


async def test_rest_node_token_on_the_owner_dispatch_route_through_me_is_403(server):
    user = make_token("me-route")
    _, token = await register(server, user)
    response = await rest(server, "POST", "/api/nodes/me/commands", token, {"command": "echo"})
    assert response.status_code == 403, response.text


# -- tokens: whose, where, and after revocation ---------------------------------------------------


USER_HUBS = [
    "/hubs/playground",
    "/hubs/chat",
    "/hubs/tasks",
    "/hubs/approvals",
    "/hubs/discussion",
    "/hubs/notifications",
]


async def negotiate_status(server: ServerProcess, hub: str, token: str) -> httpx.Response:
    return await rest(server, "POST", f"{hub}/negotiate?negotiateVersion=1", token)


async def upgrade_status(server: ServerProcess, hub: str, token: str) -> int:
    """The status of a WebSocket upgrade on ``hub`` (101 if accepted)."""
    url = with_query(f"{server.ws_url}{hub}", access_token=token)
    try:
        async with trio_websocket.open_websocket_url(url, connect_timeout=10, disconnect_timeout=2):
            return 101
    except trio_websocket.ConnectionRejected as refused:
        return refused.status_code


async def test_node_token_is_403_on_every_user_hub_and_user_route(server):
    user = make_token("borders")
    node_id, token = await register(server, user)
    with trio.fail_after(TIMEOUT):
        for hub in USER_HUBS:
            refused = await negotiate_status(server, hub, token)
            assert refused.status_code == 403, (hub, refused.text)
            assert "/hubs/node" in refused.text
            assert await upgrade_status(server, hub, token) == 403, hub
        for method, path, body in [
            ("GET", "/api/nodes", None),
            ("POST", "/api/nodes", {"name": "from-a-node", "scopes": ["echo"]}),
            ("GET", f"/api/nodes/{node_id}", None),
            ("PATCH", f"/api/nodes/{node_id}", {"scopes": ["echo", "shell"]}),
            ("DELETE", f"/api/nodes/{node_id}", None),
            ("POST", f"/api/nodes/{node_id}/commands", {"command": "echo"}),
            ("GET", f"/api/nodes/{node_id}/commands", None),
        ]:
            refused = await rest(server, method, path, token, body)
            assert refused.status_code == 403, (method, path, refused.text)
    # Nothing changed: the node is there, with its scopes, and no node was added.
    listed = (await rest(server, "GET", "/api/nodes", user)).json()
    assert [(n["nodeId"], n["scopes"]) for n in listed] == [(node_id, ["echo"])]
    await assert_serving(server)


async def test_user_token_is_403_on_the_node_hub_and_the_node_routes(server):
    user = make_token("not-a-node")
    with trio.fail_after(TIMEOUT):
        for hub in (NODE_HUB, NODE_HUB + "/"):
            refused = await negotiate_status(server, hub, user)
            assert refused.status_code == 403, (hub, refused.text)
        assert await upgrade_status(server, NODE_HUB, user) == 403
        for method, path in [
            ("GET", "/api/nodes/me/commands?wait=0"),
            ("POST", "/api/nodes/me/heartbeat"),
            ("POST", "/api/nodes/me/commands/cmd_x/result"),
        ]:
            refused = await rest(server, method, path, user, {"ok": True})
            assert refused.status_code == 403, (path, refused.text)
    await assert_serving(server)


async def forged_cases(server: ServerProcess) -> dict[str, tuple[str, int]]:
    """Forged node tokens (signed with the server's secret) and the status each must get."""
    ada, mallory = make_token("ada-f"), make_token("mallory-f")
    ada_node, _ = await register(server, ada, prefix="adas")
    mallory_node, _ = await register(server, mallory, prefix="mallorys")
    return {
        "node-role-no-nid": (forge("mallory-f"), 403),
        "nid-empty": (forge("mallory-f", nid=""), 403),
        "nid-number": (forge("mallory-f", nid=5), 403),
        "nid-list": (forge("mallory-f", nid=[ada_node]), 403),
        "nid-without-node-role": (forge("mallory-f", roles=[], nid=mallory_node), 403),
        "nid-of-another-users-node": (forge("mallory-f", nid=ada_node), 401),
        "nid-of-another-tenants-node": (forge("ada-f", tenant="evil", nid=ada_node), 401),
        "nid-unknown": (forge("mallory-f", nid="nod_" + "f" * 32), 401),
        "nid-sql-ish": (forge("mallory-f", nid="' OR '1'='1"), 401),
        "expired": (forge("mallory-f", nid=mallory_node, ttl=-60), 401),
    }


async def test_forged_node_tokens_are_refused_everywhere_a_node_goes(server):
    cases = await forged_cases(server)
    mark = log_mark(server)
    with trio.fail_after(TIMEOUT):
        for case, (token, status) in cases.items():
            negotiated = await negotiate_status(server, NODE_HUB, token)
            assert negotiated.status_code == status, (case, negotiated.text)
            assert await upgrade_status(server, NODE_HUB, token) == status, case
            for method, path in [
                ("GET", "/api/nodes/me/commands?wait=0"),
                ("POST", "/api/nodes/me/heartbeat"),
                ("POST", "/api/nodes/me/commands/cmd_x/result"),
            ]:
                refused = await rest(server, method, path, token, {"ok": True})
                assert refused.status_code == status, (case, path, refused.text)
                if status == 401 and case != "expired":
                    assert refused.text == REVOKED, (case, refused.text)
    assert_quiet_log(server, mark)
    await assert_serving(server)


async def test_a_token_naming_another_users_node_cannot_take_its_commands(server):
    """mallory signs a token for ada's node id: not one command of ada's reaches her."""
    ada = make_token("ada-steal")
    node_id, token = await register(server, ada)
    stolen = forge("mallory-steal", nid=node_id)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            pending = dispatch_soon(
                nursery, server, ada, node_id, {"command": "echo", "queue": True, "params": [7]}
            )
            while not await history(server, ada, node_id):
                await trio.sleep(0.02)
            poll = await rest(server, "GET", "/api/nodes/me/commands", stolen, params={"wait": "0"})
            assert poll.status_code == 401, poll.text
            assert (await history(server, ada, node_id))[0]["status"] == "queued"
            polled = await rest(
                server, "GET", "/api/nodes/me/commands", token, params={"wait": "5"}
            )
            [delivery] = polled.json()["commands"]
            assert delivery["params"] == [7]
            answered = await rest(
                server,
                "POST",
                f"/api/nodes/me/commands/{delivery['commandId']}/result",
                token,
                {"ok": True, "result": "ada's"},
            )
            assert answered.status_code == 200, answered.text
            response = await pending.result()
    assert response.json()["result"] == "ada's"
    await assert_serving(server)


async def test_a_revoked_node_is_refused_everywhere_at_once(server):
    user = make_token("revoker")
    node_id, token = await register(server, user)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            async with json_node(server, token) as node:
                await wait_status(server, user, node_id, "online")
                in_flight = [
                    dispatch_soon(nursery, server, user, node_id, {"command": "echo", "queue": q})
                    for q in (False, True, False)
                ]
                for _ in in_flight:
                    await node.next_invocation("ExecuteCommand")
                waiting_poll: list[httpx.Response] = []

                async def poll() -> None:
                    waiting_poll.append(
                        await rest(
                            server, "GET", "/api/nodes/me/commands", token, params={"wait": "30"}
                        )
                    )

                nursery.start_soon(poll)
                await wait_for_polls(server)
                revoked = await rest(server, "DELETE", f"/api/nodes/{node_id}", user)
                assert revoked.status_code == 204, revoked.text
                # The hub connection: RevokeAccess, then a Close with the reason.
                told = await node.next_invocation("RevokeAccess")
                assert told["arguments"] == [{}]
                while (message := await node.client.receive_message())["type"] != CLOSE:
                    pass
                assert message.get("error") == REVOKED, message
            outcomes = [await pending.result() for pending in in_flight]
            while not waiting_poll:
                await trio.sleep(0.02)
    # The poll was admitted before the revocation: the route itself refuses it.
    assert_error(waiting_poll[0], 401, REVOKED)
    for response in outcomes:
        assert_error(response, 502)
        assert response.json()["command"]["status"] == "failed"
    with trio.fail_after(TIMEOUT):
        assert (await negotiate_status(server, NODE_HUB, token)).status_code == 401
        assert await upgrade_status(server, NODE_HUB, token) == 401
        for method, path in [
            ("GET", "/api/nodes/me/commands?wait=0"),
            ("POST", "/api/nodes/me/heartbeat"),
            ("POST", f"/api/nodes/me/commands/{outcomes[0].json()['command']['commandId']}/result"),
        ]:
            refused = await rest(server, method, path, token, {"ok": True})
            assert (refused.status_code, refused.text) == (401, REVOKED), path
        for method in ("GET", "DELETE"):
            assert_error(await rest(server, method, f"/api/nodes/{node_id}", user), 404)
        assert_error(
            await rest(server, "POST", f"/api/nodes/{node_id}/commands", user, {"command": "echo"}),
            404,
        )
    await assert_serving(server)


# -- many at once: polls, results, commands, connections, nodes -----------------------------------


async def poll_once(server: ServerProcess, token: str, wait: str, into: list) -> None:
    into.append(await rest(server, "GET", "/api/nodes/me/commands", token, params={"wait": wait}))


async def test_a_fifth_waiting_poll_is_429_and_a_command_goes_to_exactly_one_poll(server):
    user = make_token("pollers")
    node_id, token = await register(server, user)
    assert (await rest(server, "POST", "/api/nodes/me/heartbeat", token, {})).status_code == 200
    polled: list[httpx.Response] = []
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(poll_once, server, token, "4", polled)
            await wait_for_polls(server, 4)
            extra: list[httpx.Response] = []
            await poll_once(server, token, "4", extra)
            assert_error(extra[0], 429, "4 polls")
            pending = dispatch_soon(
                nursery, server, user, node_id, {"command": "echo", "params": {"once": 1}}
            )
            while not polled:
                await trio.sleep(0.02)
            [delivery] = polled[0].json()["commands"]
            done = await rest(
                server,
                "POST",
                f"/api/nodes/me/commands/{delivery['commandId']}/result",
                token,
                {"ok": True, "result": 1},
            )
            assert done.status_code == 200, done.text
            assert (await pending.result()).status_code == 200
    assert [r.status_code for r in polled] == [200] * 4
    handed = [c["commandId"] for r in polled for c in r.json()["commands"]]
    assert handed == [delivery["commandId"]]  # the others ended empty at their wait
    stats = await get_stats(server.url)
    assert stats["nodes"]["polls_waiting"] == 0, stats
    await assert_serving(server)


async def test_hub_and_polls_at_once_deliver_each_command_exactly_once(server):
    user = make_token("two-ways")
    node_id, token = await register(server, user)
    count = 40
    via_hub: list[str] = []
    via_poll: list[str] = []
    with trio.fail_after(TIMEOUT * 2):
        async with json_node(server, token) as node, trio.open_nursery() as nursery:
            await wait_status(server, user, node_id, "online")

            async def hub_side() -> None:
                while True:
                    invocation = await node.next_invocation("ExecuteCommand")
                    command_id = invocation["arguments"][0]["commandId"]
                    via_hub.append(command_id)
                    await node.answer(invocation, {"ok": True, "result": "hub"})

            async def poll_side() -> None:
                while True:
                    response = await rest(
                        server, "GET", "/api/nodes/me/commands", token, params={"wait": "2"}
                    )
                    assert response.status_code == 200, response.text
                    for command in response.json()["commands"]:
                        via_poll.append(command["commandId"])
                        done = await rest(
                            server,
                            "POST",
                            f"/api/nodes/me/commands/{command['commandId']}/result",
                            token,
                            {"ok": True, "result": "poll"},
                        )
                        assert done.status_code == 200, done.text

            async with trio.open_nursery() as workers:
                workers.start_soon(hub_side)
                for _ in range(3):
                    workers.start_soon(poll_side)
                await wait_for_polls(server, 3)
                pending = [
                    dispatch_soon(
                        nursery, server, user, node_id, {"command": "echo", "queue": True}
                    )
                    for _ in range(count)
                ]
                responses = [await p.result() for p in pending]
                workers.cancel_scope.cancel()
    assert [r.status_code for r in responses] == [200] * count, [r.text for r in responses]
    ids = [r.json()["commandId"] for r in responses]
    assert sorted(via_hub + via_poll) == sorted(ids)  # each once, none twice, none lost
    for response in responses:
        body = response.json()
        assert body["deliveries"] == 1, body
        assert body["result"] == ("hub" if body["commandId"] in via_hub else "poll"), body
    await assert_serving(server)


async def test_concurrent_results_for_one_command_from_the_hub_and_polling_record_one(server):
    user = make_token("racers")
    node_id, token = await register(server, user)
    assert (await rest(server, "POST", "/api/nodes/me/heartbeat", token, {})).status_code == 200
    rounds = 10
    with trio.fail_after(TIMEOUT * 2):
        async with trio.open_nursery() as nursery:
            pending = [
                dispatch_soon(nursery, server, user, node_id, {"command": "echo"})
                for _ in range(rounds)
            ]
            delivered: list[dict[str, Any]] = []
            while len(delivered) < rounds:
                response = await rest(
                    server, "GET", "/api/nodes/me/commands", token, params={"wait": "5"}
                )
                delivered += response.json()["commands"]
            assert len({c["commandId"] for c in delivered}) == rounds
            # Now on the hub too: the polled commands stay "sent", for either path.
            async with json_node(server, token) as node:
                outcomes: dict[str, list[str]] = {}

                async def by_hub(command_id: str) -> None:
                    completion = await node.client.invoke(
                        "CommandResult", {"commandId": command_id, "ok": True, "result": "hub"}
                    )
                    outcomes[command_id].append("hub" if "error" not in completion else "-")
                    if "error" in completion:
                        assert "answered already" in completion["error"], completion

                async def by_poll(command_id: str) -> None:
                    response = await rest(
                        server,
                        "POST",
                        f"/api/nodes/me/commands/{command_id}/result",
                        token,
                        {"ok": True, "result": "poll"},
                    )
                    if response.status_code == 200:
                        outcomes[command_id].append("poll")
                    else:
                        assert_error(response, 409, "answered already")
                        outcomes[command_id].append("-")

                for command in delivered:
                    outcomes[command["commandId"]] = []
                # The hub side in one task (one reader of the connection), the REST side in many.
                async with trio.open_nursery() as racing:

                    async def all_by_hub() -> None:
                        for command in delivered:
                            await by_hub(command["commandId"])

                    racing.start_soon(all_by_hub)
                    for command in delivered:
                        racing.start_soon(by_poll, command["commandId"])
                responses = [await p.result() for p in pending]
    for command_id, said in outcomes.items():
        winners = [s for s in said if s != "-"]
        assert len(said) == 2 and len(winners) == 1, (command_id, said)
    by_id = {r.json()["commandId"]: r.json() for r in responses}
    for command_id, said in outcomes.items():
        [winner] = [s for s in said if s != "-"]
        assert by_id[command_id]["result"] == winner, (command_id, said, by_id[command_id])
    await assert_serving(server)


async def test_a_node_that_leaves_with_many_commands_in_flight_loses_none(server):
    user = make_token("in-flight")
    node_id, token = await register(server, user)
    plain_count, queued_count = 30, 30
    with trio.fail_after(TIMEOUT * 2):
        async with trio.open_nursery() as nursery:
            async with json_node(server, token) as node:
                await wait_status(server, user, node_id, "online")
                plain = [
                    dispatch_soon(nursery, server, user, node_id, {"command": "echo"})
                    for _ in range(plain_count)
                ]
                queued = [
                    dispatch_soon(
                        nursery, server, user, node_id, {"command": "echo", "queue": True}
                    )
                    for _ in range(queued_count)
                ]
                seen = set()
                while len(seen) < plain_count + queued_count:
                    invocation = await node.next_invocation("ExecuteCommand")
                    seen.add(invocation["arguments"][0]["commandId"])
            # Gone without a word.
            failed = [await p.result() for p in plain]
            async with json_node(server, token) as node:
                again = set()
                while len(again) < queued_count:
                    invocation = await node.next_invocation("ExecuteCommand")
                    command_id = invocation["arguments"][0]["commandId"]
                    assert command_id not in again, "delivered twice on one connection"
                    again.add(command_id)
                    await node.answer(invocation, {"ok": True, "result": command_id})
                done = [await p.result() for p in queued]
    for response in failed:
        assert_error(response, 502, "node disconnected")
    assert [r.status_code for r in done] == [200] * queued_count
    assert {r.json()["commandId"] for r in done} == again
    assert all(r.json()["deliveries"] == 2 for r in done)
    assert again < seen
    stored = await history(server, user, node_id)
    assert len(stored) == plain_count + queued_count
    assert all(c["status"] in ("failed", "succeeded") for c in stored)
    await assert_serving(server)


async def test_rapid_connect_disconnect_loops_leave_nothing_behind(server):
    user = make_token("flapper")
    node_id, token = await register(server, user)
    with trio.fail_after(TIMEOUT * 2):
        for n in range(30):
            url = with_query(f"{server.ws_url}{NODE_HUB}", access_token=token)
            async with trio_websocket.open_websocket_url(
                url, connect_timeout=10, disconnect_timeout=2
            ) as websocket:
                if n % 3:  # a third leave before the handshake, the rest right after it
                    client = HubClient(websocket)
                    await client.handshake()
        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(flap, server, token)
        await wait_status(server, user, node_id, "offline")
        stats = await get_stats(server.url)
        while stats["nodes"]["connections"]:
            await trio.sleep(0.05)
            stats = await get_stats(server.url)
        # The node still works after all that.
        async with json_node(server, token) as node, trio.open_nursery() as nursery:
            await wait_status(server, user, node_id, "online")
            pending = dispatch_soon(nursery, server, user, node_id, {"command": "echo"})
            await node.answer(await node.next_invocation("ExecuteCommand"), {"ok": True})
            assert (await pending.result()).status_code == 200
    await assert_serving(server)


async def flap(server: ServerProcess, token: str) -> None:
    for _ in range(5):
        async with json_node(server, token):
            pass


async def test_hundreds_of_nodes_and_a_name_race(server):
    user = make_token(name("fleet"))
    count = 300
    made: list[str] = []
    limiter = trio.CapacityLimiter(25)

    async def one(n: int) -> None:
        async with limiter:
            response = await rest(
                server, "POST", "/api/nodes", user, {"name": f"fleet-{n:03}", "scopes": ["echo"]}
            )
        assert response.status_code == 201, response.text
        made.append(response.json()["nodeId"])

    raced: list[httpx.Response] = []

    async def same_name() -> None:
        raced.append(
            await rest(server, "POST", "/api/nodes", user, {"name": "twin", "scopes": ["echo"]})
        )

    with trio.fail_after(TIMEOUT * 3):
        async with trio.open_nursery() as nursery:
            for n in range(count):
                nursery.start_soon(one, n)
            for _ in range(20):
                nursery.start_soon(same_name)
    assert sorted(r.status_code for r in raced) == [201] + [409] * 19
    for refused in raced:
        if refused.status_code == 409:
            assert_error(refused, 409, "already")
    listed = (await rest(server, "GET", "/api/nodes", user)).json()
    assert len(listed) == count + 1
    assert len({n["nodeId"] for n in listed}) == count + 1
    assert set(made) <= {n["nodeId"] for n in listed}
    created = [n["createdAt"] for n in listed]
    assert created == sorted(created)  # oldest first
    await assert_serving(server)


# -- a node's answers at the edges of the hub's own limits ----------------------------------------


async def test_two_connections_of_one_node_the_newer_leaving_keeps_it_online(server):
    """A node may hold two hub connections (a reconnect that overlaps the old
    one). While one is open the node is connected: online, and commands reach it."""
    user = make_token("twice")
    node_id, token = await register(server, user)
    with trio.fail_after(TIMEOUT):
        async with json_node(server, token) as older, trio.open_nursery() as nursery:
            await wait_status(server, user, node_id, "online")
            async with json_node(server, token):
                stats = await get_stats(server.url)
                while stats["nodes"]["connections"] < 2:
                    await trio.sleep(0.05)
                    stats = await get_stats(server.url)
            stats = await get_stats(server.url)
            while stats["nodes"]["connections"] > 1:
                await trio.sleep(0.05)
                stats = await get_stats(server.url)
            assert (await node_view(server, user, node_id))["status"] == "online"
            pending = dispatch_soon(nursery, server, user, node_id, {"command": "echo"})
            await older.answer(await older.next_invocation("ExecuteCommand"), {"ok": True})
            response = await pending.result()
    assert response.status_code == 200, response.text
    await assert_serving(server)


async def test_two_connections_of_one_node_the_older_leaving_keeps_it_online(server):
    user = make_token("twice-older")
    node_id, token = await register(server, user)
    older_gone = trio.Event()
    results: list[httpx.Response] = []

    async def newer_side(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with json_node(server, token) as newer:
            task_status.started()
            await older_gone.wait()
            async with trio.open_nursery() as inner:
                pending = dispatch_soon(inner, server, user, node_id, {"command": "echo"})
                await newer.answer(await newer.next_invocation("ExecuteCommand"), {"ok": True})
                results.append(await pending.result())

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            async with json_node(server, token):
                await wait_status(server, user, node_id, "online")
                await nursery.start(newer_side)
                stats = await get_stats(server.url)
                while stats["nodes"]["connections"] < 2:
                    await trio.sleep(0.05)
                    stats = await get_stats(server.url)
            while (await get_stats(server.url))["nodes"]["connections"] > 1:
                await trio.sleep(0.05)
            assert (await node_view(server, user, node_id))["status"] == "online"
            older_gone.set()
    assert results[0].status_code == 200, results[0].text
    await assert_serving(server)


async def test_params_larger_than_one_hub_message_are_refused_up_front(server):
    """Params that could not travel in one hub message (32 KiB by default), or
    come back in the node's echo of them, are refused before anything is sent;
    those within the limit round trip."""
    user = make_token("big-echo")
    node_id, token = await register(server, user)
    too_big = {"text": "x" * 40_000}
    fits = {"text": "x" * 16_000}
    with trio.fail_after(TIMEOUT):
        async with json_node(server, token) as node, trio.open_nursery() as nursery:
            await wait_status(server, user, node_id, "online")
            refused = await rest(
                server, "POST", f"/api/nodes/{node_id}/commands", user,
                {"command": "echo", "params": too_big},
            )  # fmt: skip
            pending = dispatch_soon(
                nursery, server, user, node_id, {"command": "echo", "params": fits}
            )
            invocation = await node.next_invocation("ExecuteCommand")
            await node.answer(invocation, {"ok": True, "result": fits})
            response = await pending.result()
    assert_error(refused, 400, "'params' may take")
    assert response.status_code == 200, response.text
    assert response.json()["result"] == fits
    assert len(await history(server, user, node_id)) == 1
    await assert_serving(server)


async def test_params_nested_deeper_than_a_hub_message_allows_are_refused_up_front(server):
    """The hub decoder takes 64 levels; an ExecuteCommand, and the node's
    Completion echoing the params, wrap them in levels of their own."""
    user = make_token("deep-echo")
    node_id, token = await register(server, user)
    deep: object = "bottom"
    for _ in range(40):
        deep = [deep]
    shallow: object = "bottom"
    for _ in range(30):
        shallow = [shallow]
    with trio.fail_after(TIMEOUT):
        async with json_node(server, token) as node, trio.open_nursery() as nursery:
            await wait_status(server, user, node_id, "online")
            refused = await rest(
                server, "POST", f"/api/nodes/{node_id}/commands", user,
                {"command": "echo", "params": deep},
            )  # fmt: skip
            pending = dispatch_soon(
                nursery, server, user, node_id, {"command": "echo", "params": shallow}
            )
            invocation = await node.next_invocation("ExecuteCommand")
            await node.answer(invocation, {"ok": True, "result": shallow})
            response = await pending.result()
    assert_error(refused, 400, "nested")
    assert response.status_code == 200, response.text
    await assert_serving(server)


async def test_msgpack_answer_with_integer_map_keys_fails_the_command_not_the_server(server):
    """MessagePack maps may have integer keys; JSON objects may not. The codec
    closes such a connection (InvalidData): the command fails, the node may come back."""
    user = make_token("int-keys")
    node_id, token = await register(server, user)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            async with msgpack_node(server, token) as node:
                await wait_status(server, user, node_id, "online")
                pending = dispatch_soon(nursery, server, user, node_id, {"command": "echo"})
                invocation = await msgpack_execute(node)
                await msgpack_answer(
                    node, invocation[2], msgpack.packb({"ok": True, "result": {1: "one"}})
                )
                close = await node.receive_close()
                assert "InvalidDataException" in close[1], close
            failed = await pending.result()
    assert_error(failed, 502)
    await assert_serving(server)


async def test_a_completion_for_another_connections_invocation_id_changes_nothing(server):
    """Invocation ids are small and guessable (s1, s2...): mallory's node sends
    Completions for every id near the one ada's node was sent, then ada's node
    answers. Only ada's answer counts."""
    ada, mallory = make_token("ada-guess"), make_token("mallory-guess", tenant="evil")
    node_id, token = await register(server, ada)
    _, intruder = await register(server, mallory, prefix="guesser")
    with trio.fail_after(TIMEOUT):
        async with (
            json_node(server, token) as node,
            json_node(server, intruder) as other,
            trio.open_nursery() as nursery,
        ):
            await wait_status(server, ada, node_id, "online")
            pending = dispatch_soon(nursery, server, ada, node_id, {"command": "echo"})
            invocation = await node.next_invocation("ExecuteCommand")
            invocation_id = invocation["invocationId"]
            number = int(invocation_id.lstrip("s") or 0)
            guesses = {invocation_id, *(f"s{n}" for n in range(max(0, number - 20), number + 20))}
            for guess in sorted(guesses):
                await other.answer({"invocationId": guess}, {"ok": True, "result": "forged"})
            # mallory's node is still fine, and still only hers.
            assert_void_completion(await invoke(other, "ScopeChanged", {"scopes": ["echo"]}))
            assert (await history(server, ada, node_id))[0]["status"] == "sent"
            await node.answer(invocation, {"ok": True, "result": "genuine"})
            response = await pending.result()
    assert response.status_code == 200 and response.json()["result"] == "genuine", response.text
    await assert_serving(server)


async def test_concurrent_revocations_and_scope_changes_answer_once(server):
    user = make_token("double-delete")
    node_id, token = await register(server, user)
    answers: list[httpx.Response] = []

    async def send(method: str, body: Any) -> None:
        answers.append(await rest(server, method, f"/api/nodes/{node_id}", user, body))

    with trio.fail_after(TIMEOUT):
        async with json_node(server, token) as node:
            await wait_status(server, user, node_id, "online")
            async with trio.open_nursery() as nursery:
                for n in range(10):
                    nursery.start_soon(send, "DELETE", None)
                    nursery.start_soon(send, "PATCH", {"scopes": [f"s{n}"]})
            told = await node.next_invocation("RevokeAccess")
            assert told["arguments"] == [{}]
    deletes = sorted(r.status_code for r in answers if r.request.method == "DELETE")
    assert deletes == [204] + [404] * 9, [r.text for r in answers]
    for response in answers:
        if response.status_code == 404:
            assert_error(response, 404, "does not exist")
        elif response.request.method == "PATCH":
            assert response.status_code == 200, response.text
    assert (await rest(server, "GET", "/api/nodes", user)).json() == []
    await assert_serving(server)


async def test_abandoned_polls_give_their_places_back(server):
    """A node that drops its long polls (a flaky network, a hostile client)
    must not hold the four places for the whole wait: the next poll gets in."""
    user = make_token("abandoner")
    _, token = await register(server, user)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(poll_once, server, token, "60", [])
            await wait_for_polls(server, 4)
            nursery.cancel_scope.cancel()  # the clients hang up
        with trio.fail_after(10):
            while (await get_stats(server.url))["nodes"]["polls_waiting"]:
                await trio.sleep(0.05)
        again = await rest(server, "GET", "/api/nodes/me/commands", token, params={"wait": "0"})
    assert again.status_code == 200, again.text
    await assert_serving(server)


async def test_a_command_is_not_lost_to_a_poll_whose_client_hung_up(server):
    user = make_token("hung-up")
    node_id, token = await register(server, user)
    assert (await rest(server, "POST", "/api/nodes/me/heartbeat", token, {})).status_code == 200
    received: list[dict[str, Any]] = []
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(poll_once, server, token, "60", [])
            await wait_for_polls(server, 1)
            nursery.cancel_scope.cancel()  # the client hangs up; the node will poll again
        async with trio.open_nursery() as nursery:
            pending = dispatch_soon(
                nursery,
                server,
                user,
                node_id,
                {"command": "echo", "queue": True, "timeoutSeconds": 6, "params": "x"},
            )
            # Whatever the server does with the orphan poll, it is done with it
            # before the node polls again (no race between the two polls).
            while (await get_stats(server.url))["nodes"]["polls_waiting"]:
                await trio.sleep(0.05)
            while not pending.done.is_set():
                response = await rest(
                    server, "GET", "/api/nodes/me/commands", token, params={"wait": "1"}
                )
                if response.status_code == 200:
                    for command in response.json()["commands"]:
                        received.append(command)
                        await rest(
                            server,
                            "POST",
                            f"/api/nodes/me/commands/{command['commandId']}/result",
                            token,
                            {"ok": True, "result": "got it"},
                        )
                else:
                    assert_error(response, 429)
                    await trio.sleep(0.1)
            response = await pending.result()
    assert [c["params"] for c in received] == ["x"]
    assert response.status_code == 200, response.text


async def test_a_node_on_long_polling_runs_commands_and_is_cut_off_when_revoked(server):
    """'Any transport': the SignalR long-polling transport is a hub connection
    like a WebSocket, for commands and for revocation."""
    from tests.support.http_transports import LongPollingClient

    user = make_token("long-poller")
    node_id, token = await register(server, user)
    hub_url = f"{server.url}{NODE_HUB}"
    with trio.fail_after(TIMEOUT):
        async with (
            httpx.AsyncClient(trust_env=False, timeout=TIMEOUT) as http,
            trio.open_nursery() as nursery,
        ):
            node = await LongPollingClient.open(http, hub_url, token)
            await wait_status(server, user, node_id, "online")
            assert (await node_view(server, user, node_id))["transport"] == "websockets"
            pending = dispatch_soon(
                nursery, server, user, node_id, {"command": "echo", "params": {"lp": 1}}
            )
            while (message := await node.receive_message()).get("target") != "ExecuteCommand":
                pass
            await node.send_record(
                {
                    "type": COMPLETION,
                    "invocationId": message["invocationId"],
                    "result": {"ok": True, "result": {"lp": 1}},
                }
            )
            response = await pending.result()
            assert response.status_code == 200 and response.json()["result"] == {"lp": 1}
            revoked = await rest(server, "DELETE", f"/api/nodes/{node_id}", user)
            assert revoked.status_code == 204, revoked.text
            seen = []
            while True:
                try:
                    message = await node.receive_message()
                except AssertionError as refused:  # the poll itself: the connection is gone
                    seen.append(str(refused))
                    break
                seen.append(message.get("target") or message.get("type"))
                if message.get("type") == CLOSE:
                    assert message.get("error") == REVOKED, message
                    break
            after = await node.poll()
            assert after.status_code in (401, 404), (after.status_code, after.text)
            refused = await negotiate_status(server, NODE_HUB, token)
            assert refused.status_code == 401, refused.text
    # Told by RevokeAccess and the Close, or by the refusal of its next poll:
    # either way the node learns why.
    assert "RevokeAccess" in seen or CLOSE in seen or REVOKED in seen[-1], seen
    await assert_serving(server)


async def test_a_node_that_never_reads_hurts_only_its_own_commands(server):
    """The node's socket fills up (it reads nothing): its commands time out,
    every other node and the server carry on."""
    user = make_token("deaf")
    node_id, token = await register(server, user)
    url = with_query(f"{server.ws_url}{NODE_HUB}", access_token=token)
    blob = "b" * 15_000  # within the 16 KiB a command's params may take
    count = 120
    with trio.fail_after(TIMEOUT * 2):
        async with trio_websocket.open_websocket_url(
            url, message_queue_size=1, connect_timeout=10, disconnect_timeout=2
        ) as websocket:
            await HubClient(websocket).send_raw('{"protocol":"json","version":1}\x1e')
            await wait_status(server, user, node_id, "online")
            async with trio.open_nursery() as nursery:
                pending = [
                    dispatch_soon(
                        nursery,
                        server,
                        user,
                        node_id,
                        {"command": "echo", "params": {"n": n, "blob": blob}, "timeoutSeconds": 4},
                    )
                    for n in range(count)
                ]
                await assert_serving(server)  # meanwhile, others are served
                responses = [await p.result() for p in pending]
    for response in responses:
        assert response.status_code in (502, 504), response.text[:300]
        assert_error(response, response.status_code)
    stored = await history(server, user, node_id)
    assert len(stored) == count and all(c["status"] in ("failed", "timedOut") for c in stored)
    await assert_serving(server)

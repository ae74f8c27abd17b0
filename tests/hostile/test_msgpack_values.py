"""MessagePack nesting, and NaN / Infinity in both protocols (issue 8, case 3).

MessagePack counts nesting like JSON (``max_nesting_depth``, 64 by default) and
can carry NaN; JSON cannot (RFC 8259 section 6: "Numeric values that cannot be
represented ... (such as Infinity and NaN) are not permitted"). A NaN sent by a
MessagePack client to a group with JSON members must not break the group, the
JSON members, or the server.
"""

from __future__ import annotations

import math

import msgpack
import pytest
import trio

from tests.hostile.helpers import (
    INVALID_DATA,
    NEIGHBOURS,
    TIMEOUT,
    assert_invalid_data_close,
    assert_quiet_log,
    invocation_text,
    log_mark,
    make_token,
    msgpack_invocation,
    open_client,
    open_msgpack_client,
    receive_json_close,
    wait_ws_closed,
)


async def test_msgpack_echo_nested_400_deep_closes_only_that_connection(server, neighbour):
    deep = b"\x91" * 399 + b"\x90"  # 400 arrays, the innermost empty
    mark = log_mark(server)
    with trio.fail_after(TIMEOUT):
        async with open_msgpack_client(server, make_token("alice")) as client:
            await client.send_record(msgpack_invocation("1", "Echo", deep, 1))
            close = await client.receive_close()
    # [7, Error, AllowReconnect] (HubProtocol.md, "MessagePack (MsgPack) encoding").
    assert isinstance(close[1], str) and close[1].startswith(INVALID_DATA), close
    await neighbour.check()
    assert_quiet_log(server, mark)


async def test_msgpack_echo_nested_60_deep_is_answered_unchanged(server, neighbour):
    with trio.fail_after(TIMEOUT):
        async with open_msgpack_client(server, make_token("alice")) as client:
            completion = await client.invoke("1", "Echo", b"\x91" * 59 + b"\x90")
    value: list = []
    for _ in range(59):
        value = [value]
    assert completion[3:] == [3, value], completion
    await neighbour.check()


async def test_msgpack_echo_of_nan_returns_nan(server, neighbour):
    with trio.fail_after(TIMEOUT):
        async with open_msgpack_client(server, make_token("alice")) as client:
            completion = await client.invoke("1", "Echo", msgpack.packb(math.nan))
    assert completion[3] == 3, completion  # NonVoidResult
    assert isinstance(completion[4], float) and math.isnan(completion[4]), completion
    await neighbour.check()


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
async def test_json_non_json_number_literal_closes_with_invalid_data(server, neighbour, literal):
    mark = log_mark(server)
    with trio.fail_after(TIMEOUT):
        async with open_client(server, make_token("alice")) as client:
            await client.send_raw(invocation_text(literal))
            assert_invalid_data_close(await receive_json_close(client))
            await wait_ws_closed(client)
    await neighbour.check()
    assert_quiet_log(server, mark)


@pytest.mark.parametrize("value", [math.nan, math.inf], ids=["nan", "infinity"])
async def test_msgpack_send_to_group_of_nan_completes_and_spares_json_members(
        server, neighbour, value):
    arguments = msgpack.packb(NEIGHBOURS) + msgpack.packb(value)
    with trio.fail_after(TIMEOUT):
        async with open_msgpack_client(server, make_token("alice")) as client:
            completion = await client.invoke("1", "SendToGroup", arguments, count=2)
            # [3, headers, id, 1 error | 2 void | 3 result, ...]: it completed, either way.
            assert completion[3] in (1, 2, 3), completion
            # The sender's connection still works.
            echoed = await client.invoke("2", "Echo", msgpack.packb("still here"))
            assert echoed[3:] == [3, "still here"], echoed
    # The neighbour parses strictly: a NaN sent to it as JSON fails the check.
    await neighbour.check()

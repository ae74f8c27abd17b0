"""Deep nesting and huge integers in JSON (issue 8, cases 1 and 2).

``max_nesting_depth`` (default 64) counts arrays and objects over the whole hub
message document; integers of more than 20 digits are refused. A message over
either limit closes only its own connection, with a Close whose error is an
``InvalidDataException`` (HubProtocol.md, "Close"), and is logged in one line at
info level. The same document in a handshake gets a handshake error; over long
polling the connection ends.
"""

from __future__ import annotations

import re

import httpx
import pytest
import trio

from tests.hostile.helpers import (
    INVALID_DATA,
    SECRET,
    TIMEOUT,
    assert_invalid_data_close,
    assert_quiet_log,
    invocation_text,
    log_mark,
    make_token,
    nested_json,
    nested_list,
    open_client,
    open_neighbour,
    receive_json_close,
    strict_loads,
    wait_ws_closed,
)
from tests.support.http_transports import LongPollingClient

SERVER_SETTINGS = {"long_polling_timeout": "3"}
DEEP = 15_000
HUGE_INTEGER = "7" * 5_000
TWENTY_DIGITS = 12345678901234567890


def mentions_depth(error: str) -> bool:
    return re.search(r"depth|nest", error, re.IGNORECASE) is not None


async def assert_closed_for_invalid_data(server, record: str) -> dict:
    """Send ``record`` as alice; the server answers with an InvalidDataException
    Close and ends the WebSocket. Returns the Close."""
    async with open_client(server, make_token("alice")) as client:
        await client.send_raw(record)
        close = await receive_json_close(client)
        assert_invalid_data_close(close)
        await wait_ws_closed(client)
    return close


async def handshake_error_for(server, handshake: str) -> str:
    """Send ``handshake`` as the first record; return the handshake response's
    error (the WebSocket must then be closed)."""
    async with open_client(server, make_token("alice"), handshake=False) as client:
        await client.send_raw(handshake)
        response = strict_loads(await client.receive_record())
        assert set(response) == {"error"}, response
        await wait_ws_closed(client)
    return response["error"]


# -- nesting ------------------------------------------------------------------------------------


async def test_json_invocation_nested_15000_deep_closes_only_that_connection(server, neighbour):
    record = invocation_text(nested_json(DEEP))
    assert len(record.encode()) < 32 * 1024
    mark = log_mark(server)
    with trio.fail_after(TIMEOUT):
        close = await assert_closed_for_invalid_data(server, record)
    assert mentions_depth(close["error"]), close
    await neighbour.check()
    assert_quiet_log(server, mark)


async def test_json_handshake_nested_15000_deep_gets_handshake_error(server, neighbour):
    handshake = '{"protocol":"json","version":1,"x":' + nested_json(DEEP) + "}\x1e"
    mark = log_mark(server)
    with trio.fail_after(TIMEOUT):
        error = await handshake_error_for(server, handshake)
    assert error
    await neighbour.check()
    assert_quiet_log(server, mark)


async def test_json_long_polling_nested_15000_deep_ends_that_connection(server, neighbour):
    mark = log_mark(server)
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient(base_url=server.url) as http:
            client = await LongPollingClient.open(http, server.hub_url(), make_token("alice"))
            await client.post(invocation_text(nested_json(DEEP)))
            # TransportProtocols.md, "Long Polling": the connection is over when a
            # poll returns 204; the Close record may come first.
            while True:
                response = await client.poll()
                if response.status_code == 204:
                    break
                assert response.status_code == 200, (response.status_code, response.text)
                records = [strict_loads(r) for r in response.text.split("\x1e") if r]
                closes = [r for r in records if r.get("type") == 7]
                if closes:
                    assert closes[0]["error"].startswith(INVALID_DATA), closes
                    break
    await neighbour.check()
    assert_quiet_log(server, mark)


async def test_json_echo_nested_60_deep_is_answered_unchanged(server, neighbour):
    value = nested_list(60)
    with trio.fail_after(TIMEOUT):
        async with open_client(server, make_token("alice")) as client:
            assert await client.call("Echo", value) == value
    await neighbour.check()


async def test_json_echo_nested_70_deep_is_refused_over_the_default_depth_64(server, neighbour):
    mark = log_mark(server)
    with trio.fail_after(TIMEOUT):
        close = await assert_closed_for_invalid_data(server, invocation_text(nested_json(70)))
    assert mentions_depth(close["error"]), close
    await neighbour.check()
    assert_quiet_log(server, mark)


async def test_json_object_nesting_counts_like_arrays(server, neighbour):
    deep_objects = '{"a":' * 70 + "1" + "}" * 70
    with trio.fail_after(TIMEOUT):
        close = await assert_closed_for_invalid_data(server, invocation_text(deep_objects))
    assert mentions_depth(close["error"]), close
    await neighbour.check()


async def test_json_max_nesting_depth_setting_lowers_the_limit(start_server):
    server = start_server({"jwt_secret": SECRET, "max_nesting_depth": "10"})
    async with open_neighbour(server) as neighbour:
        with trio.fail_after(TIMEOUT):
            async with open_client(server, make_token("alice")) as client:
                assert await client.call("Echo", nested_list(5)) == nested_list(5)
            close = await assert_closed_for_invalid_data(server, invocation_text(nested_json(12)))
        assert mentions_depth(close["error"]), close
        await neighbour.check()


# -- huge integers ------------------------------------------------------------------------------


async def test_json_echo_of_5000_digit_integer_closes_only_that_connection(server, neighbour):
    mark = log_mark(server)
    with trio.fail_after(TIMEOUT):
        await assert_closed_for_invalid_data(server, invocation_text(HUGE_INTEGER))
    await neighbour.check()
    assert_quiet_log(server, mark)


@pytest.mark.parametrize("digits", [21, 5_000])
async def test_json_handshake_version_with_many_digits_gets_handshake_error(
        server, neighbour, digits):
    with trio.fail_after(TIMEOUT):
        error = await handshake_error_for(
            server, '{"protocol":"json","version":' + "1" * digits + "}\x1e")
    assert error
    await neighbour.check()


async def test_json_echo_of_21_digit_integer_is_refused(server, neighbour):
    with trio.fail_after(TIMEOUT):
        await assert_closed_for_invalid_data(server, invocation_text("1" * 21))
    await neighbour.check()


async def test_json_echo_of_20_digit_integer_is_answered_as_that_number(server, neighbour):
    with trio.fail_after(TIMEOUT):
        async with open_client(server, make_token("alice")) as client:
            await client.send_raw(invocation_text(str(TWENTY_DIGITS), invocation_id="20"))
            completion = await client.receive_completion("20")
    assert "error" not in completion, completion
    assert completion["result"] == TWENTY_DIGITS, completion
    await neighbour.check()

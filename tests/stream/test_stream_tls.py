"""``/v1/stream`` with TLS on (issue 19: "/v1/* takes the ASGI path, as hub WebSockets
do"): hypercorn terminates TLS and the stream is served through ASGI, with the same
subprotocol answer, events, close codes and limits as on voisnap's own path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import trustme

from tests.support.server import ServerProcess
from tests.support.stream_client import check_invariants, open_stream
from tests.transports.test_tls_and_logs import _client_context, _tls_files


async def test_the_stream_over_tls(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    ca = trustme.CA()
    certfile, keyfile = _tls_files(ca, tmp_path)
    server = start_server(
        settings={"agent_token_delay": "0.002", "plain_ws_max_frame": "2048"},
        args=["--certfile", str(certfile), "--keyfile", str(keyfile)],
    )
    context = _client_context(ca)
    token = server.token()
    async with open_stream(server, token, ssl_context=context) as client:
        assert client.ws.subprotocol == f"Bearer.{token}"
        await client.send({"type": "task.submit", "prompt": "what is 12 * 7"})
        ready = await client.until_type("session.ready")
        await client.until_type("task:done")
        await client.ws.send_message("not json")
        assert (await client.next())["code"] == "BAD_REQUEST"
        tokens = client.of_type("task:token")
        assert len(tokens) >= 1 and len({id(t) for t in tokens}) == len(tokens)
    check_invariants(client.log)
    async with open_stream(server, token, via="query", ssl_context=context) as again:
        await again.send({"type": "session.resume", "session_id": ready["session_id"]})
        await again.until_type("session.replay_end")
        await again.send({"type": "task.submit", "prompt": "x" * 3000})
        assert await again.closed_with() == 1009
    check_invariants(again.log)
    async with open_stream(server, "forged", ssl_context=context) as refused:
        assert await refused.closed_with() == 4001
    assert refused.log[0]["code"] == "UNAUTHORIZED"

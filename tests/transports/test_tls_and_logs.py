"""TLS in the same process, proxy headers, and tokens kept out of the logs.

With ``--certfile/--keyfile`` every connection goes to hypercorn, which
terminates TLS; hub WebSockets then take the ASGI path. ``--proxy-headers``
makes hypercorn trust ``X-Forwarded-For``. Access logs (``--access-log``) of
both doors redact ``access_token``.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import trio
import trustme
from trio_websocket import open_websocket_url

from tests.support.server import ServerProcess

RS = "\x1e"


@pytest.fixture
def certificate_authority() -> trustme.CA:
    return trustme.CA()


def _tls_files(ca: trustme.CA, directory: Path) -> tuple[Path, Path]:
    certificate = ca.issue_cert("127.0.0.1")
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    certificate.cert_chain_pems[0].write_to_path(certfile)
    certificate.private_key_pem.write_to_path(keyfile)
    return certfile, keyfile


def _client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def test_tls_serves_http_and_hub_websockets(
    start_server: Callable[..., ServerProcess], certificate_authority: trustme.CA, tmp_path: Path
) -> None:
    certfile, keyfile = _tls_files(certificate_authority, tmp_path)
    server = start_server(args=["--certfile", str(certfile), "--keyfile", str(keyfile)])
    assert server.url.startswith("https://")
    context = _client_context(certificate_authority)

    async with httpx.AsyncClient(verify=context) as http:
        health = await http.get(f"{server.url}/healthz")
        assert health.status_code == 200

    url = f"wss://127.0.0.1:{server.port}/hubs/playground?access_token={server.token()}"
    with trio.fail_after(10):
        async with open_websocket_url(url, ssl_context=context) as ws:
            await ws.send_message('{"protocol":"json","version":1}' + RS)
            assert await ws.get_message() == "{}" + RS
            await ws.send_message(
                '{"type":1,"invocationId":"1","target":"Echo","arguments":["over tls"]}' + RS
            )
            reply = json.loads((await ws.get_message()).rstrip(RS))
            assert reply == {"type": 3, "invocationId": "1", "result": "over tls"}


async def test_tls_refuses_plain_http(
    start_server: Callable[..., ServerProcess], certificate_authority: trustme.CA, tmp_path: Path
) -> None:
    certfile, keyfile = _tls_files(certificate_authority, tmp_path)
    server = start_server(args=["--certfile", str(certfile), "--keyfile", str(keyfile)])
    with trio.fail_after(10):
        async with httpx.AsyncClient() as http:
            with pytest.raises(httpx.HTTPError):
                await http.get(f"http://127.0.0.1:{server.port}/healthz")


async def test_access_log_redacts_tokens_on_both_doors(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server(args=["--access-log"])
    token = server.token()
    async with httpx.AsyncClient() as http:
        negotiated = await http.post(f"{server.hub_url()}/negotiate?access_token={token}")
        assert negotiated.status_code == 200
    with trio.fail_after(10):
        async with open_websocket_url(f"{server.ws_url}/hubs/playground?access_token={token}"):
            pass
        await _wait_for_log(server, lambda log: log.count("access_token=[redacted]") >= 2)
    assert token not in server.log
    assert "websocket" in server.log and "/negotiate" in server.log


async def test_proxy_headers_are_trusted_only_when_asked(
    start_server: Callable[..., ServerProcess],
) -> None:
    forwarded = {"X-Forwarded-For": "203.0.113.9"}
    trusting = start_server(args=["--access-log", "--proxy-headers"])
    plain = start_server(args=["--access-log"], data_dir=trusting.data_dir)
    async with httpx.AsyncClient() as http:
        for server in (trusting, plain):
            assert (await http.get(f"{server.url}/healthz", headers=forwarded)).status_code == 200
    with trio.fail_after(10):
        await _wait_for_log(trusting, lambda log: "/healthz" in log)
        await _wait_for_log(plain, lambda log: "/healthz" in log)
    assert "203.0.113.9" in trusting.log
    assert "203.0.113.9" not in plain.log


async def _wait_for_log(server: ServerProcess, ready: Callable[[str], bool]) -> None:
    """The log is written by another process: poll it until it shows what we wait for."""
    while not ready(server.log):
        await trio.sleep(0.02)

"""API tokens (issue 19; docs/api-tokens.md) against a real ``voisnap serve``:
made with a user's JWT (REST or ``voisnap token --api``), shown once, stored
only as a hash, accepted on REST, refused on the SignalR hubs, revoked at once."""

from __future__ import annotations

import datetime
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import FAST_SETTINGS
from tests.support.server import ServerProcess
from voisnap.apps.api_tokens import ApiTokens
from voisnap.apps.api_tokens.tokens import secret_hash
from voisnap.errors import AuthenticationError
from voisnap.storage.base import Owner
from voisnap.storage.sqlite import SqliteStore

TIMEOUT = 10.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data_dir = tmp_path_factory.mktemp("api-tokens") / "data"
    with ServerProcess(data_dir, FAST_SETTINGS) as started:
        yield started


def call(server: ServerProcess, method: str, path: str, token: str | None,
         body: Any = None) -> httpx.Response:
    headers = {} if token is None else {"authorization": f"Bearer {token}"}
    return httpx.request(method, server.url + path, json=body, headers=headers, timeout=TIMEOUT)


def make(server: ServerProcess, jwt: str, **body: Any) -> dict[str, Any]:
    response = call(server, "POST", "/api/tokens", jwt, {"name": "laptop", **body})
    assert response.status_code == 201, response.text
    return response.json()


def test_a_token_is_shown_once_and_then_speaks_for_its_user(server: ServerProcess) -> None:
    jwt = server.token("ann", "acme")
    made = make(server, jwt, name="ci runner")
    secret = made.pop("token")
    assert secret.startswith("rc_") and len(secret) == 3 + 43
    assert set(made) == {"id", "name", "roles", "createdAt", "expiresAt"}
    assert made["name"] == "ci runner" and made["expiresAt"] is None
    listed = call(server, "GET", "/api/tokens", jwt).json()
    assert made in listed and all("token" not in entry for entry in listed)
    # It speaks for Ann on REST: her sessions, not anyone else's.
    assert call(server, "GET", "/sessions", secret).status_code == 200
    assert call(server, "GET", "/api/tokens", secret).json() == listed
    # Stored only as a hash: the secret is nowhere in the database file.
    database = server.data_dir / "voisnap.db"
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT secret_hash FROM api_tokens").fetchall()
    assert (secret_hash(secret),) in rows
    assert secret.encode() not in database.read_bytes()


def test_hubs_refuse_api_tokens(server: ServerProcess) -> None:
    """Seed 002: "API keys cannot be used for real-time hub connections"."""
    secret = make(server, server.token("ben", "acme"))["token"]
    negotiate = call(server, "POST", "/hubs/chat/negotiate?negotiateVersion=1", secret)
    assert negotiate.status_code == 401
    assert "API tokens cannot be used for hub connections" in negotiate.text
    voisnap = call(server, "POST", "/voisnap/hubs/chat/negotiate?agentId=sophon", secret)
    assert voisnap.status_code == 401
    assert upgrade_status(server, f"/hubs/chat?access_token={secret}") == 401


def upgrade_status(server: ServerProcess, target: str) -> int:
    """The status of a WebSocket upgrade (voisnap's own WebSocket path)."""
    request = (
        f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(request.encode())
        return int(sock.recv(4096).split(b" ", 2)[1])


def test_a_revoked_token_is_refused_at_once(server: ServerProcess) -> None:
    jwt = server.token("cleo", "acme")
    made = make(server, jwt)
    assert call(server, "GET", "/sessions", made["token"]).status_code == 200
    assert call(server, "DELETE", f"/api/tokens/{made['id']}", jwt).status_code == 204
    refused = call(server, "GET", "/sessions", made["token"])
    assert refused.status_code == 401 and "revoked" in refused.text
    assert call(server, "GET", "/api/tokens", jwt).json() == []
    assert call(server, "DELETE", f"/api/tokens/{made['id']}", jwt).status_code == 204


def test_only_a_users_jwt_makes_tokens_and_only_its_own_roles(server: ServerProcess) -> None:
    jwt = server.token("dan", "acme")
    secret = make(server, jwt)["token"]
    by_token = call(server, "POST", "/api/tokens", secret, {"name": "copy"})
    assert by_token.status_code == 403
    roles = call(server, "POST", "/api/tokens", jwt, {"name": "x", "roles": ["admin"]})
    assert roles.status_code == 403
    admin = server.token("dan", "acme", roles=["admin"])
    assert make(server, admin, roles=["admin"])["roles"] == ["admin"]
    node = call(server, "POST", "/api/nodes", jwt, {"name": "box", "scopes": ["echo"]}).json()
    assert call(server, "POST", "/api/tokens", node["token"], {"name": "n"}).status_code == 403


@pytest.mark.parametrize("body", [
    None, [], "laptop", {}, {"name": ""}, {"name": "x" * 101}, {"name": 5},
    {"name": "a", "roles": "admin"}, {"name": "a", "roles": [1]},
    {"name": "a", "ttlSeconds": "60"}, {"name": "a", "ttlSeconds": True},
    {"name": "a", "ttlSeconds": 59}, {"name": "a", "ttlSeconds": 1e12},
])
def test_a_bad_request_for_a_token_is_400(server: ServerProcess, body: Any) -> None:
    response = call(server, "POST", "/api/tokens", server.token("eve", "acme"), body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]


def test_tokens_are_their_owners(server: ServerProcess) -> None:
    made = make(server, server.token("fay", "acme"))
    for other in (server.token("gus", "acme"), server.token("fay", "globex")):
        assert call(server, "DELETE", f"/api/tokens/{made['id']}", other).status_code == 404
        assert made["id"] not in [t["id"] for t in call(server, "GET", "/api/tokens", other).json()]
    assert call(server, "GET", "/sessions", made["token"]).status_code == 200


@pytest.mark.parametrize("secret", ["rc_", "rc_nope", "rc_" + "A" * 43, "rc_\u00e9t\u00e9"])
def test_unknown_api_tokens_are_401(server: ServerProcess, secret: str) -> None:
    response = httpx.get(server.url + "/sessions", params={"access_token": secret}, timeout=10)
    assert response.status_code == 401 and "invalid" in response.text


def test_the_cli_makes_a_token_in_the_servers_store(server: ServerProcess) -> None:
    made = subprocess.run(
        [sys.executable, "-m", "voisnap", "token", "--user", "hal", "--tenant", "acme",
         "--api", "deploy script", "--data-dir", str(server.data_dir)],
        capture_output=True, text=True, timeout=60, check=True,
    )
    secret = made.stdout.strip()
    assert secret.startswith("rc_")
    assert call(server, "GET", "/sessions", secret).status_code == 200
    listed = call(server, "GET", "/api/tokens", server.token("hal", "acme")).json()
    assert [t["name"] for t in listed] == ["deploy script"]


class Clock:
    def __init__(self, now: datetime.datetime) -> None:
        self.moment = now

    def now(self) -> datetime.datetime:
        return self.moment

    async def sleep_until(self, moment: datetime.datetime) -> None:
        raise NotImplementedError


async def test_a_token_expires_at_its_time(tmp_path: Path) -> None:
    clock = Clock(datetime.datetime(2026, 12, 7, tzinfo=datetime.UTC))
    store = SqliteStore(tmp_path / "voisnap.db")
    await store.open()
    try:
        tokens = ApiTokens(store, clock)
        made, secret = await tokens.issue(Owner("acme", "ann"), "short", ("ops",), ttl=60)
        principal = await tokens.principal_of(secret)
        assert (principal.user_id, principal.tenant_id, principal.roles) == (
            "ann", "acme", frozenset({"ops"}))
        assert principal.expires_at == made.expires_at.timestamp()
        clock.moment += datetime.timedelta(seconds=60)
        with pytest.raises(AuthenticationError, match="expired"):
            await tokens.principal_of(secret)
    finally:
        await store.aclose()

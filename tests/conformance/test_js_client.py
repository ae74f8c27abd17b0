"""The official ``@microsoft/signalr`` 10.0.11 client (Node) against ``voisnap serve``.

Like aspnetcore's ``src/SignalR/clients/ts/FunctionalTests/ts/HubConnectionTests.ts``:
each test runs a scenario script from ``js/`` (see ``tests/support/node.py`` for
the contract) against a real server process on 127.0.0.1, port 0, and checks
what the client saw. The hub is ``/hubs/playground`` (``voisnap/apps/playground.py``).

- Tests that leave no state behind share one server per module (``hub``).
- Tests that stop, restart or time out a server get their own, with the shrunk
  timeouts of ``tests/conftest.py`` (``start_server``).
- Nothing waits on the wall clock for an event: the scripts wait for callbacks
  and wire records with deadlines, and Python and Node synchronise through lines
  on stdout ("ready") and stdin ("go"). "Did not receive" is proven with a
  fence, a round trip that arrives behind anything sent before it.

Transport: WebSockets with the JSON protocol. The scripts take ``transport``
and ``protocol`` inputs, for ServerSentEvents, LongPolling and MessagePack when
voisnap serves them.
"""

from __future__ import annotations

import base64
import json
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest

from tests.support.node import NodeScenario, run_scenario
from tests.support.server import ServerProcess

pytestmark = pytest.mark.conformance

# The servers of start_server close a client silent for 3 s (client_timeout,
# armed by the client's first Ping, which this client sends right after the
# handshake), so the client pings every second instead of every 15.
CLIENT = {"transport": "WebSockets", "protocol": "json", "keepAliveMs": 1000}
RECONNECT_DELAYS = [0, 100, 200, 500, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000]
UNKNOWN_METHOD = (
    "Failed to invoke 'NoSuchMethod' due to an error on the server. "
    "HubException: Method does not exist."
)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the tests that leave no state behind (default settings)."""
    with ServerProcess(tmp_path_factory.mktemp("conformance") / "data") as server:
        yield server


def scenario(server: ServerProcess, script: str, timeout: float = 30.0, **params: Any) -> dict:
    return run_scenario(script, timeout, url=server.hub_url(), **CLIENT, **params)


# -- tokens made by hand -----------------------------------------------------------------------


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "mallory", "tid": "acme", "roles": [], "iat": now, "exp": now + 3600,
            **overrides}


def _b64url(document: dict[str, Any]) -> str:
    raw = json.dumps(document, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unsigned_token(claims: dict[str, Any]) -> str:
    """An ``alg: none`` JWT: header, claims and an empty signature."""
    return f"{_b64url({'alg': 'none', 'typ': 'JWT'})}.{_b64url(claims)}."


def server_secret(server: ServerProcess) -> bytes:
    return (server.data_dir / "jwt-secret").read_bytes().strip()


def expiry_of(token: str) -> float:
    return float(jwt.decode(token, options={"verify_signature": False})["exp"])


# -- connecting --------------------------------------------------------------------------------


def test_connect_with_token_from_voisnap_token(hub: ServerProcess) -> None:
    result = scenario(hub, "connect.mjs", token=hub.token("alice", "acme"))
    assert result["started"] is True, result
    assert result["connectionId"]
    assert result["echoed"] == "hello"


def test_negotiate_without_token_is_401(hub: ServerProcess) -> None:
    result = scenario(hub, "connect.mjs", token=None)
    assert result["started"] is False
    assert "401" in result["error"], result["error"]


def test_negotiate_with_expired_token_is_401(hub: ServerProcess) -> None:
    result = scenario(hub, "connect.mjs", token=hub.token("alice", "acme", ttl=-10))
    assert result["started"] is False
    assert "401" in result["error"], result["error"]


def test_negotiate_with_token_signed_by_another_secret_is_401(hub: ServerProcess) -> None:
    token = jwt.encode(_claims(), b"not the server's secret, but long enough", algorithm="HS256")
    result = scenario(hub, "connect.mjs", token=token)
    assert result["started"] is False
    assert "401" in result["error"], result["error"]


def test_negotiate_with_hand_made_token_signed_by_server_secret_connects(
    hub: ServerProcess,
) -> None:
    """The control for the two tests around it: the same claims, signed with the
    server's own secret, are accepted, so a 401 there is the signature's doing."""
    token = jwt.encode(_claims(), server_secret(hub), algorithm="HS256")
    result = scenario(hub, "connect.mjs", token=token)
    assert result["started"] is True, result


def test_negotiate_with_alg_none_token_is_401(hub: ServerProcess) -> None:
    result = scenario(hub, "connect.mjs", token=unsigned_token(_claims()))
    assert result["started"] is False
    assert "401" in result["error"], result["error"]


def test_websocket_skip_negotiation_with_token_connects(hub: ServerProcess) -> None:
    result = scenario(hub, "connect.mjs", token=hub.token("alice", "acme"), skipNegotiation=True)
    assert result["started"] is True, result
    assert result["echoed"] == "hello"


@pytest.mark.parametrize("kind", ["missing", "expired", "other-secret", "alg-none"])
def test_websocket_skip_negotiation_with_bad_token_is_401(hub: ServerProcess, kind: str) -> None:
    token = {
        "missing": None,
        "expired": hub.token("alice", "acme", ttl=-10),
        "other-secret": jwt.encode(_claims(), b"another secret of a decent length", "HS256"),
        "alg-none": unsigned_token(_claims()),
    }[kind]
    result = scenario(hub, "connect.mjs", token=token, skipNegotiation=True)
    assert result["started"] is False, result
    # The client only says the transport failed; the socket saw the status.
    assert any("401" in error for error in result["socketErrors"]), result


# -- invocations -------------------------------------------------------------------------------


def test_echo_returns_nested_json(hub: ServerProcess) -> None:
    value = {
        "text": "héllo ✓ \u2028",
        "number": -12.5,
        "big": 2**53 - 1,
        "flags": [True, False, None],
        "nested": {"list": [[1, 2], {"deep": {"deeper": []}}], "empty": {}},
    }
    result = scenario(hub, "invoke.mjs", token=hub.token(), method="Echo", args=[value])
    assert result["ok"] is True, result
    assert result["value"] == value


def test_hub_method_unknown_is_rejected_with_aspnet_text(hub: ServerProcess) -> None:
    result = scenario(hub, "invoke.mjs", token=hub.token(), method="NoSuchMethod", args=[1])
    assert result["ok"] is False
    assert result["error"] == UNKNOWN_METHOD


def test_stream_counter_items_in_order_then_completion(hub: ServerProcess) -> None:
    result = scenario(hub, "stream.mjs", token=hub.token(), count=10, delayMs=5)
    assert result["completed"] is True
    assert result["items"] == list(range(10))


def test_stream_dispose_cancels_server_stream(hub: ServerProcess) -> None:
    """subscription.dispose() sends CancelInvocation: the server stops the
    Counter (which would otherwise run for a minute) and ends it with a
    Completion without an error (HubProtocol.md, "CancelInvocation")."""
    result = scenario(hub, "stream.mjs", token=hub.token(), count=3000, delayMs=20, cancelAfter=3)
    assert result["itemsBeforeCancel"] == [0, 1, 2]
    assert "error" not in result["completion"], result["completion"]
    assert "result" not in result["completion"], result["completion"]
    assert result["itemsAfterCompletion"] == 0
    assert result["itemsOnWire"] < 100


def test_upload_sum_of_subject_stream(hub: ServerProcess) -> None:
    numbers = [1, 2, 3.5, 10, -4, 100]
    result = scenario(hub, "upload.mjs", token=hub.token(), numbers=numbers)
    assert result["value"] == sum(numbers)


def test_client_result_ask_is_answered_by_prompt_handler(hub: ServerProcess) -> None:
    answer = {"answer": 42, "why": ["deep", "thought"]}
    result = scenario(hub, "invoke.mjs", token=hub.token(), method="Ask",
                      args=["What is six times seven?"], promptAnswer=answer)
    assert result["ok"] is True, result
    assert result["prompts"] == ["What is six times seven?"]
    assert result["value"] == answer


def test_client_result_prompt_handler_error_rejects_invoke(hub: ServerProcess) -> None:
    result = scenario(hub, "invoke.mjs", token=hub.token(), method="Ask",
                      args=["Will you fail?"], promptError="the client says no")
    assert result["ok"] is False, result
    assert result["prompts"] == ["Will you fail?"]
    # The JS client answers `${exception}`; ASP.NET wraps it as a HubException.
    assert "Error: the client says no" in result["error"], result["error"]


# -- groups and broadcast ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def groups_received(hub: ServerProcess) -> dict[str, list]:
    """Who received what in ``groups.mjs`` (run once for the tests below)."""
    tokens = {
        "sam": hub.token("sam", "acme"),
        "alice": hub.token("alice", "acme"),
        "bob": hub.token("bob", "acme"),
        "carol": hub.token("carol", "globex"),
        "dave": hub.token("dave", "globex"),
    }
    return scenario(hub, "groups.mjs", tokens=tokens, group="room")["received"]


def test_groups_member_receives_group_message(groups_received: dict[str, list]) -> None:
    assert groups_received["sam"] == ["acme-1", "acme-2"]
    assert groups_received["alice"][:1] == ["acme-1"]
    assert groups_received["carol"] == ["globex-1"]


def test_groups_non_member_does_not_receive(groups_received: dict[str, list]) -> None:
    assert groups_received["bob"] == []
    assert groups_received["dave"] == []


def test_groups_same_name_in_another_tenant_does_not_receive(
    groups_received: dict[str, list],
) -> None:
    assert "acme-1" not in groups_received["carol"]
    assert "acme-2" not in groups_received["carol"]
    assert "globex-1" not in groups_received["sam"] + groups_received["alice"]


def test_groups_leave_group_stops_delivery(groups_received: dict[str, list]) -> None:
    assert groups_received["alice"] == ["acme-1"]
    assert "acme-2" in groups_received["sam"]  # it was sent, to the members left


def test_broadcast_stays_within_tenant(hub: ServerProcess) -> None:
    tokens = {
        "alice": hub.token("alice", "acme"),
        "bob": hub.token("bob", "acme"),
        "carol": hub.token("carol", "globex"),
    }
    received = scenario(hub, "broadcast.mjs", tokens=tokens)["received"]
    assert received == {
        "alice": ["acme-all"],
        "bob": ["acme-all"],
        "carol": ["globex-all"],
    }


# -- server restarts, shutdown and token expiry ------------------------------------------------


@pytest.mark.parametrize(
    "stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"]
)
def test_reconnect_after_server_restart_on_same_port(
    start_server: Callable[..., ServerProcess], stop_signal: signal.Signals
) -> None:
    """SIGTERM: the server sends Close with allowReconnect, which the client
    treats as a lost transport; SIGKILL: the socket just drops. Either way the
    client reconnects to the new process (same port, same data dir, so the same
    token stays valid) with a new connection id."""
    server = start_server()
    params = {"url": server.hub_url(), **CLIENT, "tokens": [server.token("alice", "acme")],
              "reconnectDelays": RECONNECT_DELAYS, "waitForGo": True}
    with NodeScenario("reconnect.mjs", params, timeout=40) as client:
        client.wait_for("ready")
        code = server.stop(stop_signal)
        reconnecting = client.wait_for("reconnecting", timeout=10)
        start_server(port=server.port, data_dir=server.data_dir)
        client.send_line("go")
        result = client.result()
    if stop_signal == signal.SIGTERM:
        assert code == 0
        assert "Server is shutting down." in reconnecting["error"], reconnecting
    else:  # no Close: the socket just ended
        assert "1006" in reconnecting["error"], reconnecting
    assert result["events"] == ["reconnecting", "reconnected"]
    assert result["reconnectedId"] and result["reconnectedId"] != result["firstId"]
    assert result["echoed"] == "after reconnect"


def test_shutdown_closes_clients_and_exits_zero(
    start_server: Callable[..., ServerProcess],
) -> None:
    """SIGTERM: every client gets Close("Server is shutting down.",
    allowReconnect) and the process exits 0 within its shutdown_timeout (2 s
    here) plus a margin. Without automatic reconnect the client just closes."""
    server = start_server()
    params = {"url": server.hub_url(), **CLIENT, "token": server.token()}
    with NodeScenario("closing.mjs", params) as client:
        client.wait_for("ready")
        began = time.monotonic()
        code = server.stop(signal.SIGTERM)
        took = time.monotonic() - began
        result = client.result()
    assert code == 0, "".join(server.stderr_lines[-40:])
    assert took < 4.0, f"voisnap serve took {took:.1f} s to exit after SIGTERM"
    assert result["error"] == "Server returned an error on close: Server is shutting down."


def test_token_expiry_closes_connection(start_server: Callable[..., ServerProcess]) -> None:
    """A connection lives no longer than its token: at ``exp`` the server closes
    it with an error that says so (and not before)."""
    server = start_server()
    token = server.token("alice", "acme", ttl=3)
    expires_ms = expiry_of(token) * 1000
    params = {"url": server.hub_url(), **CLIENT, "token": token, "waitMs": 15000}
    with NodeScenario("closing.mjs", params) as client:
        ready = client.wait_for("ready")
        result = client.result()
    assert ready["at"] < expires_ms, "connected only after the token expired: test too slow"
    assert "expired" in (result["error"] or ""), result
    assert expires_ms - 250 <= result["at"] <= expires_ms + 5000, (result["at"], expires_ms)


def test_token_expiry_reconnects_with_fresh_token(
    start_server: Callable[..., ServerProcess],
) -> None:
    """The expiry Close allows a reconnect; the client asks its
    accessTokenFactory again and carries on with the fresh token (the expired
    one would get a 401)."""
    server = start_server()
    tokens = [server.token("alice", "acme", ttl=3), server.token("alice", "acme")]
    params = {"url": server.hub_url(), **CLIENT, "tokens": tokens,
              "reconnectDelays": RECONNECT_DELAYS, "waitMs": 15000}
    with NodeScenario("reconnect.mjs", params) as client:
        result = client.result()
    assert "expired" in (result["reconnecting"] or ""), result
    assert result["events"] == ["reconnecting", "reconnected"]
    assert result["reconnectedId"] != result["firstId"]
    assert result["echoed"] == "after reconnect"


def test_node_helper_fails_clearly_without_scenario() -> None:
    """The harness itself: a missing scenario fails the test (it is not skipped)."""
    with pytest.raises(pytest.fail.Exception, match="no such conformance scenario"):
        run_scenario("no-such-scenario.mjs", timeout=5)

"""``GET /metrics`` (issue 21; docs/operations.md, "Metrics") on a real ``voisnap serve``,
read with prometheus-client's own parser: each family moves as a scripted session
goes (connect, invocations that succeed, fail and name no method, a group send, a
task), and ``--metrics-token`` guards it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import FAST_SETTINGS
from tests.support.server import ServerProcess
from tests.support.stream_client import open_stream
from tests.support.ws_client import open_hub_client

TOKEN = "metrics-secret"
PLAYGROUND = "/hubs/playground"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    settings = {**FAST_SETTINGS, "metrics_token": TOKEN, "agent_token_delay": "0.001"}
    with ServerProcess(tmp_path_factory.mktemp("metrics") / "data", settings) as started:
        yield started


def scrape(server: ServerProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample, by name and labels."""
    response = httpx.get(f"{server.url}/metrics", headers={"authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_needs_its_token(server: ServerProcess) -> None:
    assert httpx.get(f"{server.url}/metrics").status_code == 401
    wrong = httpx.get(f"{server.url}/metrics", headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert httpx.get(f"{server.url}/metrics?access_token={TOKEN}").status_code == 200


async def test_the_families_move_with_a_scripted_session(server: ServerProcess) -> None:
    before = scrape(server)
    url = f"{server.ws_url}{PLAYGROUND}"
    async with open_hub_client(url, token=server.token()) as first, \
            open_hub_client(url, token=server.token()) as second:
        during = scrape(server)
        assert await first.call("Echo", "hi") == "hi"
        await first.invoke("AskConnection", "no-such-connection", "?")  # fails in the method
        await first.invoke("NoSuchMethod")
        await first.invoke("Counter", "not a number", 1)  # a stream target, unbound
        await first.invoke("Echo")  # missing argument
        await first.join_group("room")
        await second.join_group("room")
        await first.call("SendToGroup", "room", {"n": 1})
        await second.receive_message()
        after_hub = scrape(server)
    async with open_stream(server, server.token()) as stream:
        await stream.send({"type": "task.submit", "prompt": "hello"})
        await stream.until_type("task:done")
    after = scrape(server)

    connections = value(during, "voisnap_hub_connections", hub=PLAYGROUND,
                        transport="WebSockets", protocol="json")
    assert connections == value(before, "voisnap_hub_connections", hub=PLAYGROUND,
                                transport="WebSockets", protocol="json") + 2
    accepted = "voisnap_hub_handshakes_total"
    assert value(during, accepted, hub=PLAYGROUND, outcome="accepted") == value(
        before, accepted, hub=PLAYGROUND, outcome="accepted") + 2

    def moved(name: str, **labels: str) -> float:
        return value(after_hub, name, **labels) - value(before, name, **labels)

    invocations = "voisnap_hub_invocations_total"
    assert moved(invocations, hub=PLAYGROUND, method="Echo", outcome="ok") == 1
    assert moved(invocations, hub=PLAYGROUND, method="AskConnection", outcome="error") == 1
    assert moved(invocations, hub=PLAYGROUND, method="(unknown)", outcome="unknown") >= 1
    assert moved(invocations, hub=PLAYGROUND, method="Echo", outcome="bad_arguments") == 1
    assert moved("voisnap_hub_invocation_seconds_count", hub=PLAYGROUND, method="Echo") == 1
    assert moved("voisnap_hub_messages_sent_total", hub=PLAYGROUND) >= 1
    assert moved("voisnap_hub_deliveries_total", hub=PLAYGROUND) >= 2  # one send, two members
    # The task, counted once per state.
    for state in ("queued", "started", "completed"):
        assert value(after, "voisnap_agent_tasks_total", kind="chat", state=state) - value(
            before, "voisnap_agent_tasks_total", kind="chat", state=state) == 1, state
    assert value(after, "voisnap_agent_task_seconds_count", kind="chat") >= 1
    assert value(after, "voisnap_backplane_connected") == 1
    assert ("voisnap_outbox_depth_messages", (("stat", "max"),)) in after

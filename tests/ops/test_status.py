"""``voisnap status`` against a real ``voisnap serve`` (docs/operations.md)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable

import trio

from tests.support.server import ServerProcess
from tests.support.ws_client import open_hub_client, wait_for_stats
from voisnap.status import rates_between, render

TIMEOUT = 30.0


def status(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "voisnap", "status", *args],
        capture_output=True, text=True, timeout=TIMEOUT,
    )


async def test_status_shows_readiness_and_connections_per_hub(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server()
    async with open_hub_client(f"{server.ws_url}/hubs/playground", token=server.token()) as client:
        assert await client.call("Echo", "hi") == "hi"
        result = await trio.to_thread.run_sync(status, "--url", server.url)
    assert result.returncode == 0, result.stderr
    assert "readiness     ready" in result.stdout
    row = next(line for line in result.stdout.splitlines() if line.startswith("/hubs/playground"))
    assert row.split()[1] == "1"  # its one connection
    assert "connections   1" in result.stdout
    assert "backplane" in result.stdout


def test_status_of_a_server_that_is_not_there() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = status("--url", f"http://127.0.0.1:{port}")
    assert result.returncode == 1
    assert f"voisnap status: cannot reach http://127.0.0.1:{port}" in result.stderr
    assert not result.stdout


def test_status_watch_refreshes_with_deliveries_per_second(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server()
    process = subprocess.Popen(
        [sys.executable, "-m", "voisnap", "status", "--url", server.url, "--watch", "0.2"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    tables: list[str] = []
    second = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("voisnap at "):
                tables.append("")
                if len(tables) == 2:
                    second.set()
            if tables:
                tables[-1] += line
        second.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert second.wait(TIMEOUT), "no second table"
    finally:
        process.terminate()
        process.wait(TIMEOUT)
    assert len(tables) >= 2
    first_total = next(line for line in tables[0].splitlines() if line.startswith("total"))
    assert first_total.split()[-2] == "-"  # no rate before a second refresh
    later_total = next(line for line in tables[1].splitlines() if line.startswith("total"))
    assert later_total.split()[-2] == "0.0"


def test_status_count_stops_watching(start_server: Callable[..., ServerProcess]) -> None:
    server = start_server()
    result = status("--url", server.url, "--watch", "0.05", "--count", "2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("voisnap at ") == 2


def test_status_render_rates_and_unavailable() -> None:
    stats = {
        "connections": 3,
        "hubs": {"/hubs/chat": {"connections": 3, "deliveries": 50, "evictions": 1}},
        "cluster": {"backplane": {"connected": False, "dropped": 2}},
        "tasks": {"running": 4, "queued": 1},
    }
    readiness = {"status": "unavailable", "unavailable": {"backplane": "timed out"}}
    rates = rates_between({"/hubs/chat": 30}, {"/hubs/chat": 50}, 2.0)
    assert rates == {"/hubs/chat": 10.0}
    text = render("http://x", readiness, stats, rates)
    assert "unavailable (backplane: timed out)" in text
    assert "10.0" in text
    assert "connected=False, dropped=2" in text
    assert "tasks         running=4, queued=1" in text


async def test_status_counts_after_messages(start_server: Callable[..., ServerProcess]) -> None:
    server = start_server()
    async with open_hub_client(f"{server.ws_url}/hubs/playground", token=server.token()) as client:
        await client.join_group("g")
        await client.call("SendToGroup", "g", "hello")
        with trio.fail_after(TIMEOUT):
            await wait_for_stats(server.url, lambda stats: delivered(stats) >= 1)
        result = await trio.to_thread.run_sync(status, "--url", server.url)
    row = next(line for line in result.stdout.splitlines() if line.startswith("/hubs/playground"))
    assert int(row.split()[4]) >= 1  # deliveries


def delivered(stats: dict) -> int:
    return stats["hubs"]["/hubs/playground"]["deliveries"]

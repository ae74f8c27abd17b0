"""Shared fixtures. Tests that need a real server get one per test (or per module)
from ``voisnap_server``; everything binds to 127.0.0.1 on a free port."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.server import ServerProcess
from tests.support.services import *  # noqa: F403  (redis_server, postgres_server, ...)

# Shrunk so that every timeout can be observed in a second or two.
FAST_SETTINGS = {
    "keep_alive_interval": "1",
    "client_timeout": "3",
    "handshake_timeout": "1",
    "disconnect_timeout": "2",
    "client_result_timeout": "2",
    "shutdown_timeout": "2",
    "request_head_timeout": "2",
    "task_lease": "2",
    "task_lease_renewal": "0.5",
}


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start ``voisnap serve`` processes; all are stopped after the test."""
    started: list[ServerProcess] = []

    def start(settings: dict[str, str] | None = None, args: list[str] | tuple = (),
              port: int = 0, data_dir: Path | None = None) -> ServerProcess:
        server = ServerProcess(
            data_dir or tmp_path / "data", {**FAST_SETTINGS, **(settings or {})}, args, port
        )
        started.append(server.start())
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server(start_server: Callable[..., ServerProcess]) -> ServerProcess:
    return start_server()

"""Fixtures of the scale-out tests (issue 10): voisnap as several processes on one Redis.

``start_cluster`` starts a ``Cluster`` (``tests/support/cluster.py``): real ``voisnap
serve`` processes on the session's real Redis (flushed first, so that nothing of an earlier
cluster is left in it), one data dir and one JWT secret, behind a round-robin proxy. Clusters
are stopped at the end of the test, or of the module for a module's shared cluster
(``module_cluster``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import FAST_SETTINGS
from tests.support.cluster import Cluster
from tests.support.services import RedisServer

# FAST_SETTINGS, but with the keep-alives of ASP.NET Core (15 s Pings, 30 s client
# timeout): a long-polling or SSE client's Ping is a POST, a new TCP connection that
# would take a turn of the round robin while a test places its clients.
QUIET_SETTINGS = {**FAST_SETTINGS, "keep_alive_interval": "15", "client_timeout": "30"}

StartCluster = Callable[..., Cluster]


def _starter(redis_server: RedisServer, root: Path, started: list[Cluster]) -> StartCluster:
    def start(size: int = 2, settings: dict[str, str] | None = None,
              args: list[str] | tuple = (), node_settings: list[dict[str, str]] = ()) -> Cluster:
        redis_server.start()  # a test before may have stopped it
        redis_server.flush()
        cluster = Cluster(root / f"cluster-{len(started)}", redis_server.url, size,
                          {**QUIET_SETTINGS, **(settings or {})}, args, node_settings)
        started.append(cluster.start())
        return cluster

    return start


@pytest.fixture
def start_cluster(redis_server: RedisServer, tmp_path: Path) -> Iterator[StartCluster]:
    started: list[Cluster] = []
    yield _starter(redis_server, tmp_path, started)
    for cluster in started:
        cluster.stop()


@pytest.fixture(scope="module")
def module_cluster(redis_server: RedisServer,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartCluster]:
    """``start_cluster`` for module-scoped fixtures."""
    started: list[Cluster] = []
    yield _starter(redis_server, tmp_path_factory.mktemp("cluster"), started)
    for cluster in started:
        cluster.stop()

"""``voisnap serve --workers N`` (issue 10, docs/scale-out.md "Running it").

With ``--redis-url``: one supervisor, two workers on one port (SO_REUSEPORT: the kernel
spreads new connections, so a test cannot choose a worker; the workers' pids come from the
supervisor's log, and which worker holds how many clients from ``/proc``). Six JS clients
with ``withAutomaticReconnect`` join one group. The worker holding more of them is SIGKILLed:
the supervisor logs its exit and starts it again (a new pid); its clients reconnect (to the
worker left, or the new one), join the group again and receive group messages; a client that
lands on the restarted worker receives them too; the supervisor never exits; SIGTERM to it
stops everything with exit status 0.

Without ``--redis-url``, ``--workers 2`` is refused at start: exit status 2 and a message that
says to add ``--redis-url``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.conftest import QUIET_SETTINGS
from tests.support.cluster import (
    Clients,
    SupervisedServer,
    cluster_clients,
    established_connections,
    listens,
    mint_token,
    wait_until,
)
from tests.support.services import RedisServer

pytestmark = pytest.mark.conformance

RECONNECT_DELAYS = [0, 100, 200, 500] + [1000] * 15
CLIENTS = 6
WAIT = 20.0
SECRET = "a-secret-for-the-workers-tests-0123456789"


@pytest.fixture
def supervised(redis_server: RedisServer, tmp_path: Path) -> Iterator[SupervisedServer]:
    redis_server.start()
    redis_server.flush()
    server = SupervisedServer(
        tmp_path / "data", {**QUIET_SETTINGS, "jwt_secret": SECRET},
        ["--workers", "2", "--redis-url", redis_server.url],
    )
    yield server.start()
    server.kill()


def per_worker(server: SupervisedServer) -> dict[int, int]:
    """Established client connections by worker index."""
    return {index: established_connections(pid, server.port)
            for index, pid in server.worker_pids().items()}


def gone(pid: int) -> bool:
    """The process is no more (or a zombie, waiting to be reaped by someone else)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def everyone_receives(clients: Clients, names: list[str], sender: str, payload: str) -> None:
    clients.call(sender, "SendToGroup", "all", payload)
    for name in names:
        clients.wait(name, payload, timeout=WAIT)


def open_on_worker(
    clients: Clients, server: SupervisedServer, pid: int, existing: int, prefix: str = "late"
) -> tuple[str, int]:
    """Open new clients until one lands on worker ``pid`` (the kernel chooses): its
    name, and how many clients were opened. ``existing``: the client connections the
    workers hold already."""
    wait_until(lambda: listens(pid, server.port), WAIT, f"worker pid {pid} to listen")
    for attempt in range(12):
        name = f"{prefix}{attempt}"
        before = established_connections(pid, server.port)
        clients.open(name, mint_token(SECRET, name, "acme"))
        total = existing + attempt + 1
        wait_until(lambda: sum(per_worker(server).values()) == total,  # noqa: B023
                   WAIT, f"{name}'s connection")
        if established_connections(pid, server.port) > before:
            return name, attempt + 1
    raise AssertionError(f"no new client landed on worker pid {pid} in 12 tries")


def test_workers_killed_worker_is_restarted_and_its_clients_come_back(
    supervised: SupervisedServer,
) -> None:
    server = supervised
    pids = server.wait_for_workers(2)
    assert sorted(pids) == [0, 1]
    names = [f"c{i}" for i in range(CLIENTS)]
    with cluster_clients(server.hub_url(), timeout=120, transport="WebSockets", protocol="json",
                         reconnectDelays=RECONNECT_DELAYS) as clients:
        for name in names:
            clients.open(name, mint_token(SECRET, name, "acme"))
            clients.call(name, "JoinGroup", "all")
        everyone_receives(clients, names, "c0", "before")
        spread = wait_until(lambda: sum((now := per_worker(server)).values()) == CLIENTS and now,
                            WAIT, f"{CLIENTS} client connections on the workers")
        victim = max(spread, key=lambda index: spread[index])
        opened = CLIENTS
        if spread[1 - victim] == 0:  # the kernel put every client on one worker (3% of runs)
            extra, tries = open_on_worker(clients, server, pids[1 - victim], opened, "extra")
            opened += tries
            clients.call(extra, "JoinGroup", "all")
            names.append(extra)
            spread = per_worker(server)  # the tries that missed are the victim's too
        victim_pid = pids[victim]

        os.kill(victim_pid, signal.SIGKILL)
        exit_line = wait_until(
            lambda: [e for e in server.exits() if e[:2] == (victim, victim_pid)],
            WAIT, f"the supervisor to log worker {victim}'s exit")
        new_pid = wait_until(
            lambda: (pid := server.worker_pids().get(victim)) != victim_pid and pid,
            WAIT, f"worker {victim} to start again")
        back = wait_until(
            lambda: (s := clients.summary()) and sum(c["reconnected"] for c in s.values())
            >= spread[victim] and s,
            WAIT, f"{spread[victim]} clients of the killed worker to reconnect")
        moved = sorted(name for name, c in back.items() if c["reconnected"])
        for name in moved:
            clients.call(name, "JoinGroup", "all")  # a new connection: its groups are gone
        stayed = next(name for name in names if name not in moved)
        everyone_receives(clients, names, stayed, "after")
        everyone_receives(clients, names, moved[0], "from a moved client")

        # A client of the restarted worker is served there, and reached from the other.
        late, _ = open_on_worker(clients, server, new_pid, opened)
        clients.call(late, "JoinGroup", "all")
        everyone_receives(clients, [*names, late], stayed, "to the restarted worker")
        supervisor_alive = server.process.poll() is None

        code = server.stop(signal.SIGTERM)
    assert len(exit_line) == 1, exit_line  # "worker I (pid P) exited with -9; starting it again"
    assert new_pid != victim_pid
    assert len(moved) == spread[victim], back
    assert all(c["closed"] == 0 for c in back.values()), back
    assert supervisor_alive
    assert code == 0, server.log[-3000:]
    for pid in (pids[1 - victim], new_pid):
        wait_until(lambda: gone(pid), 10.0, f"worker pid {pid} to end")  # noqa: B023


def test_workers_without_redis_url_refused_with_exit_status_2(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "VOISNAP_REDIS_URL"}
    finished = subprocess.run(
        [sys.executable, "-m", "voisnap", "serve", "--workers", "2", "--host", "127.0.0.1",
         "--port", "0", "--data-dir", str(tmp_path / "data")],
        env=env, capture_output=True, text=True, timeout=30,
    )
    assert finished.returncode == 2, (finished.returncode, finished.stderr)
    assert "--redis-url" in finished.stderr, finished.stderr
    assert "voisnap listening on" not in finished.stdout


def test_workers_with_a_bad_agents_file_refused_once_with_exit_status_2(
    tmp_path: Path, redis_url: str
) -> None:
    """The supervisor checks the files every worker reads before it starts one:
    a bad file would stop each worker at start, and the supervisor would start
    them again, for ever (then this run would not end within its timeout)."""
    agents = tmp_path / "agents.toml"
    agents.write_text("[agents.broken]\nbackend = 'no-such-backend'\n")
    finished = subprocess.run(
        [sys.executable, "-m", "voisnap", "serve", "--workers", "2", "--host", "127.0.0.1",
         "--port", "0", "--data-dir", str(tmp_path / "data"), "--redis-url", redis_url,
         "--agents-file", str(agents)],
        capture_output=True, text=True, timeout=30,
    )
    assert finished.returncode == 2, (finished.returncode, finished.stderr)
    assert "no-such-backend" in finished.stderr, finished.stderr
    assert "voisnap listening on" not in finished.stdout
    assert "Traceback" not in finished.stderr, finished.stderr


def test_workers_end_when_their_supervisor_is_killed(supervised: SupervisedServer) -> None:
    """A supervisor killed with SIGKILL cannot stop its workers; the kernel tells them
    (PR_SET_PDEATHSIG), and they end on their own instead of holding the port for ever."""
    server = supervised
    pids = server.wait_for_workers(2)
    os.kill(server.supervisor_pid, signal.SIGKILL)
    for pid in pids.values():
        wait_until(lambda: gone(pid), WAIT, f"worker pid {pid} to end")  # noqa: B023

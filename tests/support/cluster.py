"""Several ``voisnap serve`` processes as one server, for the scale-out tests (issue 10).

``Cluster``: N real ``voisnap serve`` processes on one Redis (``VOISNAP_REDIS_URL``) and one
data dir (a shared SQLite file), signing tokens with one JWT secret (``VOISNAP_JWT_SECRET``),
behind a ``RoundRobinProxyThread``: every new TCP connection goes to the next process, as a
load balancer without sticky sessions would send it. A connection belongs to the process that
received its first transport request; each process's ``GET /stats`` (on its own port) counts
the connections it holds, which is how a test knows, and asserts, where a client lives.

``SupervisedServer``: one ``voisnap serve --workers N`` process (a supervisor and its workers
on one port); the workers' pids come from the supervisor's log lines
``worker I started (pid P)``; which worker holds how many client connections comes from
``/proc`` (``established_connections``), as the workers share a port.

``store_rows``: rows read straight from the processes' store (the PostgreSQL database of
``--database``, or the SQLite file of the data dir), for what no API shows, such as which
process holds a task's lease; ``node_holds``: whether a process (by its node id, a task's
``lease_owner``) holds a connection, from its presence record in Redis.

``cluster_clients``: a run of ``tests/conformance/js/cluster_clients.mjs``, the official JS
client with a new TCP connection per HTTP request, driven one command at a time (``Clients``:
open, or ``place`` on a chosen process, invoke, wait for a ``Receive``, ...).

Every wait polls a condition until a deadline; nothing sleeps for a fixed time.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import secrets
import signal
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import jwt

from tests.support.node import NodeScenario
from tests.support.round_robin_proxy import RoundRobinProxyThread
from tests.support.server import ServerProcess
from tests.support.services import RedisServer

__all__ = ["Clients", "Cluster", "SupervisedServer", "cluster_clients", "established_connections",
           "get_json", "listens", "mint_token", "node_holds", "store_rows", "wait_until"]

POLL = 0.02
HTTP_TIMEOUT = 5.0


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``condition`` until it returns something true; that value. Fails at the deadline,
    saying what was awaited and what the last answer was."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; "
                                 f"last: {value!r}")
        time.sleep(POLL)


def get_json(url: str, timeout: float = HTTP_TIMEOUT) -> tuple[int, Any]:
    """GET ``url`` (127.0.0.1 directly, whatever proxy the environment names)."""
    response = httpx.get(url, timeout=timeout, trust_env=False)
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, response.text


def mint_token(secret: str, user: str, tenant: str, ttl: float = 3600,
               roles: Iterable[str] = ()) -> str:
    """The token ``voisnap token`` would print (same claims), signed with ``secret``."""
    now = int(time.time())
    claims = {"sub": user, "tid": tenant, "roles": list(roles), "iat": now,
              "exp": int(now + ttl)}
    return jwt.encode(claims, secret.encode(), algorithm="HS256")


class Cluster:
    """``size`` voisnap processes behind a round-robin proxy; ``with`` or start/stop."""

    def __init__(self, root: Path, redis_url: str, size: int = 2,
                 settings: Mapping[str, str] | None = None, args: Iterable[str] = (),
                 node_settings: Sequence[Mapping[str, str]] = ()) -> None:
        """``node_settings[i]``, if given, adds to the settings of process ``i``."""
        self.data_dir = root / "data"
        self.secret = secrets.token_hex(32)
        self.settings = {**(settings or {}), "redis_url": redis_url, "jwt_secret": self.secret}
        self.args = list(args)
        own = list(node_settings) + [{}] * size
        self.nodes = [ServerProcess(self.data_dir, {**self.settings, **own[i]}, self.args)
                      for i in range(size)]
        self.proxy: RoundRobinProxyThread | None = None

    # -- life --------------------------------------------------------------------------------------

    def start(self) -> Cluster:
        try:
            for node in self.nodes:
                node.start()
            self.proxy = RoundRobinProxyThread(
                [("127.0.0.1", node.port) for node in self.nodes]).start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> list[int | None]:
        """Stop the proxy and every process (SIGTERM); their exit codes."""
        if self.proxy is not None:
            self.proxy.stop()
        return [node.stop() for node in self.nodes]

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def restart(self, index: int, sig: int = signal.SIGTERM) -> int | None:
        """Stop process ``index`` with ``sig`` and start a new one in its place, on its port
        (the proxy's address for it stays good) and data dir; the stopped one's exit code."""
        old = self.nodes[index]
        code = old.stop(sig)
        self.nodes[index] = ServerProcess(self.data_dir, self.settings, self.args,
                                          port=old.port).start()
        return code

    def exited(self) -> list[int | None]:
        """Each process's exit code, None while it runs."""
        return [None if node.process is None else node.process.poll() for node in self.nodes]

    # -- addresses and tokens ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self.proxy is not None
        return self.proxy.url

    def hub_url(self, hub: str = "playground") -> str:
        """The hub's URL through the proxy."""
        return f"{self.url}/hubs/{hub}"

    def token(self, user: str, tenant: str = "acme", ttl: float = 3600,
              roles: Iterable[str] = ()) -> str:
        return mint_token(self.secret, user, tenant, ttl, roles)

    # -- looking at each process -------------------------------------------------------------------

    def stats(self, index: int) -> dict[str, Any]:
        status, document = get_json(f"{self.nodes[index].url}/stats")
        assert status == 200, (index, status, document)
        return document

    def connections(self) -> list[int]:
        """How many connections each process holds (``/stats``, on its own port)."""
        return [self.stats(index)["connections"] for index in range(len(self.nodes))]

    def readyz(self, index: int) -> tuple[int, Any]:
        return get_json(f"{self.nodes[index].url}/readyz")

    def wait_connections(self, expected: list[int], timeout: float = 10.0) -> list[int]:
        return wait_until(lambda: (now := self.connections()) == expected and now,
                          timeout, f"connections per process == {expected}")

    def log(self, index: int) -> str:
        return self.nodes[index].log

    def logs(self) -> str:
        return "\n".join(f"--- process {i} (port {node.port}) ---\n{node.log[-6000:]}"
                         for i, node in enumerate(self.nodes))


def store_rows(database: str | Path, sql: str, *parameters: Any) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` (``?`` placeholders), read from voisnap's store behind its back:
    ``database`` is a ``postgresql://`` URL, or the path of the SQLite file (opened read-only;
    WAL lets it be read while the processes write)."""
    if isinstance(database, str):
        import psycopg

        with psycopg.connect(database, connect_timeout=2, autocommit=True) as connection:
            return connection.execute(sql.replace("?", "%s"), parameters).fetchall()
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True,
                                            timeout=5)) as connection:
        return connection.execute(sql, parameters).fetchall()


def node_holds(redis: RedisServer, node_id: str, connection_id: str) -> bool:
    """Whether the process ``node_id`` holds connection ``connection_id``: its presence hash
    (``voisnap:presence:node:<id>``, docs/scale-out.md "Presence", under the backplane's
    default key prefix) has the connection."""
    key = f"voisnap:presence:node:{node_id}"
    return redis.execute("HEXISTS", key, connection_id) == b":1"


ESTABLISHED, LISTEN = "01", "0A"  # the state column of /proc/net/tcp
WORKER_STARTED = re.compile(r"worker (\d+) started \(pid (\d+)\)")
WORKER_EXITED = re.compile(r"worker (\d+) \(pid (\d+)\) exited with (\S+?); starting it again")


class SupervisedServer(ServerProcess):
    """``voisnap serve --workers N`` (and whatever else ``args`` says): one supervisor."""

    def worker_pids(self) -> dict[int, int]:
        """Each worker's latest pid, by index, from the supervisor's log."""
        return {int(index): int(pid) for index, pid in WORKER_STARTED.findall(self.log)}

    def exits(self) -> list[tuple[int, int, str]]:
        """(index, pid, how) for every ``worker I (pid P) exited with ...`` line."""
        return [(int(index), int(pid), how) for index, pid, how in WORKER_EXITED.findall(self.log)]

    def wait_for_workers(self, count: int, timeout: float = 20.0) -> dict[int, int]:
        return wait_until(lambda: len(pids := self.worker_pids()) == count and pids,
                          timeout, f"{count} workers in the supervisor's log")

    @property
    def supervisor_pid(self) -> int:
        assert self.process is not None
        return self.process.pid


def established_connections(pid: int, port: int) -> int:
    """How many ESTABLISHED TCP connections to local ``port`` process ``pid`` holds. For
    ``--workers``, whose workers share one port and so cannot be asked for ``/stats`` one
    by one."""
    return tcp_sockets(pid, port, ESTABLISHED)


def listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` has a socket listening on ``port``."""
    return tcp_sockets(pid, port, LISTEN) > 0


def tcp_sockets(pid: int, port: int, state: str) -> int:
    """The TCP sockets of process ``pid`` on local ``port`` in ``state``: its socket inodes
    (``/proc/<pid>/fd``) matched with the kernel's table (``/proc/<pid>/net/tcp``)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:["):-1])
    count = 0
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(FileNotFoundError), open(f"/proc/{pid}/net/{table}") as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port and fields[3] == state and fields[9] in inodes:
                    count += 1
    return count


class Clients:
    """The clients of one ``cluster_clients.mjs`` run (``tests/conformance/js``), one command
    at a time; every command waits for its answer line with a deadline."""

    def __init__(self, scenario: NodeScenario, wait: float = 10.0) -> None:
        self.scenario = scenario
        self.wait_time = wait
        self.ids: dict[str, str] = {}
        self.transports: dict[str, str] = {}  # the client's transport class, by client
        self._numbers = itertools.count()

    def _do(self, answer: str, timeout: float | None = None, **command: Any) -> dict[str, Any]:
        self.scenario.send_line(json.dumps(command))
        return self.scenario.wait_for(answer, timeout=(timeout or self.wait_time) + 2)

    def _id(self) -> str:
        return str(next(self._numbers))

    def open(self, name: str, token: str, **options: Any) -> str:
        """Start client ``name``; its connection id."""
        opened = self._do(f"opened:{name}", 15.0, op="open", client=name, token=token, **options)
        assert "error" not in opened, f"{name} did not start: {opened['error']}"
        self.ids[name] = opened["connectionId"]
        self.transports[name] = opened["transport"]
        return opened["connectionId"]

    def place(self, cluster: Cluster, process: int, name: str, token: str,
              **options: Any) -> str:
        """Start client ``name`` so that its connection lives on ``process``, and prove it
        with the processes' ``/stats``. Its negotiate goes to the process before (the proxy's
        turn is set so), its first transport request, which makes the owner, to ``process``.
        A client that lands elsewhere anyway is stopped and started again (three tries)."""
        assert cluster.proxy is not None
        size = len(cluster.nodes)
        for _ in range(3):
            before = cluster.connections()
            cluster.proxy.route_next_to((process - 1) % size)
            connection_id = self.open(name, token, **options)
            total = sum(before) + 1
            after = wait_until(
                lambda: sum(now := cluster.connections()) == total and now,  # noqa: B023
                10.0, f"{name}'s connection in /stats (before: {before})")
            if [a - b for a, b in zip(after, before, strict=True)] == [
                    int(i == process) for i in range(size)]:
                return connection_id
            self.stop(name)
            cluster.wait_connections(before)
        raise AssertionError(f"{name} never landed on process {process}")

    def invoke(self, name: str, method: str, *args: Any,
               timeout: float | None = None) -> dict[str, Any]:
        """{ok: True, value, ms} or {ok: False, error, ms} (the client's error text)."""
        number = self._id()
        return self._do(f"invoked:{number}", timeout, op="invoke", id=number, client=name,
                        method=method, args=list(args))

    def call(self, name: str, method: str, *args: Any) -> Any:
        answer = self.invoke(name, method, *args)
        assert answer["ok"], f"{name}: {method}{args} failed: {answer['error']}"
        return answer["value"]

    def wait(self, name: str, payload: Any = None, *, target: str = "Receive",
             match: Mapping[str, Any] | None = None, count: int = 1,
             timeout: float | None = None) -> dict[str, Any]:
        """The count-th ``target`` event equal to ``payload`` (or with the fields of
        ``match``): {payload, index}; fails the test at the deadline."""
        answer = self.try_wait(name, payload, target=target, match=match, count=count,
                               timeout=timeout)
        assert "error" not in answer, f"{answer['error']}; it saw: {answer['seen']}"
        return answer

    def try_wait(self, name: str, payload: Any = None, *, target: str = "Receive",
                 match: Mapping[str, Any] | None = None, count: int = 1,
                 timeout: float | None = None) -> dict[str, Any]:
        """``wait``, but a deadline is an answer: {error, seen} (every event it saw)."""
        number = self._id()
        timeout = timeout or self.wait_time
        command: dict[str, Any] = {"op": "await", "id": number, "client": name,
                                   "target": target, "count": count, "ms": int(timeout * 1000)}
        if match is not None:
            command["match"] = dict(match)
        else:
            command["payload"] = payload
        return self._do(f"awaited:{number}", timeout, **command)

    def send_range(self, name: str, method: str, group: str, start: int, stop: int) -> None:
        number = self._id()
        self._do(f"sent:{number}", 30.0, op="sendRange", id=number, client=name,
                 method=method, group=group, **{"from": start, "to": stop})

    def log(self, name: str) -> dict[str, Any]:
        number = self._id()
        return self._do(f"log:{number}", op="log", id=number, client=name)

    def received(self, name: str, target: str = "Receive") -> list[Any]:
        """The payloads of ``target`` events, in the order the client's handlers saw them."""
        return [event["payload"] for event in self.log(name)["events"]
                if event["target"] == target]

    def summary(self) -> dict[str, dict[str, Any]]:
        """Every client's {state, connectionId, reconnecting, reconnected, closed (how many
        times each), connectionIds (after each reconnect)}."""
        number = self._id()
        return self._do(f"summary:{number}", op="summary", id=number)["clients"]

    def stop(self, name: str) -> None:
        self._do(f"stopped:{name}", op="stop", client=name)

    def end(self) -> None:
        self.scenario.send_line(json.dumps({"op": "end"}))
        self.scenario.result()


@contextlib.contextmanager
def cluster_clients(url: str, timeout: float = 60.0, **params: Any) -> Iterator[Clients]:
    """A ``cluster_clients.mjs`` run; ``params`` are the defaults of its ``open``
    (transport, protocol, keepAliveMs, ...). Its clients are stopped at the end."""
    with NodeScenario("cluster_clients.mjs", {"url": url, **params}, timeout) as scenario:
        scenario.wait_for("ready")
        clients = Clients(scenario)
        yield clients
        clients.end()

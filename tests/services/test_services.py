"""The real servers and tools the other tests rely on: each fixture, proven once.

Under CI none of these may skip (tests/support/services.py fails instead): a green run
means Redis, PostgreSQL, NATS, espeak-ng, sox and Chromium are really there.
"""

from __future__ import annotations

import shutil
import socket
import socketserver
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import trio

from tests.support.round_robin_proxy import RoundRobinProxyThread, open_round_robin_proxy
from tests.support.services import (
    NatsServer,
    PostgresServer,
    RedisServer,
    find_binary,
    talk,
)

TOOL_TIMEOUT = 60


# -- Redis ---------------------------------------------------------------------------------------


def test_redis_server_answers_ping(redis_server: RedisServer) -> None:
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    assert redis_server.execute("PING") == b"+PONG"


def test_redis_server_flush_empties_it(redis_url: str, redis_server: RedisServer) -> None:
    assert redis_server.execute("SET", "greeting", "hello") == b"+OK"
    redis_server.flush()
    assert redis_server.execute("EXISTS", "greeting") == b":0"


def test_redis_server_restarts_on_the_same_port(redis_server: RedisServer) -> None:
    port, pid = redis_server.port, redis_server.pid
    redis_server.stop()
    assert redis_server.pid is None
    with pytest.raises(OSError):
        talk(port, b"*1\r\n$4\r\nPING\r\n", b"\r\n")
    redis_server.start()
    assert (redis_server.port, redis_server.execute("PING")) == (port, b"+PONG")
    assert redis_server.pid not in (None, pid)


# -- PostgreSQL ----------------------------------------------------------------------------------


def test_postgres_server_accepts_a_query(postgres_server: PostgresServer) -> None:
    import psycopg

    with psycopg.connect(postgres_server.url, connect_timeout=5) as connection:
        assert connection.execute("SELECT 1 + 1").fetchone() == (2,)


def test_postgres_server_wants_the_password(postgres_server: PostgresServer) -> None:
    import psycopg

    wrong = postgres_server.url.replace(postgres_server.password, "wrong")
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(wrong, connect_timeout=5)


def test_postgres_server_new_database_is_empty_and_its_own(postgres_url: str,
                                                           postgres_server: PostgresServer) -> None:
    import psycopg

    other = postgres_server.new_database()
    assert other != postgres_url
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("CREATE TABLE notes (body text)")
    with psycopg.connect(other) as connection:
        assert connection.execute("SELECT to_regclass('notes')").fetchone() == (None,)


def test_postgres_server_restarts_with_its_data(postgres_url: str,
                                                postgres_server: PostgresServer) -> None:
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("CREATE TABLE notes (body text)")
        connection.execute("INSERT INTO notes VALUES ('kept')")
    held = psycopg.connect(postgres_url)  # a client still connected does not hold up the stop
    port = postgres_server.port
    postgres_server.stop()
    with pytest.raises(psycopg.OperationalError):
        held.execute("SELECT 1")
    held.close()
    postgres_server.start()
    assert postgres_server.port == port
    with psycopg.connect(postgres_url) as connection:
        assert connection.execute("SELECT body FROM notes").fetchall() == [("kept",)]


# -- NATS ----------------------------------------------------------------------------------------


def test_nats_server_answers_pong(nats_server: NatsServer) -> None:
    assert nats_server.url == f"nats://127.0.0.1:{nats_server.port}"
    reply = talk(nats_server.port, b"CONNECT {}\r\nPING\r\n", b"PONG\r\n")
    assert reply.startswith(b"INFO ") and b'"jetstream":true' in reply
    assert reply.endswith(b"PONG\r\n")


def test_nats_server_restarts_on_the_same_port(nats_server: NatsServer) -> None:
    port = nats_server.port
    nats_server.stop()
    assert not nats_server.probe()
    nats_server.start()
    assert nats_server.port == port and nats_server.probe()


# -- round-robin proxy ---------------------------------------------------------------------------


async def _tagged_echo(tag: bytes, stream: trio.SocketStream) -> None:
    """Read to EOF, then answer with the tag and what was read: needs half-close to answer."""
    received = b""
    while data := await stream.receive_some(4096):
        received += data
    await stream.send_all(tag + received)
    await stream.aclose()


async def _ask(port: int, message: bytes) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(message)
        await stream.send_eof()
        answer = b""
        while data := await stream.receive_some(4096):
            answer += data
        return answer


async def test_round_robin_proxy_alternates_between_backends() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            backends = []
            for tag in (b"A:", b"B:"):
                handler = partial(_tagged_echo, tag)
                listeners = await nursery.start(
                    partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
                backends.append(("127.0.0.1", listeners[0].socket.getsockname()[1]))
            async with open_round_robin_proxy(backends) as proxy:
                answers = [await _ask(proxy.port, b"hi %d" % i) for i in range(5)]
                assert proxy.connections_per_backend == [3, 2]
            nursery.cancel_scope.cancel()
    assert answers == [b"A:hi 0", b"B:hi 1", b"A:hi 2", b"B:hi 3", b"A:hi 4"]


class _TaggedEchoHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.wfile.write(self.server.tag + self.rfile.read())  # type: ignore[attr-defined]


@pytest.fixture
def blocking_backends() -> Iterator[list[tuple[str, int]]]:
    servers = []
    for tag in (b"A:", b"B:"):
        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _TaggedEchoHandler)
        server.daemon_threads = True
        server.tag = tag  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    yield [server.server_address[:2] for server in servers]
    for server in servers:
        server.shutdown()
        server.server_close()


def _ask_blocking(port: int, message: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(message)
        sock.shutdown(socket.SHUT_WR)
        return b"".join(iter(lambda: sock.recv(4096), b""))


def test_round_robin_proxy_thread_serves_synchronous_tests(
    blocking_backends: list[tuple[str, int]],
) -> None:
    with RoundRobinProxyThread(blocking_backends) as proxy:
        assert proxy.url == f"http://127.0.0.1:{proxy.port}"
        answers = [_ask_blocking(proxy.port, b"m%d" % i) for i in range(4)]
        assert proxy.connections_per_backend == [2, 2]
    assert answers == [b"A:m0", b"B:m1", b"A:m2", b"B:m3"]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=5).close()


# -- tools ---------------------------------------------------------------------------------------


def _run(*command: str) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=TOOL_TIMEOUT,
                            check=False)
    assert result.returncode == 0, f"{command[0]} failed:\n{result.stdout}{result.stderr}"
    return result.stdout


def test_espeak_ng_speaks_and_sox_reads_it(tmp_path: Path) -> None:
    espeak = find_binary("espeak-ng", "espeak-ng")
    sox = find_binary("sox", "sox")
    assert "eSpeak NG" in _run(espeak, "--version")
    assert "SoX" in _run(sox, "--version")
    wav = tmp_path / "hello.wav"
    _run(espeak, "-w", str(wav), "hello world")
    seconds = float(_run(sox, "--info", "-D", str(wav)))
    assert 0.3 < seconds < 5


def test_chromium_renders_headless() -> None:
    chromium = find_binary("chromium", "chromium")
    assert "Chromium" in _run(chromium, "--version")
    profile = tempfile.mkdtemp(prefix="voisnap-chromium-")
    try:
        dom = _run(
            chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", "--dump-dom",
            "data:text/html,<p id=x>voisnap</p>",
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert '<p id="x">voisnap</p>' in dom


def test_services_never_skip_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """The skip-or-fail rule itself: under CI a missing binary is a failure."""
    from tests.support.services import missing

    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"scripts/test\.sh installs it"):
        missing("x not found")
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception, match="x not found"):
        missing("x not found")

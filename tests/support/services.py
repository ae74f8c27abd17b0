"""Real Redis, PostgreSQL and NATS servers for tests: no fakes.

Theory of operation: each server is a child process of the test session, bound to 127.0.0.1
on a free port (bind port 0, read it, close; a start that loses the port to someone else is
retried on a new one), in a throwaway directory. It is ready once it answers its own protocol
(Redis ``PING`` → ``+PONG``, NATS ``INFO``/``CONNECT``/``PING`` → ``PONG``, PostgreSQL a real
login), polled until a deadline: never a fixed sleep. ``stop()`` signals the PID it started
and escalates to SIGKILL after a timeout; ``start()`` brings the same server back on the same
port and directory, for tests of an outage in the middle of a test.

The binaries come from Debian packages that ``scripts/test.sh`` installs. When one is missing,
a test under CI (``CI`` set and non-empty) fails naming the package; elsewhere it is skipped.

Session-scoped fixtures: ``redis_server``, ``postgres_server``, ``nats_server``; per test:
``redis_url`` (flushed), ``postgres_url`` (a new database), ``nats_url``.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

__all__ = [
    "NatsServer",
    "PostgresServer",
    "RedisServer",
    "ServiceError",
    "nats_server",
    "nats_url",
    "postgres_server",
    "postgres_url",
    "redis_server",
    "redis_url",
]

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
PROBE_TIMEOUT = 1.0
POLL_INTERVAL = 0.05
START_ATTEMPTS = 3
SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")


class ServiceError(RuntimeError):
    """A server did not start or stop; the message ends with its last log lines."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def missing(reason: str) -> NoReturn:
    """Under CI a missing server is a failure; a developer without it gets a skip."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (scripts/test.sh installs it)", pytrace=False)
    pytest.skip(f"{reason}; run scripts/test.sh to install it")


def find_binary(name: str, package: str) -> str:
    path = shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), *SBIN_DIRS]))
    if path is None:
        missing(f"{name} not found: install the Debian package {package}")
    return path


class ServiceProcess:
    """One server process: start on a free port, wait until it answers, stop by its PID."""

    name = "service"
    stop_signal = signal.SIGTERM

    def __init__(self, workdir: Path, user: str | None = None) -> None:
        self.workdir = workdir
        self.user = user  # set when running as root for a server that refuses root
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"{self.name}.log"

    # -- what each server defines -------------------------------------------------------------

    def command(self) -> list[str]:
        raise NotImplementedError

    def probe(self) -> bool:
        """One attempt to talk to the server: True once it answers."""
        raise NotImplementedError

    def on_first_start(self) -> None:
        """Run once, after the first start (create a database, ...)."""

    # -- life ----------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.running else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> ServiceProcess:
        """Start the server (a no-op when it runs); after a stop, on the same port."""
        if self.running:
            return self
        first = self.port == 0
        for attempt in range(1, START_ATTEMPTS + 1):
            if first:
                self.port = free_port()
            self._spawn()
            try:
                self._wait_ready()
                break
            except ServiceError:
                self.stop()
                # Only a port of our own choosing may be changed: a restart keeps its port.
                if not first or attempt == START_ATTEMPTS:
                    raise
        if first:
            self.on_first_start()
        return self

    def stop(self, timeout: float = STOP_TIMEOUT, *, sig: int | None = None) -> int | None:
        """Signal the PID we started (``sig``, else the server's own stop signal), then
        SIGKILL it after ``timeout``; its exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(self.stop_signal if sig is None else sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        return self.process.returncode

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def as_user(self) -> dict[str, object]:
        """Popen's arguments that drop root for ``self.user``, when one is set."""
        if self.user is None:
            return {}
        return {"user": self.user, "group": self.user, "extra_groups": []}

    def _spawn(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(), cwd=self.workdir, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, **self.as_user(),
            )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if not self.running:
                raise self._error(f"exited with status {self.process.returncode}")
            if self.probe():
                return
            time.sleep(POLL_INTERVAL)
        raise self._error(f"did not answer within {START_TIMEOUT:.0f}s")

    def _error(self, what: str) -> ServiceError:
        return ServiceError(
            f"{self.name} on 127.0.0.1:{self.port} {what}; last lines of {self.log_path}:\n"
            f"{self.log_tail()}"
        )


def talk(port: int, payload: bytes, until: bytes) -> bytes:
    """Send ``payload`` on a new connection; read until ``until`` or the peer closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=PROBE_TIMEOUT) as sock:
        if payload:
            sock.sendall(payload)
        received = b""
        while until not in received:
            chunk = sock.recv(4096)
            if not chunk:
                break
            received += chunk
        return received


class RedisServer(ServiceProcess):
    """``redis-server`` without persistence; ``url`` is ``redis://127.0.0.1:N/0``."""

    name = "redis"

    def __init__(self, workdir: Path, binary: str) -> None:
        super().__init__(workdir)
        self.binary = binary

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(self.workdir), "--daemonize", "no",
        ]

    def execute(self, *args: str) -> bytes:
        """One command in RESP; the first line of the reply (``+PONG``, ``+OK``, ``-ERR ...``)."""
        encoded = b"".join(f"${len(a.encode())}\r\n{a}\r\n".encode() for a in args)
        reply = talk(self.port, f"*{len(args)}\r\n".encode() + encoded, b"\r\n")
        return reply.split(b"\r\n", 1)[0]

    def probe(self) -> bool:
        try:
            return self.execute("PING") == b"+PONG"
        except OSError:
            return False

    def flush(self) -> None:
        """FLUSHALL: every key of every database, for isolation between tests."""
        reply = self.execute("FLUSHALL")
        if reply != b"+OK":
            raise ServiceError(f"FLUSHALL answered {reply!r}")


class NatsServer(ServiceProcess):
    """``nats-server`` with JetStream in its own store dir; ``url`` is ``nats://127.0.0.1:N``."""

    name = "nats"

    def __init__(self, workdir: Path, binary: str) -> None:
        super().__init__(workdir)
        self.binary = binary

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        # No -m: Debian's 2.9.10 opens the HTTP monitoring port only when asked.
        return [
            self.binary, "-a", "127.0.0.1", "-p", str(self.port),
            "-js", "-sd", str(self.workdir / "jetstream"),
        ]

    def probe(self) -> bool:
        """The NATS text protocol: the server speaks first (INFO); CONNECT, PING → PONG."""
        try:
            reply = talk(self.port, b"CONNECT {}\r\nPING\r\n", b"PONG\r\n")
        except OSError:
            return False
        return reply.startswith(b"INFO ") and reply.endswith(b"PONG\r\n")


class PostgresServer(ServiceProcess):
    """A PostgreSQL cluster of its own: ``initdb`` once, ``postgres`` started directly.

    PostgreSQL refuses to run as root, so as root the cluster belongs to the ``postgres`` user
    and lives in a mkdtemp under /tmp that this user owns (pytest's tmp dirs are 0700 root).
    Logins over TCP need the password (scram-sha-256), as a deployed store would.
    """

    name = "postgres"
    # SIGTERM is PostgreSQL's "smart" shutdown, which waits for every client to leave;
    # SIGINT ("fast") ends their sessions, as an outage does.
    stop_signal = signal.SIGINT
    role = "voisnap"
    password = "voisnap-test"
    database = "voisnap"

    def __init__(self, workdir: Path, bindir: str, user: str | None) -> None:
        super().__init__(workdir, user)
        self.bindir = Path(bindir)
        self.datadir = workdir / "data"
        self._databases = itertools.count(1)

    @property
    def url(self) -> str:
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        return f"postgresql://{self.role}:{self.password}@127.0.0.1:{self.port}/{database}"

    def initdb(self) -> None:
        pwfile = self.workdir / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self.user is not None:
            shutil.chown(pwfile, self.user, self.user)
        result = subprocess.run(
            [str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", self.role,
             f"--pwfile={pwfile}", "--auth-local=trust", "--auth-host=scram-sha-256",
             "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"],
            cwd=self.workdir, capture_output=True, text=True, timeout=120, **self.as_user(),
        )
        pwfile.unlink()
        if result.returncode != 0:
            raise ServiceError(f"initdb failed ({result.returncode}):\n{result.stdout}"
                               f"{result.stderr}")

    def command(self) -> list[str]:
        return [
            str(self.bindir / "postgres"), "-D", str(self.datadir), "-p", str(self.port),
            "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.workdir}",
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
            "-c", "max_connections=200",
        ]

    def connect(self, database: str = "postgres", **kwargs: object):  # -> psycopg.Connection
        import psycopg

        return psycopg.connect(self.url_for(database), connect_timeout=2, **kwargs)

    def probe(self) -> bool:
        import psycopg

        try:
            self.connect().close()
        except psycopg.OperationalError:
            return False
        return True

    def on_first_start(self) -> None:
        self.create_database(self.database)

    def create_database(self, name: str) -> str:
        from psycopg import sql

        with self.connect(autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_for(name)

    def new_database(self, prefix: str = "test") -> str:
        """A fresh, empty database for one test; its URL."""
        return self.create_database(f"{prefix}_{next(self._databases)}")


def postgres_bindir() -> str:
    """Debian keeps the server binaries out of PATH, under /usr/lib/postgresql/<major>/bin."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                        key=lambda p: int(Path(p).parent.parent.name))
    if candidates:
        return str(Path(candidates[-1]).parent)
    initdb = shutil.which("initdb")
    if initdb is None:
        missing("PostgreSQL server binaries (initdb, postgres) not found: "
                "install the Debian package postgresql")
    return str(Path(initdb).resolve().parent)


def postgres_workdir() -> tuple[Path, str | None]:
    """A directory the server's user owns; as root, that user is ``postgres``."""
    workdir = Path(tempfile.mkdtemp(prefix="voisnap-postgres-"))
    if os.geteuid() != 0:
        return workdir, None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        shutil.rmtree(workdir)
        missing("PostgreSQL refuses to run as root and there is no postgres user: "
                "install the Debian package postgresql")
    shutil.chown(workdir, "postgres", "postgres")
    return workdir, "postgres"


@contextlib.contextmanager
def running(server: ServiceProcess) -> Iterator[ServiceProcess]:
    try:
        yield server.start()
    finally:
        server.close()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    binary = find_binary("redis-server", "redis-server")
    with running(RedisServer(Path(tempfile.mkdtemp(prefix="voisnap-redis-")), binary)) as s:
        yield s


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    binary = find_binary("nats-server", "nats-server")
    with running(NatsServer(Path(tempfile.mkdtemp(prefix="voisnap-nats-")), binary)) as s:
        yield s


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bindir = postgres_bindir()
    workdir, user = postgres_workdir()
    server = PostgresServer(workdir, bindir, user)
    try:
        server.initdb()
    except BaseException:
        server.close()
        raise
    with running(server) as s:
        yield s


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, running (a test before may have stopped it) and empty."""
    redis_server.start()
    redis_server.flush()
    return redis_server.url


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A new, empty database on the session's PostgreSQL."""
    postgres_server.start()
    return postgres_server.new_database()


@pytest.fixture
def nats_url(nats_server: NatsServer) -> str:
    nats_server.start()
    return nats_server.url

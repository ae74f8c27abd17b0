"""The moving parts of a bench run: the server under test, the load generator,
and the latency histogram.

The server under test is started here (or reached at a URL), and sampled for CPU
and RSS with psutil. The load generator is a few Node processes
(``bench/loadgen/worker.mjs``) driven over stdin/stdout with JSON lines; Node
parses a WebSocket frame in a few microseconds, where a Python client would be
the bottleneck. Each worker measures its own CPU so that a run can show the load
generator was not the limit.
"""

from __future__ import annotations

import json
import math
import os
import queue
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import attrs
import psutil

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "bench" / "loadgen" / "worker.mjs"
CHAT_WORKER = ROOT / "bench" / "loadgen" / "chat.mjs"
STREAM_WORKER = ROOT / "bench" / "loadgen" / "stream.mjs"
TOPICS_WORKER = ROOT / "bench" / "loadgen" / "topics.mjs"
LOG_RATIO = math.log(1.02)
REPLY_TIMEOUT = 120.0


def _raise_fd_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# -- servers -------------------------------------------------------------------------------------


@attrs.define
class ServerUnderTest:
    """A server process: voisnap, or a peer from bench/peers; or a server that
    runs elsewhere (``external``), sampled only if its ``pid`` is known."""

    name: str
    command: list[str] = attrs.Factory(list)
    env: dict[str, str] = attrs.Factory(dict)
    process: subprocess.Popen | None = None
    host: str = "127.0.0.1"
    port: int = 0
    token: str = ""
    samples: list[tuple[float, int, float]] = attrs.Factory(list)  # (t, rss, cpu seconds)
    pid: int | None = None
    external: bool = False
    secret: str | None = None
    """The JWT secret, for a server the harness started: it mints tokens itself."""
    _sampling: bool = False

    def start(self, timeout: float = 30.0) -> None:
        if self.external:
            if self.pid is not None:
                self._start_sampling()
            return
        self.process = subprocess.Popen(
            self.command,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **self.env},
            cwd=ROOT,
            preexec_fn=_raise_fd_limit,
        )
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=_pump, args=(self.process.stdout, lines), daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if "listening on" in line:
                self.port = int(line.strip().rsplit(":", 1)[1])
                self.pid = self.process.pid
                self._start_sampling()
                return
        self.stop()
        raise RuntimeError(f"{self.name} did not start")

    @property
    def protocol(self) -> str:
        """How the load generator speaks to it (bench/loadgen/targets.mjs)."""
        return self.name

    def publisher_port(self) -> int:
        return self.port

    def subscriber_ports(self) -> list[int]:
        return [self.port]

    def mint(self, user: str, tenant: str, roles: Iterable[str] = ()) -> str:
        from voisnap.server.auth import TokenAuthority

        assert self.secret is not None, "only a server the harness started can mint tokens"
        return TokenAuthority(self.secret.encode()).issue(user, tenant, roles, ttl=86400)

    def _start_sampling(self) -> None:
        self._sampling = True
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        handle = psutil.Process(self.pid)
        started = time.monotonic()
        while self._sampling and handle.is_running():
            try:
                cpu = handle.cpu_times()
                self.samples.append(
                    (time.monotonic() - started, handle.memory_info().rss, cpu.user + cpu.system)
                )
            except psutil.Error:
                return
            time.sleep(0.2)

    def rss(self) -> float:
        if self.pid is None:
            return math.nan
        return psutil.Process(self.pid).memory_info().rss

    def cpu_seconds(self) -> float:
        if self.pid is None:
            return math.nan
        cpu = psutil.Process(self.pid).cpu_times()
        return cpu.user + cpu.system

    def stop(self) -> None:
        self._sampling = False
        _end(self.process)


def _end(process: subprocess.Popen | None) -> None:
    """SIGTERM the process we started (by its PID), SIGKILL it if it lingers."""
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def voisnap_server(
    data_dir: Path, settings: dict[str, str] | None = None, secret: str | None = None
) -> ServerUnderTest:
    secret = secret or os.urandom(32).hex()
    env = {
        "VOISNAP_JWT_SECRET": secret,
        **{f"VOISNAP_{k.upper()}": v for k, v in (settings or {}).items()},
    }
    server = ServerUnderTest(
        "voisnap",
        [sys.executable, "-m", "voisnap", "serve", "--port", "0", "--data-dir", str(data_dir)],
        env,
    )
    server.secret = secret
    server.token = server.mint("bench", "bench")
    return server


@attrs.define
class ClusterUnderTest:
    """Several voisnap processes on one backplane (and one store), each on its
    own port: the publisher connects to the first, the subscribers to the
    others, so that every delivery crosses the backplane. ``voisnap serve
    --workers N`` would put them behind one port, where the kernel, not the
    harness, decides which process a client lands on."""

    name: str
    members: list[ServerUnderTest]
    protocol: str = "voisnap"

    @property
    def host(self) -> str:
        return self.members[0].host

    @property
    def port(self) -> int:
        return self.members[0].port

    @property
    def token(self) -> str:
        return self.members[0].token

    @property
    def samples(self) -> list[tuple[float, int, float]]:
        """Every member's samples, summed (their samplers tick together)."""
        columns = zip(*(member.samples for member in self.members), strict=False)
        return [(row[0][0], sum(r[1] for r in row), sum(r[2] for r in row)) for row in columns]

    def publisher_port(self) -> int:
        return self.members[0].port

    def subscriber_ports(self) -> list[int]:
        return [member.port for member in self.members[1:]] or [self.members[0].port]

    def start(self) -> None:
        for member in self.members:
            member.start()

    def stop(self) -> None:
        for member in self.members:
            member.stop()

    def mint(self, user: str, tenant: str, roles: Iterable[str] = ()) -> str:
        return self.members[0].mint(user, tenant, roles)

    def rss(self) -> float:
        return sum(member.rss() for member in self.members)

    def cpu_seconds(self) -> float:
        return sum(member.cpu_seconds() for member in self.members)


def voisnap_cluster(
    name: str, data_dir: Path, settings: dict[str, str], processes: int
) -> ClusterUnderTest:
    """``processes`` voisnap servers sharing ``settings`` (a Redis URL, maybe
    a database), one JWT secret and one data dir."""
    secret = os.urandom(32).hex()
    members = [voisnap_server(data_dir, settings, secret) for _ in range(processes)]
    return ClusterUnderTest(name, members)


def external_voisnap(url: str, token: str, pid: int | None) -> ServerUnderTest:
    """A voisnap that is already running at ``url`` (http://host:port)."""
    host, port = url.split("://", 1)[-1].rstrip("/").rsplit(":", 1)
    return ServerUnderTest(
        "voisnap", host=host, port=int(port), token=token, pid=pid, external=True
    )


def free_port() -> int:
    """A loopback port nobody holds now, for a server that cannot be told to take
    port 0 and print it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@attrs.define
class NatsServer:
    """The run's own ``nats-server`` on a free loopback port: the event bus that the
    topics scenario's producer publishes on. Core NATS only (no JetStream): voisnap
    subscribes to plain subjects, and a store would only add disk writes."""

    port: int = attrs.Factory(free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        """Start it and wait until it speaks first (its INFO line), as NATS servers do."""
        binary = shutil.which("nats-server", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
        if binary is None:
            raise RuntimeError("nats-server not found: install the Debian package nats-server")
        self.process = subprocess.Popen(
            [binary, "-a", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            if self._answers():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nats-server did not start on 127.0.0.1:{self.port}")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                return sock.recv(5) == b"INFO "
        except OSError:
            return False

    def stop(self) -> None:
        _end(self.process)


def peer_server(name: str) -> ServerUnderTest:
    module = {
        "websockets": "bench.peers.websockets_server",
        "socketio": "bench.peers.socketio_server",
    }
    return ServerUnderTest(name, [sys.executable, "-m", module[name], "--port", "0"])


def _pump(stream: Iterable[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


# -- the load generator --------------------------------------------------------------------------


class Worker:
    """One Node load-generator process."""

    def __init__(self, script: Path = WORKER) -> None:
        self.process = subprocess.Popen(
            ["node", str(script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            preexec_fn=_raise_fd_limit,
        )
        self._replies: queue.Queue[str] = queue.Queue()
        threading.Thread(
            target=_pump, args=(self.process.stdout, self._replies), daemon=True
        ).start()

    def send(self, **command: object) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def reply(self, event: str, timeout: float = REPLY_TIMEOUT) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no '{event}' from the load generator")
            line = self._replies.get(timeout=remaining)
            message = json.loads(line)
            if message.get("event") == "error":
                raise RuntimeError(f"load generator: {message['error']}")
            if message.get("event") == event:
                return message

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.send(cmd="quit")
                self.process.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()


class LoadGenerator:
    """``workers`` Node processes; worker 0 also holds the publisher."""

    script = WORKER

    def __init__(self, workers: int) -> None:
        self.workers = [Worker(self.script) for _ in range(workers)]

    def connect(
        self,
        server: ServerUnderTest | ClusterUnderTest,
        target: str,
        subscribers: int,
        group: str,
        subscriber_ports: list[int] | None = None,
    ) -> int:
        """Connect the subscribers (spread over ``subscriber_ports``, by default
        the server's), then the publisher."""
        common = {"target": target, "host": server.host, "token": server.token, "group": group}
        ports = subscriber_ports or server.subscriber_ports()
        shares = _split(subscribers, len(self.workers))
        for index, (worker, share) in enumerate(zip(self.workers, shares, strict=True)):
            worker.send(cmd="connect", count=share, port=ports[index % len(ports)], **common)
        connected = 0
        for worker in self.workers:
            reply = worker.reply("connected", timeout=300)
            connected += reply["count"]
            if reply["failed"]:
                print(f"  {reply['failed']} subscribers failed to connect: {reply['error']}")
        self.workers[0].send(cmd="publisher", port=server.publisher_port(), **common)
        self.workers[0].reply("publisher")
        return connected

    def begin(self, timeline: bool = False) -> None:
        """Start a measurement; ``timeline`` keeps each second's highest latency too."""
        for worker in self.workers:
            worker.send(cmd="begin", timeline=timeline)
        for worker in self.workers:
            worker.reply("begun")

    def publish(self, rate: float, duration: float, size: int) -> dict:
        self.workers[0].send(cmd="publish", rate=rate, duration=duration, size=size)
        return self.workers[0].reply("published", timeout=duration + 60)

    def end(self, quiet_ms: int = 300, max_wait_ms: int = 5000) -> list[dict]:
        for worker in self.workers:
            worker.send(cmd="end", quiet_ms=quiet_ms, max_wait_ms=max_wait_ms)
        return [worker.reply("step") for worker in self.workers]

    def stall(self, count: int) -> None:
        shares = _split(count, len(self.workers))
        for worker, share in zip(self.workers, shares, strict=True):
            worker.send(cmd="stall", count=share)
        for worker in self.workers:
            worker.reply("stalled")

    def start_churn(self, population: int, rate: float) -> int:
        """Clients that connect, join the group, stay ``population / rate``
        seconds and leave: ``rate`` arrivals a second, shared by the workers.
        Returns once the population is in."""
        lifetime_ms = 1000 * population / rate
        shares = _split(population, len(self.workers))
        for worker, share in zip(self.workers, shares, strict=True):
            worker.send(
                cmd="churn",
                population=share,
                rate=rate / len(self.workers),
                lifetime_ms=lifetime_ms,
            )
        return sum(worker.reply("churning", timeout=300)["count"] for worker in self.workers)

    def stop_churn(self) -> list[dict]:
        for worker in self.workers:
            worker.send(cmd="churn_stop")
        return [worker.reply("churned") for worker in self.workers]

    def close(self) -> None:
        for worker in self.workers:
            worker.close()


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if index < total % parts else 0) for index in range(parts)]


class ChatLoad:
    """Node processes holding chat devices (``bench/loadgen/chat.mjs``)."""

    script = CHAT_WORKER

    def __init__(self, workers: int) -> None:
        self.workers = [Worker(self.script) for _ in range(workers)]

    def setup(
        self,
        server: ServerUnderTest | ClusterUnderTest,
        sessions: int,
        devices: int,
        setup_agent: str,
    ) -> int:
        """Create ``sessions`` sessions, one user each, with ``devices`` joined
        devices; on a cluster, a session's devices go to different processes."""
        everyone = [
            {"id": f"bench-session-{n}", "token": server.mint(f"bench-user-{n}", "bench")}
            for n in range(sessions)
        ]
        shares = _split(sessions, len(self.workers))
        start = 0
        for worker, share in zip(self.workers, shares, strict=True):
            worker.send(
                cmd="setup",
                host=server.host,
                ports=[server.publisher_port(), *server.subscriber_ports()],
                devices=devices,
                setup_agent=setup_agent,
                sessions=everyone[start : start + share],
            )
            start += share
        return sum(worker.reply("ready", timeout=300)["devices"] for worker in self.workers)

    def run(self, agent: str, timeout: float) -> list[dict]:
        for worker in self.workers:
            worker.send(cmd="run", agent=agent, timeout_ms=int(timeout * 1000))
        return [worker.reply("done", timeout=timeout + 60) for worker in self.workers]

    def close(self) -> None:
        for worker in self.workers:
            worker.close()


class StreamLoad(ChatLoad):
    """Node processes holding ``/v1/stream`` sessions, one connection each
    (``bench/loadgen/stream.mjs``). It answers ``setup`` and ``run`` as the chat
    devices do, so that the two faces are measured by the same code; a session
    has one connection, whatever ``devices`` says."""

    script = STREAM_WORKER


# -- latency histograms --------------------------------------------------------------------------


@attrs.frozen
class Latency:
    """Percentiles in milliseconds, from merged log-scale histograms (2% buckets)."""

    p50: float
    p95: float
    p99: float
    p999: float
    max: float

    @classmethod
    def from_reports(cls, reports: list[dict]) -> Latency:
        merged: Counter[int] = Counter()
        for report in reports:
            merged.update({int(bucket): count for bucket, count in report["histogram"].items()})
        maximum = max((report["max_us"] for report in reports), default=0) / 1000
        return cls(
            p50=_percentile(merged, 0.50),
            p95=_percentile(merged, 0.95),
            p99=_percentile(merged, 0.99),
            p999=_percentile(merged, 0.999),
            max=maximum,
        )


def _percentile(histogram: Counter[int], fraction: float) -> float:
    total = sum(histogram.values())
    if not total:
        return math.nan
    rank = fraction * total
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= rank:
            # the bucket's geometric middle, microseconds to milliseconds
            return math.exp((bucket + 0.5) * LOG_RATIO) / 1000
    return math.nan

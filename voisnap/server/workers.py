"""``voisnap serve --workers N``: N worker processes behind one port, supervised.

Each worker is a whole voisnap server (``voisnap worker``, with the same
settings and ``--workers 1``) that binds the port with ``SO_REUSEPORT``, so the
kernel spreads new connections over the workers; the Redis backplane makes
them one server to clients (issue 10: no sticky sessions). With ``--port 0``
the supervisor picks the free port first and holds it (bound, not listening, so
it never receives a connection) while workers come and go.

The supervisor starts the workers, prints ``voisnap listening on <url>`` once
every one of them listens, and then watches them without polling: each
worker's pidfd and a self-pipe for signals go in one ``select``. A worker that
dies is logged and started again (after a pause that grows while it keeps
dying young). SIGTERM or SIGINT stops every worker gracefully (they close
their clients with a Close that invites a reconnect), then the supervisor.
"""

from __future__ import annotations

import ctypes
import datetime
import json
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import attrs

from ..config import Settings
from .secrets import load_secret

log = logging.getLogger(__name__)

SETTINGS_ENV = "VOISNAP_WORKER_SETTINGS"
SUPERVISOR_ENV = "VOISNAP_SUPERVISOR_PID"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
READY_PREFIX = "voisnap listening on "
START_TIMEOUT = 60.0
YOUNG = 5.0  # a worker that dies sooner than this after starting is restarted more slowly
MAX_PAUSE = 10.0


def worker_settings(settings: Settings, port: int) -> str:
    """The settings a worker runs with, as JSON for its environment."""
    values = attrs.asdict(settings, recurse=False)
    values.update(workers=1, port=port)
    return json.dumps({name: _plain(value) for name, value in values.items()})


def die_with_supervisor(environ: dict[str, str] | None = None) -> bool:
    """Make this worker end when its supervisor ends, however it ends (``kill -9``,
    the OOM killer): Linux then sends the worker SIGTERM, and it stops gracefully.
    Orphaned workers would go on holding the port, unsupervised, beside the next
    voisnap started on it. False if the supervisor is already gone (the worker
    should not start). The supervisor starts workers from its main thread, which
    lives as long as it does (the signal follows the thread that forked)."""
    supervisor = int((environ or os.environ).get(SUPERVISOR_ENV, "0"))
    if not supervisor or not sys.platform.startswith("linux"):
        return True
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    return os.getppid() == supervisor  # it may have died before the prctl


def settings_of_worker(environ: dict[str, str] | None = None) -> Settings:
    values = json.loads((environ or os.environ)[SETTINGS_ENV])
    return Settings(**values)


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, datetime.date):
        return value.isoformat()
    return value


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to the port with SO_REUSEPORT, never listening: it picks
    the port when ``port`` is 0, and keeps it while the workers restart."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    holder = socket.socket(family, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind((host, port))
    return holder


@attrs.define
class Worker:
    index: int
    process: subprocess.Popen[str]
    pidfd: int
    started_at: float
    pause: float = 0.0


class Supervisor:
    def __init__(self, settings: Settings, ready: Callable[[str], None]) -> None:
        self.settings = settings
        self._ready = ready
        self._holder = reserve_port(settings.host, settings.port)
        self.port = self._holder.getsockname()[1]
        self._env = {
            **os.environ,
            SETTINGS_ENV: worker_settings(settings, self.port),
            SUPERVISOR_ENV: str(os.getpid()),
        }
        self._workers: dict[int, Worker] = {}
        self._due: dict[int, tuple[float, float]] = {}  # index -> (restart at, pause)
        self._selector = selectors.DefaultSelector()
        self._signals_read, self._signals_write = os.pipe()
        self._stopping = False

    def run(self) -> int:
        load_secret(self.settings.data_dir)  # made once here, not raced by N workers
        os.set_blocking(self._signals_write, False)
        signal.set_wakeup_fd(self._signals_write)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: None)  # the wakeup fd carries it
        self._selector.register(self._signals_read, selectors.EVENT_READ, None)
        urls = [self._start(index) for index in range(self.settings.workers)]
        if None in urls:
            self._stop_all()
            return 1
        self._ready(f"{READY_PREFIX}{urls[0]}")
        while not self._stopping:
            self._wait_for_an_event()
            self._start_those_due()
        self._stop_all()
        return 0

    def _start(self, index: int, pause: float = 0.0) -> str | None:
        """Start worker ``index``; its URL once it listens (None if it failed)."""
        process = subprocess.Popen(
            [sys.executable, "-m", "voisnap", "worker"],
            env=self._env,
            stdout=subprocess.PIPE,
            text=True,
        )
        pidfd = os.pidfd_open(process.pid)
        worker = Worker(index, process, pidfd, time.monotonic(), pause)
        self._workers[index] = worker
        self._selector.register(pidfd, selectors.EVENT_READ, worker)
        log.info("worker %d started (pid %d)", index, process.pid)
        return _read_ready_line(process)

    def _wait_for_an_event(self) -> None:
        """Until a worker dies, a signal comes, or a restart is due."""
        timeout = None
        if self._due:
            timeout = max(0.0, min(at for at, _ in self._due.values()) - time.monotonic())
        for key, _ in self._selector.select(timeout):
            if key.data is None:
                os.read(self._signals_read, 512)
                log.info("stopping %d workers", len(self._workers))
                self._stopping = True
            else:
                self._restart(key.data)

    def _restart(self, worker: Worker) -> None:
        """A worker died: start it again, at once, or after a pause that grows
        while it keeps dying young (it must not spin)."""
        self._selector.unregister(worker.pidfd)
        os.close(worker.pidfd)
        code = worker.process.wait()
        log.error(
            "worker %d (pid %d) exited with %s; starting it again",
            worker.index,
            worker.process.pid,
            code,
        )
        young = time.monotonic() - worker.started_at < YOUNG
        pause = min(MAX_PAUSE, max(0.25, worker.pause * 2)) if young else 0.0
        self._due[worker.index] = (time.monotonic() + pause, pause)

    def _start_those_due(self) -> None:
        now = time.monotonic()
        for index, (at, pause) in list(self._due.items()):
            if at <= now and not self._stopping:
                del self._due[index]
                if self._start(index, pause) is None:
                    log.error("worker %d did not start", index)

    def _stop_all(self) -> None:
        workers = list(self._workers.values())
        for worker in workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.shutdown_timeout + 5
        for worker in workers:
            try:
                worker.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
        self._holder.close()


def _read_ready_line(process: subprocess.Popen[str]) -> str | None:
    """The URL a worker prints once it listens (None if it ends or takes too
    long first). A thread reads its output, and drains the rest: a full pipe
    would block the worker."""
    assert process.stdout is not None
    stdout = process.stdout
    found: list[str] = []
    ready = threading.Event()

    def read() -> None:
        for line in stdout:
            if not found and line.startswith(READY_PREFIX):
                found.append(line[len(READY_PREFIX) :].strip())
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    ready.wait(START_TIMEOUT)
    return found[0] if found else None

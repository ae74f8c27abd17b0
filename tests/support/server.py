"""A real ``voisnap serve`` process on 127.0.0.1, for tests that talk over sockets.

Started with ``--port 0``; ready once it prints ``voisnap listening on ...``
(waited for with a timeout, never a fixed sleep); stopped with SIGTERM, then
SIGKILL if it does not go. Settings are shrunk through ``VOISNAP_*`` variables
so that timeouts can be observed quickly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0


class ServerProcess:
    def __init__(
        self,
        data_dir: Path,
        settings: Mapping[str, str] | None = None,
        args: Iterable[str] = (),
        port: int = 0,
    ) -> None:
        self.data_dir = data_dir
        self.settings = dict(settings or {})
        self.args = list(args)
        self.requested_port = port
        self.process: subprocess.Popen[str] | None = None
        self.url = ""
        self.port = 0
        self.stderr_lines: list[str] = []
        self.stdout_lines: list[str] = []

    # -- life --------------------------------------------------------------------------------------

    def start(self) -> ServerProcess:
        env = {**os.environ, **{f"VOISNAP_{k.upper()}": str(v) for k, v in self.settings.items()}}
        if "jwt_secret" not in self.settings:
            env.pop("VOISNAP_JWT_SECRET", None)  # use the data dir's secret, as a user would
        command = [
            sys.executable, "-m", "voisnap", "serve",
            "--host", "127.0.0.1", "--port", str(self.requested_port),
            "--data-dir", str(self.data_dir), *self.args,
        ]
        self.process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        ready = threading.Event()
        threading.Thread(target=self._read_stdout, args=(ready,), daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        if not ready.wait(START_TIMEOUT) or not self.url:
            self.stop()
            raise RuntimeError(
                "voisnap serve did not start:\n" + "".join(self.stderr_lines[-40:])
            )
        self.port = int(self.url.rsplit(":", 1)[1])
        return self

    def _read_stdout(self, ready: threading.Event) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.stdout_lines.append(line)
            if line.startswith("voisnap listening on "):
                self.url = line.split()[-1]
                ready.set()
        ready.set()

    def _read_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr_lines.append(line)

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(sig)
        try:
            return self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(STOP_TIMEOUT)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- helpers -----------------------------------------------------------------------------------

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1)

    def hub_url(self, hub: str = "playground") -> str:
        return f"{self.url}/hubs/{hub}"

    def token(
        self,
        user: str = "alice",
        tenant: str = "acme",
        roles: Iterable[str] = (),
        ttl: float = 3600,
    ) -> str:
        """A token from the real ``voisnap token`` command (same data dir, same secret)."""
        command = [
            sys.executable, "-m", "voisnap", "token", "--user", user, "--tenant", tenant,
            "--ttl", str(ttl), "--data-dir", str(self.data_dir),
            *[arg for role in roles for arg in ("--role", role)],
        ]
        env = {**os.environ, **{f"VOISNAP_{k.upper()}": str(v) for k, v in self.settings.items()}}
        return subprocess.run(command, env=env, check=True, capture_output=True, text=True,
                              timeout=30).stdout.strip()

    def rss_bytes(self) -> int:
        assert self.process is not None
        with open(f"/proc/{self.process.pid}/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    @property
    def log(self) -> str:
        return "".join(self.stderr_lines)

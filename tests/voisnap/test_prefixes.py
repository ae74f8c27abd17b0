"""Where the two products' hubs live (docs/hubs/voisnap.md, "Where they live"):
``--voisnap-hubs-prefix /hubs`` gives the Voisnap documents' exact URLs once the
Sophon hubs move elsewhere; the same prefix for both stops the start, clearly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import FAST_SETTINGS
from tests.support.node import run_scenario
from tests.support.server import ServerProcess
from voisnap.config import Settings


def test_the_seeds_urls_with_the_sophon_hubs_elsewhere(tmp_path: Path) -> None:
    settings = {**FAST_SETTINGS, "agent_token_delay": "0.001",
                "voisnap_hubs_prefix": "/hubs", "sophon_hubs_prefix": "/sophon/hubs"}
    with ServerProcess(tmp_path / "data", settings) as server:
        token = server.token()
        seen = run_scenario("voisnap_chat.mjs", timeout=60, token=token,
                            url=f"{server.url}/hubs/chat?agentId=sophon", steps=["send:hi"])
        assert seen["started"]["sessionId"].startswith("vchat_")
        headers = {"authorization": f"Bearer {token}"}
        for path, status in (("/sophon/hubs/chat", 200), ("/hubs/voice", 200),
                             ("/hubs/tasks", 404), ("/voisnap/hubs/chat", 404)):
            response = httpx.post(f"{server.url}{path}/negotiate?negotiateVersion=1",
                                  headers=headers, timeout=5)
            assert response.status_code == status, (path, response.text)


@pytest.mark.parametrize(("flags", "message"), [
    (["--voisnap-hubs-prefix", "/hubs"], "are both '/hubs'"),
    (["--sophon-hubs-prefix", "/voisnap/hubs"], "are both '/voisnap/hubs'"),
    (["--voisnap-hubs-prefix", "hubs"], "must be a path like /hubs"),
    (["--sophon-hubs-prefix", "/hubs/"], "must be a path like /hubs"),
])
def test_prefixes_that_cannot_work_stop_the_start(
    tmp_path: Path, flags: list[str], message: str,
) -> None:
    command = [sys.executable, "-m", "voisnap", "serve", "--port", "0",
               "--data-dir", str(tmp_path / "data"), *flags]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert done.returncode != 0 and message in done.stderr, done.stderr


def test_the_defaults_keep_the_sophon_hubs_where_they_were() -> None:
    settings = Settings()
    assert (settings.sophon_hubs_prefix, settings.voisnap_hubs_prefix) == ("/hubs", "/voisnap/hubs")

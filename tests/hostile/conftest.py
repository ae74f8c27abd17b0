"""Fixtures of the hostile-input suite (issue 8: a single message from a logged-in
user must never stop the server).

- ``server``: one real ``voisnap serve`` per module, with the shrunk timeouts of
  ``tests/conftest.py``, the suite's JWT secret and the module's own
  ``SERVER_SETTINGS``. If a case kills it, the next test gets a new one, so
  that one crash does not hide the results of the cases after it.
- ``neighbour``: a well-behaved client in group "neighbours", opened before
  each case; every case ends with ``await neighbour.check()`` (and if a test
  does not get that far, the fixture checks on the way out).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.conftest import FAST_SETTINGS
from tests.hostile.helpers import SECRET, Neighbour, open_neighbour
from tests.support.server import ServerProcess


class ServerSlot:
    """The module's server, started again if a case killed it."""

    def __init__(self, data_dir: Any, settings: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.settings = settings
        self.process: ServerProcess | None = None

    def current(self) -> ServerProcess:
        if self.process is None or self.process.process.poll() is not None:
            self.process = ServerProcess(self.data_dir, self.settings).start()
        return self.process

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@pytest.fixture(scope="module")
def server_slot(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerSlot]:
    settings = {**FAST_SETTINGS, "jwt_secret": SECRET,
                **getattr(request.module, "SERVER_SETTINGS", {})}
    slot = ServerSlot(tmp_path_factory.mktemp("voisnap-data"), settings)
    yield slot
    slot.stop()


@pytest.fixture
def server(server_slot: ServerSlot) -> ServerProcess:
    return server_slot.current()


@pytest.fixture
async def neighbour(server: ServerProcess) -> AsyncIterator[Neighbour]:
    async with open_neighbour(server) as neighbour:
        yield neighbour
        if not neighbour.checked:
            await neighbour.check()

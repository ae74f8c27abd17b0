"""The node tests' server: one real ``voisnap serve`` per module.

Client results wait up to 30 s here (the shrunk 2 s of ``FAST_SETTINGS`` would
end a node's command before the test means it to); a command's own timeout
bounds its wait for the node.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import FAST_SETTINGS
from tests.support.server import ServerProcess

NODE_SETTINGS = {**FAST_SETTINGS, "client_result_timeout": "30"}


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("nodes") / "data", NODE_SETTINGS) as server:
        yield server

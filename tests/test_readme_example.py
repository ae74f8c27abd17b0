"""The README's "Writing a hub" example runs as printed, on the bare framework.

Issue 9: the framework builds without the product. The example is taken from
README.md verbatim and run in its own process in which importing the product
(``voisnap.apps``, ``voisnap.agents``, ``voisnap.storage``) fails; a client then
calls its methods over a real WebSocket.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import trio

from tests.support.ws_client import COMPLETION, STREAM_ITEM, open_hub_client

ROOT = Path(__file__).resolve().parent.parent
CEILING = 30

# Run the example with the product made unimportable: a None in sys.modules
# makes "import voisnap.apps" raise ImportError.
BLOCK_THE_PRODUCT = """
import runpy, sys
for name in ("voisnap.apps", "voisnap.agents", "voisnap.storage"):
    sys.modules[name] = None
runpy.run_path(sys.argv[1], run_name="__main__")
"""


def readme_example() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Writing a hub") :]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found is not None, "the README has no Python example under 'Writing a hub'"
    return found.group(1)


def start_example(tmp_path: Path) -> tuple[subprocess.Popen[str], str]:
    script = tmp_path / "notes_server.py"
    script.write_text(readme_example())
    env = {
        **os.environ,
        "VOISNAP_HOST": "127.0.0.1",
        "VOISNAP_PORT": "0",
        "VOISNAP_DATA_DIR": str(tmp_path / "data"),
    }
    env.pop("VOISNAP_JWT_SECRET", None)
    process = subprocess.Popen(
        [sys.executable, "-c", BLOCK_THE_PRODUCT, str(script)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ready = threading.Event()
    url: list[str] = []

    def read_stdout() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("voisnap listening on "):
                url.append(line.split()[-1])
                ready.set()
        ready.set()

    threading.Thread(target=read_stdout, daemon=True).start()
    if not ready.wait(CEILING) or not url:
        process.kill()
        raise AssertionError(f"the example did not start:\n{process.stderr.read()}")  # type: ignore[union-attr]
    return process, url[0]


def token_for(tmp_path: Path) -> str:
    command = [
        sys.executable, "-m", "voisnap", "token", "--user", "ada", "--tenant", "acme",
        "--data-dir", str(tmp_path / "data"),
    ]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


def test_readme_example_names_no_product_module() -> None:
    example = readme_example()
    assert "voisnap.apps" not in example and "create_product" not in example
    assert "trio.run(serve, server)" in example


async def test_readme_example_serves_its_hub_without_the_product(tmp_path: Path) -> None:
    process, url = start_example(tmp_path)
    try:
        token = token_for(tmp_path)
        ws_url = url.replace("http://", "ws://") + "/hubs/notes"
        with trio.fail_after(CEILING):
            async with open_hub_client(ws_url, token=token) as client:
                assert await client.call("Add", {"title": "milk", "isPinned": True}) == "milk"
                added = await client.receive_message()
                assert added["target"] == "NoteAdded"
                assert added["arguments"] == [{"title": "milk", "isPinned": True}]

                refused = await client.invoke("Add", {"title": ""})
                assert "A note needs a title." in refused["error"]

                await client.send_record(
                    {"type": 4, "invocationId": "c", "target": "Countdown", "arguments": [3]}
                )
                items = []
                while (message := await client.receive_message())["type"] != COMPLETION:
                    assert message["type"] == STREAM_ITEM
                    items.append(message["item"])
                assert items == [3, 2, 1]
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(CEILING)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(CEILING)
    assert process.returncode == 0, process.stderr.read() if process.stderr else ""

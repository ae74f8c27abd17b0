"""``--log-format json`` and ``--log-level`` on a real ``voisnap serve`` (docs/operations.md).

Every line on stderr is one JSON object with time, level, logger and message,
and the context of the hub connection it came from; the start-up line stays
plain text on stdout; the JWT a client used appears in no line.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
from collections.abc import Callable
from typing import Any

import httpx
import trio

from tests.support.server import ServerProcess
from tests.support.ws_client import RECORD_SEPARATOR, open_hub_client
from voisnap.logs import TEXT_FORMAT, JsonFormatter, RedactingFormatter, log_context

WAIT = 10.0


async def wait_for_line(server: ServerProcess, predicate: Callable[[str], bool]) -> str:
    """The first stderr line that ``predicate`` accepts (the stderr reader is a thread)."""
    with trio.fail_after(WAIT):
        while True:
            for line in list(server.stderr_lines):
                if predicate(line):
                    return line
            await trio.sleep(0.02)


def parsed(server: ServerProcess) -> list[dict[str, Any]]:
    lines = [line for line in server.stderr_lines if line.strip()]
    return [json.loads(line) for line in lines]


async def scripted_session(server: ServerProcess, token: str) -> None:
    """Connect with the token in the query (as browsers do), work, and make a
    client mistake that is logged at info with the connection's context."""
    async with httpx.AsyncClient() as http:  # REST, with the token in the query
        response = await http.get(f"{server.url}/sessions", params={"access_token": token})
        assert response.status_code == 200
    async with open_hub_client(f"{server.ws_url}/hubs/playground", token=token) as client:
        assert await client.call("Echo", "hi") == "hi"
        await client.send_raw("{not json" + RECORD_SEPARATOR)  # the server closes it
        close = await client.receive_close()
        assert "error" in close


async def test_logs_json_lines_carry_fields_and_connection_context(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server({"log_format": "json", "access_log": "true"})
    token = server.token("alice", "acme")
    await scripted_session(server, token)
    line = await wait_for_line(server, lambda text: "protocol error" in text)

    # The start-up line is plain text on stdout, as before.
    assert any(text.startswith("voisnap listening on http://") for text in server.stdout_lines)
    document = json.loads(line)
    assert document["level"] == "info"  # a client's mistake, not a server fault
    assert document["logger"].startswith("voisnap.")
    assert document["hub"] == "/hubs/playground"
    assert document["user_id"] == "alice"
    assert document["tenant_id"] == "acme"
    assert re.fullmatch(r"[\w-]+", document["connection_id"])
    moment = datetime.datetime.fromisoformat(document["time"].replace("Z", "+00:00"))
    assert moment.utcoffset() == datetime.timedelta(0)

    server.stop()
    documents = parsed(server)  # every line is one JSON object
    assert documents
    for each in documents:
        assert {"time", "level", "logger", "message"} <= each.keys()
        assert each["level"] in ("debug", "info", "warning", "error", "critical")
    assert not [text for text in server.stderr_lines if token in text]
    assert not [text for text in server.stdout_lines if token in text]
    # The access log still names the upgrade, with the token redacted.
    assert any("[redacted]" in each["message"] for each in documents)


async def test_logs_level_warning_leaves_out_client_mistakes(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server({"log_format": "json", "log_level": "warning"})
    await scripted_session(server, server.token())
    server.stop()
    assert not [each for each in parsed(server) if each["level"] in ("debug", "info")]


async def test_logs_text_format_is_unchanged(start_server: Callable[..., ServerProcess]) -> None:
    server = start_server({"access_log": "true"})
    token = server.token()
    await scripted_session(server, token)
    line = await wait_for_line(server, lambda text: "protocol error" in text)
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO voisnap\.[\w.]+: ", line)
    server.stop()
    assert not [text for text in server.stderr_lines if token in text]


def test_logs_bad_format_or_level_is_refused(tmp_path: Any) -> None:
    import subprocess
    import sys

    for flag, value in (("--log-format", "xml"), ("--log-level", "loud")):
        result = subprocess.run(
            [sys.executable, "-m", "voisnap", "serve", "--data-dir", str(tmp_path), flag, value],
            capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 2
        assert flag in result.stderr


def record(message: str, *args: Any, exc_info: Any = None) -> logging.LogRecord:
    return logging.LogRecord("voisnap.test", logging.ERROR, __file__, 1, message, args, exc_info)


def test_logs_json_formatter_context_exception_and_redaction() -> None:
    formatter = JsonFormatter()
    with log_context(request_id="req-1", user_id="bob"):
        inside = json.loads(formatter.format(record("GET /x?access_token=%s", "eyJsecret")))
    assert inside["request_id"] == "req-1" and inside["user_id"] == "bob"
    assert "eyJsecret" not in inside["message"] and "[redacted]" in inside["message"]
    outside = json.loads(formatter.format(record("plain")))
    assert "request_id" not in outside and "user_id" not in outside
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        import sys

        failed = json.loads(formatter.format(record("failed", exc_info=sys.exc_info())))
    assert "RuntimeError: boom" in failed["exception"]
    text = RedactingFormatter(TEXT_FORMAT).format(record("Authorization: Bearer abc.def"))
    assert "abc.def" not in text and "ERROR voisnap.test: Authorization: Bearer [redacted]" in text

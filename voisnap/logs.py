"""The server's log lines: ``--log-format text|json`` and ``--log-level``.

Both formats go to standard error; standard output carries only the start-up
line (``voisnap listening on http://HOST:PORT``), in plain text whatever the
format, because clients and tests read it.

``json`` writes one object per line::

    {"time": "2026-01-02T03:04:05.678Z", "level": "info", "logger": "voisnap.hubs.invocations",
     "message": "...", "connection_id": "...", "hub": "/hubs/chat", "user_id": "alice",
     "tenant_id": "acme"}

The context fields (``connection_id``, ``hub``, ``user_id``, ``tenant_id``,
``request_id``) come from context variables set where a hub connection runs
(``HubServer.serve``) and where an HTTP request is handled (``VoisnapApp``);
trio copies them into every task started from there, so a line logged deep in
a hub method still names its connection. A field is left out where there is
none. ``exception`` holds the traceback when there is one.

Tokens never reach a line: the access log redacts ``access_token`` (as it
always did), and both formats, as a last guard, also replace any
``access_token=...`` or ``Bearer ...`` left in a message with ``[redacted]``.
"""

from __future__ import annotations

import contextvars
import datetime
import json
import logging
import re
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warning", "error", "critical")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

CONTEXT_FIELDS = ("connection_id", "hub", "user_id", "tenant_id", "request_id")
_context: dict[str, contextvars.ContextVar[str | None]] = {
    name: contextvars.ContextVar(f"voisnap_log_{name}", default=None) for name in CONTEXT_FIELDS
}

_SECRET = re.compile(r"((?:access_token|id_token|token)=|Bearer\s+)[^&\s\"']+", re.IGNORECASE)
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,64}")


@contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Name the connection, hub, user, tenant or request in every line logged
    inside (and in the tasks started inside), until the block ends."""
    tokens = [
        (_context[name], _context[name].set(value))
        for name, value in fields.items()
        if value is not None
    ]
    try:
        yield
    finally:
        for variable, token in reversed(tokens):
            variable.reset(token)


def current_context() -> dict[str, str]:
    """The context fields that are set now."""
    found = {}
    for name, variable in _context.items():
        value = variable.get()
        if value is not None:
            found[name] = value
    return found


def request_id_from(header: str | None) -> str:
    """The client's ``X-Request-Id`` when it is short and plain; otherwise a fresh one."""
    if header is not None and _SANE_REQUEST_ID.fullmatch(header):
        return header
    return secrets.token_hex(6)


def redact(text: str) -> str:
    return _SECRET.sub(r"\1[redacted]", text)


class RedactingFormatter(logging.Formatter):
    """The text format as it always was, with the last guard against tokens."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line (``json.dumps`` escapes newlines in tracebacks)."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        document: dict[str, Any] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        document.update(getattr(record, "voisnap_context", None) or current_context())
        if record.exc_info:
            document["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            document["exception"] = redact(record.exc_text)
        return json.dumps(document, ensure_ascii=False, default=str)


class ContextFilter(logging.Filter):
    """Take the context fields when the line is logged (not when it is formatted)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.voisnap_context = current_context()
        return True


def configure_logging(log_format: str = "text", level: str = "info") -> None:
    """Send the root logger's lines to standard error, in ``log_format``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(RedactingFormatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


def check_log_settings(log_format: str, level: str) -> None:
    if log_format not in FORMATS:
        raise ValueError(f"--log-format must be text or json, not {log_format!r}")
    if level.lower() not in LEVELS:
        raise ValueError(f"--log-level must be one of {', '.join(LEVELS)}, not {level!r}")

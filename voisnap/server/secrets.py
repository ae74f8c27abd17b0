"""The JWT signing secret: from ``VOISNAP_JWT_SECRET``, or made once in the data dir.

There is no well-known default secret. When the variable is unset, the first
``voisnap serve`` or ``voisnap token`` creates ``<data-dir>/jwt-secret`` with 32
random bytes, readable by its owner only (mode 0600), and every later run shares
it. The file is created atomically: written under a temporary name, then
hard-linked into place, which fails if another process won the race, in which
case we read the winner's secret.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

SECRET_ENV = "VOISNAP_JWT_SECRET"
SECRET_FILE = "jwt-secret"


def load_secret(data_dir: Path) -> bytes:
    from_env = os.environ.get(SECRET_ENV)
    if from_env:
        return from_env.encode()
    path = data_dir / SECRET_FILE
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        return _create(path)


def _create(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(32).encode()
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(secret)
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return path.read_bytes().strip()
        return secret
    finally:
        temporary.unlink(missing_ok=True)

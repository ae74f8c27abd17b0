"""``list_dir`` and ``read_file``, confined to the node's root.

docs/hubs/node.md, "The reference node": both "work under ``--root`` (default:
the current directory) and refuse any path that is absolute, contains ``..``,
or resolves (through symbolic links) outside the root". The first two checks
read the text of the path; the third resolves it on the disk, so a symbolic
link inside the root that points outside (to a file or to a directory) is
refused as well.

These functions block on the filesystem: callers run them through
``trio.to_thread.run_sync`` (``commands.py`` does).
"""

from __future__ import annotations

import base64
import os
import re
import stat
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import CommandError

READ_LIMIT = 16 * 1024
"""``read_file``'s default and largest ``maxBytes``: 16 KiB, so that the file (base64 for
binary content) fits in one answer to the gateway (``executor.MAX_RESULT_BYTES``)."""


def confine(root: Path, path: str) -> Path:
    """The real path of ``path`` under ``root``, or CommandError saying why not."""
    if path.startswith(("/", "\\")) or os.path.isabs(path) or os.path.splitdrive(path)[0]:
        raise CommandError(f"The path {path!r} is absolute; give a path relative to the root.")
    if ".." in re.split(r"[\\/]", path):
        raise CommandError(f"The path {path!r} contains '..'; paths must stay under the root.")
    try:
        real_root = root.resolve(strict=True)
        real_path = (real_root / path).resolve(strict=True)
    except FileNotFoundError:
        raise CommandError(f"No such file or directory: {path!r}.") from None
    except (OSError, RuntimeError, ValueError) as error:  # a loop of links, a NUL byte
        raise CommandError(f"The path {path!r} cannot be resolved: {error}.") from None
    if not real_path.is_relative_to(real_root):
        raise CommandError(
            f"The path {path!r} leads outside the root (through a symbolic link); refused."
        )
    return real_path


def shown_path(path: str) -> str:
    """The path as the result shows it: ``./a//b/`` is ``a/b``; the root is ``.``."""
    return PurePosixPath(path.replace("\\", "/")).as_posix()


def list_dir(root: Path, path: str) -> dict[str, Any]:
    """``{path, entries: [{name, type, size}]}``, sorted by name."""
    directory = confine(root, path)
    if not directory.is_dir():
        raise CommandError(f"{path!r} is not a directory.")
    try:
        with os.scandir(directory) as scan:
            entries = [_entry(entry) for entry in scan]
    except OSError as error:
        raise CommandError(f"Cannot list {path!r}: {error.strerror or error}.") from None
    entries.sort(key=lambda entry: entry["name"])
    return {"path": shown_path(path), "entries": entries}


def _entry(entry: os.DirEntry) -> dict[str, Any]:
    # Not followed: a link is shown as a link, whatever it points at.
    info = entry.stat(follow_symlinks=False)
    return {"name": entry.name, "type": _type_name(info.st_mode), "size": info.st_size}


def _type_name(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISREG(mode):
        return "file"
    return "other"


def read_file(root: Path, path: str, max_bytes: int = READ_LIMIT) -> dict[str, Any]:
    """``{path, size, content}`` for UTF-8 text, ``{path, size, contentBase64}`` else."""
    file = confine(root, path)
    if not file.is_file():
        raise CommandError(f"{path!r} is not a regular file.")
    try:
        with file.open("rb") as stream:
            # One byte more than allowed tells a file at the limit from one over it,
            # even if the file grows between a stat and the read.
            data = stream.read(max_bytes + 1)
    except OSError as error:
        raise CommandError(f"Cannot read {path!r}: {error.strerror or error}.") from None
    if len(data) > max_bytes:
        raise CommandError(f"The file {path!r} is larger than the limit of {max_bytes} bytes.")
    shown = {"path": shown_path(path), "size": len(data)}
    try:
        return {**shown, "content": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {**shown, "contentBase64": base64.b64encode(data).decode("ascii")}

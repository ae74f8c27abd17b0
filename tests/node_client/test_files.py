"""``list_dir`` and ``read_file`` stay under the root (docs/hubs/node.md, "The
reference node"): absolute paths, ``..`` and symbolic links leading out are refused."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from voisnap.node_client.errors import CommandError
from voisnap.node_client.files import READ_LIMIT, confine, list_dir, read_file


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """``tmp_path/root`` with a nested file; ``tmp_path/outside`` next to it."""
    root = tmp_path / "root"
    (root / "docs" / "notes").mkdir(parents=True)
    (root / "docs" / "notes" / "todo.txt").write_text("buy milk\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("the secret\n")
    return root


def test_confine_a_nested_file(root: Path) -> None:
    assert confine(root, "docs/notes/todo.txt") == (root / "docs/notes/todo.txt").resolve()


def test_confine_the_root_itself(root: Path) -> None:
    assert confine(root, ".") == root.resolve()


@pytest.mark.parametrize("path", ["/etc/passwd", "\\windows"])
def test_confine_refuses_absolute_paths(root: Path, path: str) -> None:
    with pytest.raises(CommandError, match="is absolute"):
        confine(root, path)


@pytest.mark.parametrize("path", ["..", "../outside/secret.txt", "docs/../../outside", "docs/.."])
def test_confine_refuses_dot_dot(root: Path, path: str) -> None:
    """Even ``docs/..``, which would stay inside: the rule is about the text."""
    with pytest.raises(CommandError, match=r"contains '\.\.'"):
        confine(root, path)


def test_confine_refuses_a_symlink_to_a_file_outside(root: Path) -> None:
    (root / "link.txt").symlink_to(root.parent / "outside" / "secret.txt")
    with pytest.raises(CommandError, match="outside the root"):
        confine(root, "link.txt")


def test_confine_refuses_a_symlinked_directory_leaving_the_root(root: Path) -> None:
    (root / "door").symlink_to(root.parent / "outside", target_is_directory=True)
    with pytest.raises(CommandError, match="outside the root"):
        confine(root, "door/secret.txt")
    with pytest.raises(CommandError, match="outside the root"):
        confine(root, "door")


def test_confine_follows_a_symlink_that_stays_inside(root: Path) -> None:
    (root / "shortcut").symlink_to(root / "docs" / "notes", target_is_directory=True)
    assert confine(root, "shortcut/todo.txt") == (root / "docs/notes/todo.txt").resolve()


def test_confine_a_missing_path_is_an_error(root: Path) -> None:
    with pytest.raises(CommandError, match="No such file or directory: 'nope'"):
        confine(root, "nope")


def test_list_dir_entries_sorted_with_types_and_sizes(root: Path) -> None:
    (root / "b.bin").write_bytes(b"12345")
    (root / "a-link").symlink_to(root / "b.bin")
    os.mkfifo(root / "pipe")
    listing = list_dir(root, ".")
    assert listing["path"] == "."
    entries = {entry["name"]: entry for entry in listing["entries"]}
    assert [entry["name"] for entry in listing["entries"]] == ["a-link", "b.bin", "docs", "pipe"]
    assert entries["b.bin"] == {"name": "b.bin", "type": "file", "size": 5}
    assert entries["a-link"]["type"] == "symlink"
    assert entries["docs"]["type"] == "directory"
    assert entries["pipe"]["type"] == "other"


def test_list_dir_of_a_nested_directory_shows_its_path(root: Path) -> None:
    listing = list_dir(root, "./docs/notes/")
    assert listing == {
        "path": "docs/notes",
        "entries": [{"name": "todo.txt", "type": "file", "size": 9}],
    }


def test_list_dir_of_a_file_is_an_error(root: Path) -> None:
    with pytest.raises(CommandError, match="not a directory"):
        list_dir(root, "docs/notes/todo.txt")


def test_list_dir_refuses_a_symlinked_directory_leaving_the_root(root: Path) -> None:
    (root / "door").symlink_to(root.parent / "outside", target_is_directory=True)
    with pytest.raises(CommandError, match="outside the root"):
        list_dir(root, "door")


def test_read_file_text(root: Path) -> None:
    assert read_file(root, "docs/notes/todo.txt") == {
        "path": "docs/notes/todo.txt",
        "size": 9,
        "content": "buy milk\n",
    }


def test_read_file_binary_is_base64(root: Path) -> None:
    data = bytes(range(256))
    (root / "blob.bin").write_bytes(data)
    answer = read_file(root, "blob.bin")
    assert "content" not in answer
    assert answer["size"] == 256
    assert base64.b64decode(answer["contentBase64"]) == data


def test_read_file_at_the_limit_is_read(root: Path) -> None:
    (root / "ten.txt").write_text("0123456789")
    assert read_file(root, "ten.txt", max_bytes=10)["content"] == "0123456789"


def test_read_file_over_the_limit_names_the_limit(root: Path) -> None:
    (root / "eleven.txt").write_text("0123456789a")
    with pytest.raises(CommandError, match="larger than the limit of 10 bytes"):
        read_file(root, "eleven.txt", max_bytes=10)


def test_read_file_default_limit_is_one_mebibyte(root: Path) -> None:
    assert READ_LIMIT == 16 * 1024
    (root / "big.txt").write_bytes(b"x" * (READ_LIMIT + 1))
    with pytest.raises(CommandError, match=f"limit of {READ_LIMIT} bytes"):
        read_file(root, "big.txt")


def test_read_file_refuses_a_symlink_leaving_the_root(root: Path) -> None:
    (root / "link.txt").symlink_to(root.parent / "outside" / "secret.txt")
    with pytest.raises(CommandError, match="outside the root"):
        read_file(root, "link.txt")


def test_read_file_of_a_directory_is_an_error(root: Path) -> None:
    with pytest.raises(CommandError, match="not a regular file"):
        read_file(root, "docs")

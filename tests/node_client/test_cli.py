"""``voisnap node``'s flags and its exit status 2 for bad arguments
(docs/hubs/node.md, "The reference node")."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from voisnap.node_client.cli import TOKEN_ENV, add_node_parser, run_node

from .helpers import node_token


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="voisnap")
    add_node_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["node", *argv])


def test_cli_defaults() -> None:
    arguments = parse("--url", "http://127.0.0.1:8080")
    assert arguments.command == "node"
    assert arguments.token is None
    assert arguments.transport == "websockets"
    assert arguments.root == Path(".")
    assert arguments.allow_shell is False
    assert arguments.heartbeat_interval == 30.0


def test_cli_every_flag() -> None:
    arguments = parse(
        "--url=https://gw.example",
        "--token=T",
        "--transport=polling",
        "--root=/srv",
        "--allow-shell",
        "--heartbeat-interval=2.5",
    )
    assert (arguments.url, arguments.token, arguments.transport) == (
        "https://gw.example",
        "T",
        "polling",
    )
    assert (arguments.root, arguments.allow_shell, arguments.heartbeat_interval) == (
        Path("/srv"),
        True,
        2.5,
    )


def test_cli_url_is_required() -> None:
    with pytest.raises(SystemExit):
        parse("--token", "T")


def test_cli_unknown_transport_is_refused() -> None:
    with pytest.raises(SystemExit):
        parse("--url", "http://h", "--transport", "carrier-pigeon")


def test_cli_no_token_anywhere(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_node(parse("--url", "http://h"), environ={}) == 2
    assert f"--token or ${TOKEN_ENV}" in capsys.readouterr().err


def test_cli_token_from_the_environment(capsys: pytest.CaptureFixture[str]) -> None:
    """The environment's token is read: this one is not a JWT, and says so."""
    assert run_node(parse("--url", "http://h"), environ={TOKEN_ENV: "garbage"}) == 2
    assert "not a JWT" in capsys.readouterr().err


def test_cli_token_without_nid(capsys: pytest.CaptureFixture[str]) -> None:
    arguments = parse("--url", "http://h", "--token", node_token(node_id=None))
    assert run_node(arguments, environ={}) == 2
    assert "no 'nid' claim" in capsys.readouterr().err


def test_cli_url_must_be_http(capsys: pytest.CaptureFixture[str]) -> None:
    arguments = parse("--url", "ws://h", "--token", node_token())
    assert run_node(arguments, environ={}) == 2
    assert "http:// or https://" in capsys.readouterr().err


def test_cli_heartbeat_interval_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    arguments = parse("--url", "http://h", "--token", node_token(), "--heartbeat-interval", "0")
    assert run_node(arguments, environ={}) == 2
    assert "heartbeat_interval must be greater than 0" in capsys.readouterr().err


def test_cli_root_must_be_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arguments = parse("--url", "http://h", "--token", node_token(), "--root", str(tmp_path / "x"))
    assert run_node(arguments, environ={}) == 2
    assert "is not a directory" in capsys.readouterr().err

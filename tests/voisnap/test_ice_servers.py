"""``--ice-server`` (docs/hubs/voisnap-webrtc.md, "Settings"): STUN and TURN URLs
with credentials, read once at start; one that cannot be used stops the start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from voisnap.islands.webrtc import IceServer, parse_ice_server


@pytest.mark.parametrize(("text", "server"), [
    ("stun:stun.example.com:3478", IceServer(("stun:stun.example.com:3478",))),
    ("turn:ann:s3cr:et@turn.example.com:3478?transport=udp",
     IceServer(("turn:turn.example.com:3478?transport=udp",), "ann", "s3cr:et")),
    ("turns:ann:pw@turn.example.com:5349",
     IceServer(("turns:turn.example.com:5349",), "ann", "pw")),
])
def test_stun_and_turn_urls_are_read(text: str, server: IceServer) -> None:
    assert parse_ice_server(text) == server


def test_the_browser_gets_them_as_rtc_ice_servers() -> None:
    turn = parse_ice_server("turn:ann:pw@turn.example.com:3478")
    assert turn.as_json() == {
        "urls": ["turn:turn.example.com:3478"], "username": "ann", "credential": "pw"}
    assert parse_ice_server("stun:a:1").as_json() == {"urls": ["stun:a:1"]}


@pytest.mark.parametrize(("flag", "message"), [
    ("http://stun.example.com", "not a STUN or TURN URL"),
    ("stun:", "not a STUN or TURN URL"),
    ("turn:ann@turn.example.com", "credentials are USER:CREDENTIAL@host"),
    ("turn::pw@turn.example.com", "credentials are USER:CREDENTIAL@host"),
    ("turn:ann:pw@", "credentials are USER:CREDENTIAL@host"),
])
def test_an_ice_server_that_cannot_be_used_stops_the_start(
    tmp_path: Path, flag: str, message: str
) -> None:
    started = subprocess.run(
        [sys.executable, "-m", "voisnap", "serve", "--host", "127.0.0.1", "--port", "0",
         "--data-dir", str(tmp_path), "--ice-server", flag],
        capture_output=True, text=True, timeout=60,
    )
    assert started.returncode == 2
    assert message in started.stderr

"""Every setting is a ``voisnap serve`` flag and a ``VOISNAP_<NAME>`` variable,
listed in ``--help`` and in the README; the flag wins over the variable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import attrs
import pytest

from voisnap.config import Settings, env_name, flag_name, settings_from

ROOT = Path(__file__).resolve().parent.parent
FIELDS = [field.name for field in attrs.fields(Settings)]


def test_settings_readme_lists_every_flag_and_variable() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in FIELDS:
        assert f"`{flag_name(name)}`" in readme, name
        assert f"`{env_name(name)}`" in readme, name


def test_settings_help_lists_every_flag_and_variable() -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "voisnap", "serve", "--help"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout
    for name in FIELDS:
        assert flag_name(name) in help_text, name
        assert env_name(name) in help_text, name


def test_settings_environment_then_flags() -> None:
    environ = {
        "VOISNAP_KEEP_ALIVE_INTERVAL": "2.5",
        "VOISNAP_OUTBOX_CAPACITY": "7",
        "VOISNAP_DETAILED_ERRORS": "true",
        "VOISNAP_CORS_ORIGINS": "http://a.example, http://b.example",
    }
    settings = settings_from({"outbox_capacity": 9}, environ)
    assert settings.keep_alive_interval == 2.5
    assert settings.outbox_capacity == 9  # the flag wins
    assert settings.detailed_errors is True
    assert settings.cors_origins == ("http://a.example", "http://b.example")
    assert settings_from({}, {}) == Settings()


def test_settings_bad_environment_value_is_an_error() -> None:
    with pytest.raises(ValueError, match="VOISNAP_DETAILED_ERRORS"):
        settings_from({}, {"VOISNAP_DETAILED_ERRORS": "maybe"})

"""Settings are checked at start-up: a bad value or an unknown `PASSNUM_` variable stops the
program with one line naming the variable (passnum/core/settings.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

from passnum.core.settings import Settings, SettingsError

ROOT = Path(__file__).resolve().parents[2]


def test_values_are_read_and_typed() -> None:
    settings = Settings.from_environment({
        "PASSNUM_PARTITIONS": "8", "PASSNUM_EMBEDDED_DATABASE_FALLBACK": "false",
        "PASSNUM_INFRA_RETRY_BACKOFF_SECONDS": "0.25", "PASSNUM_CONSUMER": "stream",
        "PASSNUM_BOOTSTRAP_SERVERS": "kafka:9092", "HOME": "/elsewhere"})
    assert settings.partitions == 8
    assert settings.embedded_database_fallback is False
    assert settings.infra_retry_backoff_seconds == 0.25
    assert settings.consumer == "stream"
    assert settings.bootstrap_servers == "kafka:9092"


def test_the_public_api_is_kept() -> None:
    settings = Settings.from_environment({})
    assert settings == Settings()
    changed = settings.with_overrides(partitions=2)
    assert changed.partitions == 2 and settings.partitions == Settings().partitions
    with pytest.raises(FrozenInstanceError):
        settings.partitions = 3  # type: ignore[misc]
    # as_environment is the inverse of from_environment (how workers get their settings).
    assert Settings.from_environment(changed.as_environment()) == changed


@pytest.mark.parametrize("variable, value, expected", [
    ("PASSNUM_PARTITIONS", "four", "expects an integer"),
    ("PASSNUM_PARTITIONS", "0", "greater than or equal to 1"),
    ("PASSNUM_SESSION_TIMEOUT_SECONDS", "six", "expects a number"),
    ("PASSNUM_EMBEDDED_DATABASE_FALLBACK", "perhaps", "expects true or false"),
    ("PASSNUM_CONSUMER", "strem", "'batch' or 'stream'"),
    ("PASSNUM_WEB_PORT_ISSUER", "70000", "less than or equal to 65535"),
])
def test_a_bad_value_names_the_variable_and_what_it_expects(variable: str, value: str,
                                                             expected: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_environment({variable: value})
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"{variable}={value!r}")
    assert expected in message


def test_an_unknown_variable_is_refused_with_the_closest_name() -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_environment({"PASSNUM_BOOTSTRAP_SERVER": "kafka:9092"})
    message = str(raised.value)
    assert "\n" not in message
    assert "PASSNUM_BOOTSTRAP_SERVER is not a passnum setting" in message
    assert "did you mean PASSNUM_BOOTSTRAP_SERVERS?" in message


def test_variables_read_elsewhere_are_not_refused() -> None:
    Settings.from_environment({"PASSNUM_REDEEMER_PROFILE": "timing",
                               "PASSNUM_AUDITOR_TRUSTED_KEYS": "ab", "PASSNUM_PYTHON": "python3",
                               # docker-compose's, in the operator's shell
                               "PASSNUM_DATABASE_PASSWORD": "secret"})


def _passnum(*arguments: str, **environment: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PASSNUM_")}
    return subprocess.run([sys.executable, "-m", "passnum.tools.cli", *arguments], cwd=ROOT,
                          env={**clean, **environment}, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("variable, value, expected", [
    ("PASSNUM_PARTITIONS", "four", "PASSNUM_PARTITIONS='four': expects an integer"),
    ("PASSNUM_BOOTSTRAP_SERVER", "kafka:9092", "PASSNUM_BOOTSTRAP_SERVER is not a passnum"),
])
def test_the_command_line_says_it_in_one_line_with_the_usage_code(variable: str, value: str,
                                                                  expected: str) -> None:
    finished = _passnum("status", **{variable: value})
    assert finished.returncode == 2, finished.stderr
    lines = finished.stderr.strip().splitlines()
    assert len(lines) == 1, finished.stderr
    assert expected in lines[0]

"""``VESSEL_API_KEY_FILE``: the API key read from a file (a compose or Kubernetes secret), with errors that name
the variable when the file cannot serve as a key."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.server import main
from app.settings import Settings, SettingsError


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv("VESSEL_API_KEY", raising=False)
    monkeypatch.delenv("VESSEL_API_KEY_FILE", raising=False)
    return monkeypatch


def test_key_is_read_from_the_file_without_its_final_newline(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = tmp_path / "api_key"
    secret.write_text("s3cret-key\n")
    env.setenv("VESSEL_API_KEY_FILE", str(secret))
    assert Settings.from_env().api_key == "s3cret-key"


def test_no_file_no_key(env: pytest.MonkeyPatch) -> None:
    env.setenv("VESSEL_API_KEY_FILE", "")  # empty: unset, like every other variable
    assert Settings.from_env().api_key is None


def test_missing_file_names_the_variable(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.setenv("VESSEL_API_KEY_FILE", str(tmp_path / "absent"))
    with pytest.raises(
        SettingsError, match=r"VESSEL_API_KEY_FILE=.*absent.*cannot read the API key: No such file"
    ):
        Settings.from_env()


def test_unreadable_file_names_the_variable(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A folder: reading it fails as a file without permission does (the tests may run as root).
    env.setenv("VESSEL_API_KEY_FILE", str(tmp_path))
    with pytest.raises(SettingsError, match=r"VESSEL_API_KEY_FILE=.*cannot read the API key"):
        Settings.from_env()


def test_empty_file_is_refused(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = tmp_path / "api_key"
    secret.write_text(" \n")
    env.setenv("VESSEL_API_KEY_FILE", str(secret))
    with pytest.raises(SettingsError, match=r"VESSEL_API_KEY_FILE=.*empty"):
        Settings.from_env()


def test_key_and_key_file_together_are_refused(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = tmp_path / "api_key"
    secret.write_text("from-file")
    env.setenv("VESSEL_API_KEY_FILE", str(secret))
    env.setenv("VESSEL_API_KEY", "from-env")
    with pytest.raises(SettingsError, match="VESSEL_API_KEY and VESSEL_API_KEY_FILE are both set"):
        Settings.from_env()


def test_serve_refuses_to_start_on_a_bad_key_file(
    env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("VESSEL_API_KEY_FILE", str(tmp_path / "absent"))
    assert main([]) == 2
    assert "VESSEL_API_KEY_FILE" in capsys.readouterr().out

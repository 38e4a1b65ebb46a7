"""Settings: read from the environment only, validated at startup with clear messages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from relay.bundled import bundled_prompts_dir, resolve_data_dirs
from relay.settings import Settings, SettingsError, load_settings


def test_environment_names_are_the_public_interface(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-abc")
    monkeypatch.setenv("RELAY_AUDIO_FORMAT", "pcmu")
    monkeypatch.setenv("RELAY_ALLOWED_ORIGINS", "https://flex.twilio.com, https://example.com")
    monkeypatch.setenv("RELAY_PUBLIC_URL", "https://relay.example.com/")
    monkeypatch.setenv("TWILIO_SYNC_BASE_URL", "http://127.0.0.1:9")
    settings = load_settings()
    assert settings.openai_api_key is not None and settings.openai_api_key.get_secret_value() == "sk-abc"
    assert "sk-abc" not in repr(settings)
    assert settings.audio_format == "pcmu"
    assert settings.allowed_origins == ("https://flex.twilio.com", "https://example.com")
    assert settings.media_ws_public_url("/ws/CA1") == "wss://relay.example.com/ws/CA1"
    assert settings.http_public_url("/twilio/stream-status") == "https://relay.example.com/twilio/stream-status"
    assert settings.twilio_sync_base_url == "http://127.0.0.1:9"
    assert settings.stream_name_for("CA9") == "FLEX_ASSIST_CA9"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("RELAY_AUDIO_FORMAT", "mp3", "RELAY_AUDIO_FORMAT"),
        ("RELAY_PORT", "99999", "RELAY_PORT"),
        ("RELAY_ALLOWED_ORIGINS", "*", "wildcard"),
        ("RELAY_PUBLIC_URL", "relay.example.com", "absolute URL"),
        ("RELAY_SYNC_STREAM_NAME", "FLEX_ASSIST", "call_sid"),
        ("RELAY_TOKEN_TTL_S", "999999", "RELAY_TOKEN_TTL_S"),
        ("RELAY_SESSION_MAX_AGE_S", "7200", "3600"),
    ],
)
def test_invalid_settings_fail_with_the_variable_named(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=message):
        load_settings()


def test_relay_serve_fails_fast_on_bad_settings() -> None:
    env = {"PATH": "/usr/bin:/bin", "RELAY_PORT": "not-a-port"}
    proc = subprocess.run(
        [sys.executable, "-m", "relay.cli.main", "serve"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "RELAY_PORT" in proc.stderr


def test_an_auth_token_without_a_public_url_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "x" * 32)
    with pytest.raises(SettingsError, match="RELAY_PUBLIC_URL is required"):
        load_settings()
    monkeypatch.setenv("RELAY_REQUIRE_TWILIO_SIGNATURE", "false")
    assert load_settings().public_url is None


def test_relay_serve_fails_fast_on_a_missing_prompts_folder(tmp_path: object) -> None:
    env = {"PATH": "/usr/bin:/bin", "RELAY_PROMPTS_DIR": "/nonexistent/prompts", "RELAY_PORT": "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "relay.cli.main", "serve"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "RELAY_PROMPTS_DIR: Value error, folder /nonexistent/prompts does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_missing_knowledge_folder_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_KNOWLEDGE_DIR", "/nonexistent/knowledge")
    with pytest.raises(SettingsError, match=r"RELAY_KNOWLEDGE_DIR: .*folder /nonexistent/knowledge does not exist"):
        load_settings()


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("OPENAI_API_KEY", "openai_api_key"),
        ("TWILIO_AUTH_TOKEN", "twilio_auth_token"),
        ("RELAY_PROMPTS_DIR", "prompts_dir"),
        ("RELAY_PORT", "port"),
        ("RELAY_ENGINE", "engine"),
        ("RELAY_PUBLIC_URL", "public_url"),
    ],
)
def test_an_empty_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch, name: str, field: str) -> None:
    # `.env.example` ships `OPENAI_API_KEY=`; sourcing it must neither fail nor select OpenAI.
    monkeypatch.setenv(name, "")
    settings = load_settings()
    assert getattr(settings, field) == Settings.model_fields[field].default


def test_an_empty_openai_key_selects_the_offline_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RELAY_ENGINE", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "")
    assert load_settings().effective_engine == "local"


def test_prompts_come_from_the_working_folder_then_the_bundled_defaults(tmp_path: Path) -> None:
    bundled = resolve_data_dirs(None, None, cwd=tmp_path)
    assert (bundled.prompts_origin, bundled.knowledge_origin) == ("bundled", "bundled")
    assert (bundled.prompts / "default.md").is_file() and (bundled.knowledge / "orders.md").is_file()

    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "notes.json").write_text("{}")  # no prompt file: not a prompts folder
    assert resolve_data_dirs(None, None, cwd=tmp_path).prompts_origin == "bundled"

    (tmp_path / "prompts" / "default.md").write_text("Be brief.")
    local = resolve_data_dirs(None, None, cwd=tmp_path)
    assert local.prompts == tmp_path / "prompts" and local.prompts_origin == "working folder"
    assert local.knowledge_origin == "bundled"  # no knowledge/ beside it

    (tmp_path / "prompts" / "knowledge").mkdir()
    assert resolve_data_dirs(None, None, cwd=tmp_path).knowledge == tmp_path / "prompts" / "knowledge"
    configured = resolve_data_dirs(tmp_path, tmp_path / "prompts", cwd=tmp_path)
    assert (configured.prompts, configured.knowledge) == (tmp_path, tmp_path / "prompts")
    assert configured.prompts_origin == configured.knowledge_origin == "setting"


def test_the_bundled_prompts_are_the_repository_prompts() -> None:
    # One source of truth: the package's copy is the top-level prompts/ folder (a symlink in
    # the checkout; the wheel build copies it).
    repo = Path(__file__).resolve().parent.parent / "prompts"
    assert bundled_prompts_dir().resolve() == repo.resolve()


def test_the_shipped_env_example_loads_as_is_and_runs_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    example = Path(__file__).resolve().parent.parent / ".env.example"
    for line in example.read_text().splitlines():
        if line and not line.startswith("#"):
            name, value = line.split("=", 1)
            monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.effective_engine == "local" and settings.prompts_dir is None

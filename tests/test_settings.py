"""Settings: read from the environment only, validated at startup with clear messages."""

from __future__ import annotations

import subprocess
import sys

import pytest

from relay.settings import SettingsError, load_settings


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
        [sys.executable, "-m", "relay.cli", "serve"], env=env, capture_output=True, text=True, timeout=60
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
        [sys.executable, "-m", "relay.cli", "serve"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "prompts folder /nonexistent/prompts does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr

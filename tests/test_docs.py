"""Every setting is documented: in the README's table and in .env.example."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
NAMES = sorted(
    f.validation_alias.choices[0]  # type: ignore[union-attr]
    for f in Settings.model_fields.values()
)


@pytest.mark.parametrize("name", NAMES)
def test_setting_is_in_the_readme_and_env_example(name: str) -> None:
    assert f"`{name}`" in (ROOT / "README.md").read_text()
    env_names = {line.split("=", 1)[0] for line in (ROOT / ".env.example").read_text().splitlines() if "=" in line}
    assert name in env_names

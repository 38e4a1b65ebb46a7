"""Prompt files are selected by name only; nothing a caller sends can leave the folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.knowledge.prompts import PromptError, PromptLibrary

REPO_PROMPTS = Path(__file__).resolve().parent.parent / "prompts"


@pytest.fixture
def library(tmp_path: Path) -> PromptLibrary:
    (tmp_path / "default.md").write_text("default instructions")
    (tmp_path / "billing.txt").write_text("billing instructions")
    (tmp_path / "empty.md").write_text("   ")
    (tmp_path / "notes.json").write_text("{}")
    (tmp_path.parent / "secret.md").write_text("outside the folder")
    return PromptLibrary.load(tmp_path, "default")


def test_known_names_load(library: PromptLibrary) -> None:
    assert library.names == ("billing", "default")
    assert library.select("billing").text == "billing instructions"
    assert library.select(None).name == "default"


@pytest.mark.parametrize("name", ["../secret", "/etc/passwd", "nope", "default.md", "..", "a" * 200, "bil ling"])
def test_unknown_or_hostile_names_fall_back_to_the_default(library: PromptLibrary, name: str) -> None:
    selection = library.select(name)
    assert (selection.name, selection.fell_back) == ("default", True)
    assert selection.text == "default instructions"


def test_missing_default_fails_startup(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("x")
    with pytest.raises(PromptError, match="default prompt"):
        PromptLibrary.load(tmp_path, "default")


def test_repository_prompts_ask_for_question_answer_json() -> None:
    library = PromptLibrary.load(REPO_PROMPTS, "default")
    for name in library.names:
        text = library.select(name).text
        assert '"question"' in text and '"answer"' in text

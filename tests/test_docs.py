"""Every setting is documented: in the README's table and in .env.example; the README's
references to its own sections resolve."""

from __future__ import annotations

import re
import unicodedata
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


def github_slugs(headings: list[str]) -> list[str]:
    """The anchors GitHub gives these headings, in order: inline code and links keep their
    text, lowercase, punctuation and symbols other than '-' and '_' dropped, each space a '-',
    and a repeated slug gets -1, -2, … in order of appearance."""
    slugs: list[str] = []
    seen: dict[str, int] = {}
    for heading in headings:
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").strip().lower()
        base = "".join(c for c in text if c in "-_ " or unicodedata.category(c)[0] in "LNM").replace(" ", "-")
        slug = base
        while slug in seen:  # "a" twice then "a-1" as a heading: GitHub goes on to "a-2"
            seen[base] += 1
            slug = f"{base}-{seen[base]}"
        seen[slug] = 0
        slugs.append(slug)
    return slugs


def prose(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    lines: list[str] = []
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def readme_headings(text: str) -> list[str]:
    """ATX headings outside fenced code blocks."""
    return [m.group(1) for line in prose(text) if (m := re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line))]


def test_github_slugs_follow_githubs_rules() -> None:
    assert github_slugs(["Trust and bad input", "Trust & bad input", "`RELAY_X` settings (v2)"]) == [
        "trust-and-bad-input",
        "trust--bad-input",
        "relay_x-settings-v2",
    ]
    assert github_slugs(["Knowledge", "Knowledge", "Knowledge"]) == ["knowledge", "knowledge-1", "knowledge-2"]
    assert github_slugs(["Après l'appel", "A [link](https://x.test) here"]) == ["après-lappel", "a-link-here"]


def test_every_anchor_link_in_the_readme_resolves_to_a_heading() -> None:
    text = (ROOT / "README.md").read_text()
    slugs = set(github_slugs(readme_headings(text)))
    anchors = re.findall(r"\]\(#([^)\s]+)\)", text) + re.findall(r"href=\"#([^\"]+)\"", text)
    assert anchors  # the README does link within itself
    assert sorted(a for a in anchors if a not in slugs) == []


def test_every_quoted_reference_in_the_readme_names_a_heading() -> None:
    """`see "Some section"` must name a section that exists (a link is better: checked above)."""
    text = (ROOT / "README.md").read_text()
    headings = {" ".join(h.replace("`", "").split()) for h in readme_headings(text)}
    quoted = [" ".join(q.split()) for q in re.findall(r"\bsee\s+\"([^\"]+)\"", text, flags=re.IGNORECASE)]
    assert sorted(q for q in quoted if q not in headings) == []

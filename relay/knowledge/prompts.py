"""Instruction files in `prompts/`: loaded once, selected by name, never by path.

A per-call `prompt` custom parameter may pick another file. Names are looked up in the
set of files found at startup, so no value a caller sends can reach outside the folder.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Final

from relay.errors import ConfigurationError

log = logging.getLogger("relay.knowledge.prompts")

_NAME_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_SUFFIXES: Final = (".md", ".txt")


def is_prompt_file(path: Path) -> bool:
    """A file the library loads: `*.md` or `*.txt` whose stem is a valid prompt name."""
    return path.suffix in _SUFFIXES and path.is_file() and bool(_NAME_RE.match(path.stem))


class PromptError(ConfigurationError):
    """The prompts folder or the default prompt is unusable (fails startup)."""


@dataclass(frozen=True, slots=True)
class Selection:
    name: str
    text: str
    fell_back: bool  # the requested name was unknown or invalid


class PromptLibrary:
    def __init__(self, prompts: dict[str, str], default: str) -> None:
        if default not in prompts:
            raise PromptError(f"default prompt {default!r} not found (have: {sorted(prompts) or 'none'})")
        self._prompts = MappingProxyType(dict(prompts))
        self.default = default

    @classmethod
    def load(cls, directory: Path, default: str) -> PromptLibrary:
        if not directory.is_dir():
            raise PromptError(f"prompts folder {directory} does not exist")
        prompts: dict[str, str] = {}
        for path in sorted(directory.iterdir()):
            if is_prompt_file(path):
                text = path.read_text(encoding="utf-8").strip()
                if text:
                    prompts.setdefault(path.stem, text)
        return cls(prompts, default)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._prompts))

    def select(self, requested: str | None) -> Selection:
        if requested is None or requested == "":
            return Selection(self.default, self._prompts[self.default], False)
        if _NAME_RE.match(requested) and requested in self._prompts:
            return Selection(requested, self._prompts[requested], False)
        log.warning("unknown prompt requested; using the default", extra={"default": self.default})
        return Selection(self.default, self._prompts[self.default], True)

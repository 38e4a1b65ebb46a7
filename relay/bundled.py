"""Runtime files the installed package carries: default prompts, knowledge base, sample call,
the console's page. Read through `importlib.resources`, so a plain `pip install` (wheel or
source) works from any folder.

In the repository, `relay/assets/prompts` and `relay/assets/sample_call.wav` are symlinks to
the top-level `prompts/` and `samples/` (the files users edit); the wheel build follows them.

Where the relay finds its prompts, first match wins:
1. `RELAY_PROMPTS_DIR` (must exist; startup fails naming the variable otherwise);
2. `./prompts` in the working folder, when it holds a prompt file;
3. the bundled defaults.
Knowledge: `RELAY_KNOWLEDGE_DIR`, else the chosen prompts folder's `knowledge/`, else the
bundled knowledge base. The wrap-up's instructions and disposition codes, likewise:
`RELAY_WRAPUP_DIR`, else `<prompts>/wrapup/`, else the bundled ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Literal

from relay.errors import ConfigurationError
from relay.knowledge.prompts import is_prompt_file

_ASSETS: Traversable = files("relay") / "assets"

Origin = Literal["setting", "working folder", "bundled"]


def _as_path(resource: Traversable) -> Path:
    # pip installs wheels onto the file system, where Traversable is a real Path; a zipped
    # install (zipapp, zipimport) is not supported and says so.
    if isinstance(resource, Path) and resource.exists():
        return resource
    raise ConfigurationError(f"bundled file {resource} is missing or not on the file system; reinstall the relay")


def bundled_prompts_dir() -> Path:
    return _as_path(_ASSETS / "prompts")


def bundled_sample_call() -> Path:
    return _as_path(_ASSETS / "sample_call.wav")


def console_asset(name: str) -> bytes:
    """One of the console page's files (`index.html`, `console.js`, `console.css`)."""
    return (_ASSETS / "console" / name).read_bytes()


@dataclass(frozen=True, slots=True)
class DataDirs:
    prompts: Path
    prompts_origin: Origin
    knowledge: Path
    knowledge_origin: Origin
    wrapup: Path
    wrapup_origin: Origin


def _has_prompt(folder: Path) -> bool:
    return folder.is_dir() and any(is_prompt_file(p) for p in folder.iterdir())


def resolve_data_dirs(
    prompts: Path | None, knowledge: Path | None, wrapup: Path | None = None, *, cwd: Path | None = None
) -> DataDirs:
    """Apply the lookup order above. Configured folders were checked by the settings."""
    prompts_origin: Origin
    if prompts is not None:
        prompts_dir, prompts_origin = prompts, "setting"
    elif _has_prompt(local := (cwd or Path.cwd()) / "prompts"):
        prompts_dir, prompts_origin = local, "working folder"
    else:
        prompts_dir, prompts_origin = bundled_prompts_dir(), "bundled"
    knowledge_origin: Origin
    if knowledge is not None:
        knowledge_dir, knowledge_origin = knowledge, "setting"
    elif (prompts_dir / "knowledge").is_dir():
        knowledge_dir, knowledge_origin = prompts_dir / "knowledge", prompts_origin
    else:
        knowledge_dir, knowledge_origin = bundled_prompts_dir() / "knowledge", "bundled"
    wrapup_origin: Origin
    if wrapup is not None:
        wrapup_dir, wrapup_origin = wrapup, "setting"
    elif (prompts_dir / "wrapup").is_dir():
        wrapup_dir, wrapup_origin = prompts_dir / "wrapup", prompts_origin
    else:
        wrapup_dir, wrapup_origin = bundled_prompts_dir() / "wrapup", "bundled"
    return DataDirs(prompts_dir, prompts_origin, knowledge_dir, knowledge_origin, wrapup_dir, wrapup_origin)

"""The one place in `relay.usage` that reads a file: the bundled price table or an operator's
(`RELAY_PRICES_FILE`). Everything else in the package is pure."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import lru_cache
from importlib import resources
from pathlib import Path

from .prices import PriceFileError, PriceTable, load_prices

BUNDLED = "prices.toml"

log = logging.getLogger("relay.usage")


def read_prices(path: str | Path | None = None) -> PriceTable:
    """The table at `path`, or the bundled one. Raises `PriceFileError` (unreadable or invalid)."""
    if path is None:
        text = resources.files(__package__ or "relay.usage").joinpath(BUNDLED).read_text(encoding="utf-8")
        return load_prices(text, origin=f"bundled {BUNDLED}")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PriceFileError(f"{path}: cannot read: {exc.__class__.__name__}") from None
    return load_prices(text, origin=str(path))


@lru_cache(maxsize=4)
def prices_at(path: str | Path | None) -> PriceTable:
    """`read_prices`, read once per path for the process: the startup check reads it, and
    every call's bridge takes the same table without touching the disk again."""
    return read_prices(path)


def startup_prices(
    path: str | Path | None, *, realtime: Iterable[str] = (), transcription: Iterable[str] = ()
) -> PriceTable:
    """The table the relay's calls will use, read at startup (a bad file stops the relay
    there, not mid-call: `PriceFileError`), with one warning naming the models it has no
    price for (their cost is null)."""
    table = prices_at(path)
    missing = table.unknown(realtime, transcription)
    if missing:
        log.warning(
            "no price for these models: their calls' cost is null",
            extra={"models": missing, "prices": str(path) if path is not None else BUNDLED, "taken": table.taken},
        )
    return table

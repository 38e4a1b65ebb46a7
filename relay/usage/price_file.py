"""The one place in `relay.usage` that reads a file: the bundled price table or an operator's
(`RELAY_PRICES_FILE`). Everything else in the package is pure."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .prices import PriceFileError, PriceTable, load_prices

BUNDLED = "prices.toml"


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

"""A disk that fills: for the tests of a full disk on the worker's and the web's side."""
from __future__ import annotations

from pathlib import Path


def fill(folder: Path) -> None:
    """Write until the disk says no."""
    with open(folder / "ballast", "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 2**20)
                handle.flush()
        except OSError:
            pass

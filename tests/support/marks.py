"""Marks a folder's tests as a kind (the conftests of e2e/ and browser/ call it)."""
from __future__ import annotations

from pathlib import Path

import pytest


def mark_folder_slow(items, folder: Path) -> None:
    """Every test under ``folder`` is `slow` (pyproject: spawns a trainer, a server or a browser)."""
    for item in items:
        if folder in Path(item.path).parents:
            item.add_marker(pytest.mark.slow)

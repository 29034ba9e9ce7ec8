"""Where things are: the project's root and the control plane's database in a workspace."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def database(workspace) -> Path:
    """The SQLite record in ``workspace`` (Settings.database names the same file)."""
    return Path(workspace) / "otweb.sqlite3"

"""The files workers uploaded into a run's folder here, each with the size and sha256 it had when its
last chunk arrived (hashed as the chunks came, never again on a request): the run's files panel shows
these sums, and a backup sent to another worker is checked against them there before it is read.
"""
from __future__ import annotations

import time

SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    run_id INTEGER NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (run_id, path)
) WITHOUT ROWID;
"""


def record(conn, run_id: int, path: str, size: int, sha256: str) -> None:
    conn.execute("INSERT OR REPLACE INTO uploads (run_id, path, size, sha256, at) VALUES (?, ?, ?, ?, ?)",
                 (run_id, path, size, sha256, time.time()))


def forget(conn, run_id: int, path: str) -> None:
    """A file (or every file under a folder) the worker removed."""
    conn.execute("DELETE FROM uploads WHERE run_id = ? AND (path = ? OR substr(path, 1, ?) = ?)",
                 (run_id, path, len(path) + 1, path.rstrip("/") + "/"))


def of_run(conn, run_id: int, under: str = "") -> dict[str, dict]:
    """path -> {size, sha256} for the run's uploaded files (those under a folder, when given)."""
    prefix = under.rstrip("/") + "/" if under else ""
    rows = conn.execute("SELECT path, size, sha256 FROM uploads WHERE run_id = ? AND substr(path, 1, ?) = ?",
                        (run_id, len(prefix), prefix))
    return {path: {"size": size, "sha256": digest} for path, size, digest in rows}

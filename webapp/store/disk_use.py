"""How much disk each run's folder here takes (bytes, files), measured off the request path (the
control loop's housekeeping, once a run has ended and settled; bulk deletion's preview for a run
not measured yet) and kept, so a run page never walks a folder."""
from __future__ import annotations

import os
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS run_disk (
    run_id INTEGER PRIMARY KEY,
    bytes INTEGER NOT NULL,
    files INTEGER NOT NULL,
    at REAL NOT NULL
);
"""
SETTLE_S = 30.0  # the last uploads follow a run's end


def init(conn) -> None:
    conn.executescript(SCHEMA)


def measure_folder(folder: Path) -> tuple[int, int]:
    """(bytes, files) under a folder; symlinks are not followed (they are not the run's bytes)."""
    total = count = 0
    for root, _dirs, names in os.walk(folder):
        for name in names:
            try:
                stat = os.lstat(os.path.join(root, name))
            except OSError:
                continue  # removed meanwhile
            total, count = total + stat.st_size, count + 1
    return total, count


def record(conn, run_id: int, folder: Path) -> dict:
    size, files = measure_folder(folder)
    at = time.time()
    conn.execute("INSERT OR REPLACE INTO run_disk (run_id, bytes, files, at) VALUES (?, ?, ?, ?)",
                 (run_id, size, files, at))
    return {"bytes": size, "files": files, "at": at}


def of_run(conn, run_id: int) -> dict | None:
    row = conn.execute("SELECT bytes, files, at FROM run_disk WHERE run_id = ?", (run_id,)).fetchone()
    return {"bytes": row[0], "files": row[1], "at": row[2]} if row else None


def of_runs(conn, run_ids: list[int]) -> dict[int, dict]:
    found = {}
    for start in range(0, len(run_ids), 500):  # SQLite's limit on parameters
        part = run_ids[start:start + 500]
        rows = conn.execute(f"SELECT run_id, bytes, files, at FROM run_disk WHERE run_id IN ({','.join('?' * len(part))})",
                            part)
        found.update({r[0]: {"bytes": r[1], "files": r[2], "at": r[3]} for r in rows})
    return found


def next_unmeasured(conn, now: float | None = None, after_s: float = SETTLE_S) -> int | None:
    """A run that ended ``after_s`` ago (SETTLE_S at the least) whose folder was not measured since."""
    row = conn.execute(
        "SELECT id FROM runs WHERE state NOT IN ('queued', 'running') AND finished_at IS NOT NULL AND finished_at <= ?"
        " AND NOT EXISTS (SELECT 1 FROM run_disk WHERE run_disk.run_id = runs.id AND run_disk.at >= runs.finished_at)"
        " ORDER BY id LIMIT 1", ((now or time.time()) - max(after_s, SETTLE_S),)).fetchone()
    return row[0] if row else None


def forget(conn, run_id: int) -> None:
    conn.execute("DELETE FROM run_disk WHERE run_id = ?", (run_id,))

"""What an ended run no longer needs, thinned; free pages handed back to the disk.

A run's progress events (one a second while it trains: nearly all of its events) are what SSE
replays live; once the run has ended they are only its timeline. Compaction keeps every event that
is not a progress (state changes, status, samples, saves, log, errors), the first and the last
progress, and one progress per ``KEEP_EVERY_STEPS`` steps or ``KEEP_EVERY_S`` seconds, and drops the
sampling progress (``sample_progress``: a bar's steps while a sample was made); the loss rows
(``metrics``), samples, the run's row and its log file stay whole. It runs off the hot path (the
control loop's housekeeping), a bounded number of events per call, resuming where it stopped.

The database uses ``auto_vacuum = INCREMENTAL`` (set once for a workspace made before: a VACUUM,
which for a large record is left to ``otweb db compact``), and ``PRAGMA incremental_vacuum`` gives
back a bounded number of free pages per call.
"""
from __future__ import annotations

import logging
import sqlite3
import time

from .db import transaction

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS compaction (
    run_id INTEGER PRIMARY KEY,
    cursor INTEGER NOT NULL DEFAULT 0,
    kept_step INTEGER,
    kept_time REAL,
    removed INTEGER NOT NULL DEFAULT 0,
    done_at REAL
);
"""
KEEP_EVERY_STEPS = 50
KEEP_EVERY_S = 60.0
SETTLE_S = 30.0            # at the least: a run's last uploads and late events arrive after its end
# per call: the leader's loop is a greenlet of a web process, so a call must stay well under the 50 ms
# that counts as blocking its requests (measured on the loaded 2-core VM: 1,000 events 15-35 ms, 5,000: 59 ms)
EVENTS_PER_CALL = 1000
VACUUM_PAGES_PER_CALL = 512  # 2 MB of free pages given back per call
# a workspace made before auto_vacuum is switched by a VACUUM (it rewrites the file) when it opens,
# if it is this small (measured: 8.3 s for 126 MB, 1,000 demo runs, on the 2-core box: ~4 s at this
# size); a larger one says to run `otweb db compact` instead, so a web process never waits long at its start
VACUUM_AT_OPEN_MAX_BYTES = 64 << 20
INCREMENTAL = 2


def init(conn) -> None:
    """The schema's part, and auto_vacuum for a new workspace or a small old one."""
    if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != INCREMENTAL:
        size = conn.execute("PRAGMA page_count").fetchone()[0] * conn.execute("PRAGMA page_size").fetchone()[0]
        if size <= VACUUM_AT_OPEN_MAX_BYTES:
            try:
                switch_auto_vacuum(conn)
            except sqlite3.OperationalError as exc:  # a full disk (a VACUUM needs a copy's room), a lock
                log.warning("the record could not switch auto_vacuum on now (%s); it tries again at the next start", exc)
        else:
            log.warning("the record (%d MB) does not give free pages back yet: run `otweb db compact` once "
                        "(with the web stopped) to switch it", size >> 20)
    conn.executescript(SCHEMA)


def switch_auto_vacuum(conn) -> float:
    """auto_vacuum = INCREMENTAL for good: takes effect by the VACUUM that rewrites the file (it holds
    the write lock meanwhile). Returns the seconds it took."""
    started = time.monotonic()
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    conn.execute("VACUUM")
    return time.monotonic() - started


def auto_vacuum(conn) -> str:
    return {0: "none", 1: "full", 2: "incremental"}[conn.execute("PRAGMA auto_vacuum").fetchone()[0]]


def next_run(conn, now: float | None = None, after_s: float = SETTLE_S) -> int | None:
    """The oldest run that ended ``after_s`` ago (SETTLE_S at the least) and is not compacted yet."""
    row = conn.execute(
        "SELECT id FROM runs WHERE state NOT IN ('queued', 'running') AND finished_at IS NOT NULL"
        " AND finished_at <= ? AND NOT EXISTS (SELECT 1 FROM compaction"  # again after a resumed run ends
        " WHERE compaction.run_id = runs.id AND compaction.done_at >= runs.finished_at)"
        " ORDER BY id LIMIT 1", ((now or time.time()) - max(after_s, SETTLE_S),)).fetchone()
    return row[0] if row else None


def compact_run(conn, run_id: int, budget: int = EVENTS_PER_CALL) -> bool:
    """Thin the run's progress events, looking at ``budget`` of them at most; True once it is done."""
    with transaction(conn):
        return _compact_window(conn, run_id, budget)


def _compact_window(conn, run_id: int, budget: int) -> bool:
    conn.execute("INSERT OR IGNORE INTO compaction (run_id) VALUES (?)", (run_id,))
    cursor, kept_step, kept_time = conn.execute(
        "SELECT cursor, kept_step, kept_time FROM compaction WHERE run_id = ?", (run_id,)).fetchone()
    rows = conn.execute("SELECT seq, name, time, json_extract(data, '$.global_step') FROM events"
                        " WHERE run_id = ? AND name IN ('progress', 'sample_progress') AND seq > ? ORDER BY seq LIMIT ?",
                        (run_id, cursor, budget + 1)).fetchall()
    last = conn.execute("SELECT MAX(seq) FROM events WHERE run_id = ? AND name = 'progress'", (run_id,)).fetchone()[0]
    window, more = rows[:budget], len(rows) > budget
    doomed = []
    for seq, name, at, step in window:
        # a sample's progress (its denoising steps) only moved a bar while it was made: the sample
        # event itself stays
        if name == "sample_progress" or (kept_time is not None and seq != last
                                         and not _worth_keeping(step, at, kept_step, kept_time)):
            doomed.append((seq,))
            continue
        kept_step, kept_time = (step if step is not None else kept_step), at
    conn.executemany("DELETE FROM events WHERE seq = ?", doomed)
    cursor = window[-1][0] if window else cursor
    conn.execute("UPDATE compaction SET cursor = ?, kept_step = ?, kept_time = ?, removed = removed + ?,"
                 " done_at = ? WHERE run_id = ?",
                 (cursor, kept_step, kept_time, len(doomed), None if more else time.time(), run_id))
    return not more


def _worth_keeping(step, at: float, kept_step, kept_time: float) -> bool:
    if step is not None and (kept_step is None or step >= kept_step + KEEP_EVERY_STEPS or step < kept_step):
        return True
    return at >= kept_time + KEEP_EVERY_S


def vacuum_step(conn, pages: int = VACUUM_PAGES_PER_CALL) -> int:
    """Give back up to ``pages`` free pages to the disk; returns how many it gave back."""
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    if not free or conn.execute("PRAGMA auto_vacuum").fetchone()[0] != INCREMENTAL:
        return 0
    conn.execute(f"PRAGMA incremental_vacuum({int(pages)})").fetchall()
    return free - conn.execute("PRAGMA freelist_count").fetchone()[0]


def step(conn, budget: int = EVENTS_PER_CALL, now: float | None = None, after_s: float = SETTLE_S) -> dict:
    """One bounded round: part of one ended run compacted, some free pages given back."""
    run_id = next_run(conn, now, after_s)
    done = compact_run(conn, run_id, budget) if run_id is not None else None
    return {"run_id": run_id, "done": done, "pages_freed": vacuum_step(conn)}


def compact_all(conn, now: float | None = None) -> int:
    """Every ended run compacted now (``otweb db compact``); returns how many runs."""
    count = 0
    while (run_id := next_run(conn, now)) is not None:
        while not compact_run(conn, run_id):
            pass
        count += 1
    while vacuum_step(conn, 1 << 20):
        pass
    return count

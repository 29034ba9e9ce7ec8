"""What the recorder tells the rest of the web about the record, through Redis (any web process
answers the System page, a run page or /api/health; only the leader records): the entries it set
aside as malformed (a dead-letter stream, capped, and a count), and whether it cannot write the
record now (a full disk) and which runs wait for it.
"""
from __future__ import annotations

import errno
import json
import shutil
import sqlite3
import time
from pathlib import Path

import redis

from webapp.settings import DEAD_LETTER_COUNT, DEAD_LETTER_MAXLEN, DEAD_LETTER_STREAM, RECORD_BLOCKED_KEY

# an error that says the disk cannot take the write now (the entry is fine: it waits, never set aside)
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO}
_SQLITE_DISK_WORDS = ("full", "disk i/o", "readonly", "locked", "busy", "unable to open")
# the blocked note outlives a recorder that died holding it by this much, no more
BLOCKED_TTL_S = 60
DISK_FLOOR = 2**20             # free bytes below which the record is reported not writable
DEAD_LETTER_KEPT = 4096        # characters of a set-aside entry kept for a person to read


def cannot_write(exc: BaseException) -> bool:
    """Whether ``exc`` says the record's disk refuses writes now (wait and retry), rather than
    that one entry is bad (set it aside)."""
    if isinstance(exc, sqlite3.OperationalError):
        return any(word in str(exc).lower() for word in _SQLITE_DISK_WORDS)
    return isinstance(exc, OSError) and exc.errno in _DISK_ERRNOS


def blocked_reason(exc: BaseException, folder: Path) -> str:
    if isinstance(exc, OSError) and exc.errno not in (errno.ENOSPC, errno.EDQUOT) or (
            isinstance(exc, sqlite3.OperationalError) and "full" not in str(exc).lower()):
        return f"the web host cannot write the record: {exc}"
    try:
        free = shutil.disk_usage(folder).free / 2**20
    except OSError:
        return f"the web host's disk is full ({folder})"
    return f"the web host's disk is full: {free:.1f} MiB free in {folder}"


def disk_reason(folder: Path) -> str | None:
    """Why the record cannot be written now, seen from its disk alone (below DISK_FLOOR free:
    SQLite's next commit would fail), or None."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError as exc:
        return f"the web host cannot read its workspace: {exc}"
    return None if free >= DISK_FLOOR else f"the web host's disk is full: {free / 2**20:.1f} MiB free in {folder}"


# -- dead letters ------------------------------------------------------------------------------

def set_aside(pipe, stream: str, entry_id: str, fields: dict, reason: str) -> None:
    """Queue on ``pipe`` (the recorder's ack pipeline) the dead letter of one entry."""
    raw = next(iter(fields.values()), "") if len(fields) == 1 else json.dumps(fields)
    pipe.xadd(DEAD_LETTER_STREAM, {"reason": reason[:500], "stream": stream, "id": entry_id,
                                   "entry": str(raw)[:DEAD_LETTER_KEPT], "time": repr(time.time())},
              maxlen=DEAD_LETTER_MAXLEN, approximate=True)
    pipe.incr(DEAD_LETTER_COUNT)


def dead_letters(client: redis.Redis, recent: int = 5) -> dict:
    """{"count": ever set aside, "recent": the newest few, newest first}."""
    count = int(client.get(DEAD_LETTER_COUNT) or 0)
    rows = client.xrevrange(DEAD_LETTER_STREAM, count=recent) if count else []
    return {"count": count, "recent": [dict(fields, dead_letter_id=entry_id) for entry_id, fields in rows]}


# -- a record that cannot be written -------------------------------------------------------------

def mark_blocked(client: redis.Redis, reason: str, runs: list[int]) -> None:
    client.set(RECORD_BLOCKED_KEY, json.dumps({"reason": reason, "runs": runs, "since": time.time()}),
               ex=BLOCKED_TTL_S)


def clear_blocked(client: redis.Redis) -> None:
    client.delete(RECORD_BLOCKED_KEY)


def blocked(client: redis.Redis) -> dict | None:
    """{"reason", "runs", "since"} while the recorder cannot write the record, else None."""
    raw = client.get(RECORD_BLOCKED_KEY)
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None

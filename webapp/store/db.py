"""The database connection (WAL: the web reads while the record is written), transactions and the
small key/value settings table."""
from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path



def connect(path: str | Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes; WAL keeps it fast
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def distinct(conn, table: str, expression: str, where: str = "1 = 1") -> list:
    """The values of ``expression`` (NULL left out), ascending, by a skip scan: one index seek per
    value where an index starts with ``where``'s columns and then ``expression`` (SELECT DISTINCT
    reads every row: ~10 ms at 20,000 runs, every time a list shows its filters)."""
    sql = (f"WITH RECURSIVE v(x) AS (SELECT MIN({expression}) FROM {table} WHERE {where} UNION ALL"
           f" SELECT (SELECT MIN({expression}) FROM {table} WHERE {where} AND {expression} > x)"
           " FROM v WHERE x IS NOT NULL) SELECT x FROM v WHERE x IS NOT NULL")
    return [row[0] for row in conn.execute(sql)]


def setting(conn, key: str) -> str | None:
    row = conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
    return row[0] if row else None


@contextlib.contextmanager
def transaction(conn, mode: str = "IMMEDIATE"):
    """One transaction (IMMEDIATE: a writer; DEFERRED: a consistent read snapshot under WAL), or
    the caller's, if one is open already."""
    if conn.in_transaction:
        yield conn
        return
    conn.execute(f"BEGIN {mode}")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")

"""Notifications: each user's subscriptions (which run events, for which runs, where) and the
deliveries made for them, one row per (subscription, event, kind) so that an event is delivered
once, also across a web restart; the notifier's cursor (the last event it looked at) is kept in the
settings table. A subscription's secret (the webhook's signing key) is written here once and never
read back by a page or the API (``public`` leaves it out)."""
from __future__ import annotations

import time

from .db import setting, transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS notify_subscriptions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user TEXT NOT NULL,
    events TEXT NOT NULL,
    scope TEXT NOT NULL DEFAULT 'mine',
    config_name TEXT,
    channel TEXT NOT NULL,
    url TEXT,
    format TEXT NOT NULL DEFAULT 'generic',
    secret TEXT,
    paused INTEGER NOT NULL DEFAULT 0,
    paused_reason TEXT,
    failures INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS notify_subscriptions_user ON notify_subscriptions(user);
CREATE TABLE IF NOT EXISTS notify_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription_id INTEGER NOT NULL,
    event_seq INTEGER,
    kind TEXT NOT NULL,
    run_id INTEGER,
    payload TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    last_code INTEGER,
    last_at REAL,
    error TEXT,
    created_at REAL NOT NULL,
    UNIQUE (subscription_id, event_seq, kind)
);
CREATE INDEX IF NOT EXISTS notify_deliveries_due ON notify_deliveries(status, subscription_id, event_seq);
"""

# what a subscription can ask for: the run's end by state, a sample, a save or backup written, the queue emptied
KINDS = ("run_completed", "run_failed", "run_stopped", "run_interrupted", "sample", "saved", "queue_empty")
CHANNELS = ("browser", "webhook")
FORMATS = ("generic", "slack", "discord", "ntfy")
SCOPES = ("mine", "all", "config")
CURSOR_KEY = "notifier.cursor"
PENDING, SENT, READY, TEST = "pending", "sent", "ready", "test"  # READY: a browser's, shown when asked
_PUBLIC = ("id", "user", "events", "scope", "config_name", "channel", "url", "format", "paused", "paused_reason",
           "failures", "created_at")


def public(row) -> dict:
    """A subscription as a page or the API shows it: never its secret."""
    shown = {key: row[key] for key in _PUBLIC}
    shown["events"] = shown["events"].split(",")
    shown["paused"] = bool(shown["paused"])
    shown["signed"] = bool(row["secret"])
    return shown


def add_subscription(conn, user: str, events, channel: str, scope: str = "mine", config_name: str | None = None,
                     url: str | None = None, fmt: str = "generic", secret: str | None = None) -> int:
    with transaction(conn):
        return conn.execute(
            "INSERT INTO notify_subscriptions (user, events, scope, config_name, channel, url, format, secret, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (user, ",".join(events), scope, config_name, channel, url, fmt, secret, time.time())).lastrowid


def subscriptions_of(conn, user: str) -> list[dict]:
    rows = conn.execute("SELECT * FROM notify_subscriptions WHERE user = ? ORDER BY id", (user,))
    return [public(row) for row in rows]


def subscription(conn, sub_id: int, user: str | None = None):
    """The row (secret included: for the notifier and the test button only), or None."""
    row = conn.execute("SELECT * FROM notify_subscriptions WHERE id = ?", (sub_id,)).fetchone()
    return row if row is not None and (user is None or row["user"] == user) else None


def all_subscriptions(conn) -> list:
    return conn.execute("SELECT * FROM notify_subscriptions ORDER BY id").fetchall()


def remove_subscription(conn, sub_id: int) -> None:
    with transaction(conn):
        conn.execute("DELETE FROM notify_deliveries WHERE subscription_id = ?", (sub_id,))
        conn.execute("DELETE FROM notify_subscriptions WHERE id = ?", (sub_id,))


def set_paused(conn, sub_id: int, reason: str | None) -> None:
    """Pause (with the reason its owner reads) or resume (None: its waiting deliveries are due now)."""
    with transaction(conn):
        conn.execute("UPDATE notify_subscriptions SET paused = ?, paused_reason = ?, failures = 0 WHERE id = ?",
                     (int(reason is not None), reason, sub_id))
        if reason is None:
            conn.execute("UPDATE notify_deliveries SET next_attempt_at = 0 WHERE subscription_id = ? AND status = ?",
                         (sub_id, PENDING))


def cursor(conn) -> int:
    return int(setting(conn, CURSOR_KEY) or 0)


def start_cursor(conn) -> int:
    """The cursor, set to the newest event the first time: a new workspace (or one from before
    notifications) does not notify its whole history."""
    value = setting(conn, CURSOR_KEY)
    if value is not None:
        return int(value)
    newest = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
    with transaction(conn):
        conn.execute("INSERT OR IGNORE INTO settings (key, value) VALUES (?, ?)", (CURSOR_KEY, str(newest)))
    return cursor(conn)


def add_deliveries(conn, rows, new_cursor: int) -> None:
    """Deliveries for events up to new_cursor, and the cursor, in one transaction: a restart
    between the two can neither lose nor repeat one (the UNIQUE key ignores a second insert)."""
    with transaction(conn):
        conn.executemany(
            "INSERT OR IGNORE INTO notify_deliveries (subscription_id, event_seq, kind, run_id, payload, status,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        conn.execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", (CURSOR_KEY, str(new_cursor)))


def first_pending(conn, sub_id: int):
    """The oldest delivery still to send to this destination: they go in order, one at a time."""
    return conn.execute("SELECT * FROM notify_deliveries WHERE subscription_id = ? AND status = ?"
                        " ORDER BY event_seq, id LIMIT 1", (sub_id, PENDING)).fetchone()


def waiting_subscriptions(conn) -> list[int]:
    rows = conn.execute("SELECT DISTINCT d.subscription_id FROM notify_deliveries d JOIN notify_subscriptions s"
                        " ON s.id = d.subscription_id WHERE d.status = ? AND s.paused = 0", (PENDING,))
    return [row[0] for row in rows]


def mark_attempt(conn, delivery_id: int, sub_id: int, ok: bool, code: int | None, error: str | None,
                 next_at: float) -> int:
    """Record one attempt; returns the destination's consecutive failures after it."""
    with transaction(conn):
        conn.execute("UPDATE notify_deliveries SET attempts = attempts + 1, status = ?, last_code = ?, last_at = ?,"
                     " error = ?, next_attempt_at = ? WHERE id = ?",
                     (SENT if ok else PENDING, code, time.time(), error, next_at, delivery_id))
        conn.execute("UPDATE notify_subscriptions SET failures = CASE WHEN ? THEN 0 ELSE failures + 1 END"
                     " WHERE id = ?", (int(ok), sub_id))
        return conn.execute("SELECT failures FROM notify_subscriptions WHERE id = ?", (sub_id,)).fetchone()[0]


def log_test(conn, sub_id: int, payload: str, code: int | None, error: str | None, status: str = TEST) -> None:
    """A test's delivery, already made (a webhook's) or to show (a browser's: READY)."""
    with transaction(conn):
        conn.execute("INSERT INTO notify_deliveries (subscription_id, event_seq, kind, payload, status, attempts,"
                     " last_code, last_at, error, created_at) VALUES (?, NULL, 'test', ?, ?, 1, ?, ?, ?, ?)",
                     (sub_id, payload, status, code, time.time(), error, time.time()))


def count_of(conn, user: str) -> int:
    return conn.execute("SELECT COUNT(*) FROM notify_subscriptions WHERE user = ?", (user,)).fetchone()[0]


def paused_of(conn, user: str) -> list[dict]:
    """The user's paused destinations: the notice their pages show until they resume or remove one."""
    rows = conn.execute("SELECT * FROM notify_subscriptions WHERE user = ? AND paused = 1 ORDER BY id", (user,))
    return [public(row) for row in rows]


def deliveries(conn, sub_id: int, limit: int = 50) -> list[dict]:
    rows = conn.execute("SELECT id, event_seq, kind, run_id, status, attempts, next_attempt_at, last_code, last_at,"
                        " error, created_at FROM notify_deliveries WHERE subscription_id = ? ORDER BY id DESC LIMIT ?",
                        (sub_id, limit))
    return [dict(row) for row in rows]


def browser_notices(conn, user: str, after: int, limit: int = 20) -> list[dict]:
    """The user's browser notifications after a delivery id, oldest first."""
    rows = conn.execute("SELECT d.id, d.kind, d.run_id, d.payload FROM notify_deliveries d JOIN notify_subscriptions s"
                        " ON s.id = d.subscription_id WHERE s.user = ? AND s.channel = 'browser' AND d.id > ?"
                        " AND d.status = ? ORDER BY d.id LIMIT ?", (user, after, READY, limit))
    return [dict(row) for row in rows]


def last_delivery_id(conn) -> int:
    return conn.execute("SELECT COALESCE(MAX(id), 0) FROM notify_deliveries").fetchone()[0]

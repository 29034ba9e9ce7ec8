"""Accounts and API tokens, in the workspace's SQLite database (tables of their own).

Passwords: werkzeug's current default (scrypt). Tokens are 256-bit random strings, so a plain
SHA-256 of them is enough to store (no salt or slow hash needed); the token itself is shown once.
"""
from __future__ import annotations

import functools
import hashlib
import ipaddress
import logging
import secrets
import sqlite3
import time
from pathlib import Path

from werkzeug.security import check_password_hash, generate_password_hash

from webapp.settings import check_worker_name, env_text

from . import db

log = logging.getLogger(__name__)

ROLES = ("viewer", "operator", "admin")  # each role can do everything the ones before it can
# a worker's token: no web role at all (every page and API answers 403); it is the password of the
# worker's own Redis user (control/identities.py), and the control plane gives runs only to workers
# with a live one
WORKER_ROLE = "worker"
TOKEN_PREFIX = "otw_"
MIN_PASSWORD = 8

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS api_tokens (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    user_id INTEGER REFERENCES users(id) ON DELETE CASCADE,
    created_at REAL NOT NULL,
    last_used_at REAL,
    revoked_at REAL
);
CREATE TABLE IF NOT EXISTS login_sessions (
    id TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at REAL NOT NULL
);
"""
# a hash to compare against when the user does not exist, so that both cases take as long
@functools.cache
def _dummy_hash() -> str:
    # made on first use, not at import: scrypt costs ~0.1 s of CPU that every process start
    # (web, worker, each `otweb` command) would pay
    return generate_password_hash("not a password")


class AuthError(ValueError):
    """Something the caller of a user/token command got wrong (a message for a person)."""


def connect(database: str | Path) -> sqlite3.Connection:
    conn = db.connect(database)
    conn.executescript(SCHEMA)
    _add_password_column(conn)
    return conn


def _add_password_column(conn) -> None:
    """api_tokens.from_password (1: traded for a password by POST /api/auth/token, and so ended by
    a new password), added to workspaces made before it."""
    if "from_password" not in {row["name"] for row in conn.execute("PRAGMA table_info(api_tokens)")}:
        conn.execute("ALTER TABLE api_tokens ADD COLUMN from_password INTEGER NOT NULL DEFAULT 0")


def role_rank(role: str | None) -> int:
    return ROLES.index(role) if role in ROLES else -1


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise AuthError(f"unknown role {role!r}: one of {', '.join(ROLES)}")


def _check_password(password: str) -> None:
    if len(password or "") < MIN_PASSWORD:
        raise AuthError(f"a password needs at least {MIN_PASSWORD} characters")


def has_principals(conn) -> bool:
    """Any user or live token: then accounts are on by default."""
    row = conn.execute("SELECT EXISTS(SELECT 1 FROM users) OR "
                       "EXISTS(SELECT 1 FROM api_tokens WHERE revoked_at IS NULL AND role != 'worker')").fetchone()
    return bool(row[0])


# users

def add_user(conn, name: str, password: str, role: str) -> int:
    name = (name or "").strip()
    if not name or len(name) > 64 or any(c.isspace() or c in ":/" for c in name):
        raise AuthError("a user name is 1-64 characters, without spaces, ':' or '/'")
    _check_role(role)
    _check_password(password)
    try:
        cursor = conn.execute("INSERT INTO users (name, password_hash, role, created_at) VALUES (?, ?, ?, ?)",
                              (name, generate_password_hash(password), role, time.time()))
    except sqlite3.IntegrityError:
        raise AuthError(f"user {name!r} exists already") from None
    return cursor.lastrowid


def remove_user(conn, name: str) -> None:
    user = get_user(conn, name)
    if user is None:
        raise AuthError(f"no user {name!r}")
    conn.execute("DELETE FROM api_tokens WHERE user_id = ?", (user["id"],))
    conn.execute("DELETE FROM login_sessions WHERE user_id = ?", (user["id"],))
    conn.execute("DELETE FROM users WHERE id = ?", (user["id"],))


def set_password(conn, name: str, password: str) -> None:
    _check_password(password)
    if conn.execute("UPDATE users SET password_hash = ? WHERE name = ?",
                    (generate_password_hash(password), name)).rowcount == 0:
        raise AuthError(f"no user {name!r}")
    conn.execute("DELETE FROM login_sessions WHERE user_id = (SELECT id FROM users WHERE name = ?)", (name,))
    # whoever knew the old password may have traded it for a token: those end too (an admin's
    # `otweb token create --user` tokens stay: no password made them)
    conn.execute("UPDATE api_tokens SET revoked_at = ? WHERE from_password = 1 AND revoked_at IS NULL "
                 "AND user_id = (SELECT id FROM users WHERE name = ?)", (time.time(), name))


def create_password_token(conn, name: str, user: str) -> tuple[int, str]:
    """A token traded for ``user``'s password (POST /api/auth/token): ended by a new password."""
    token_id, token = create_token(conn, name, user=user)
    conn.execute("UPDATE api_tokens SET from_password = 1 WHERE id = ?", (token_id,))
    return token_id, token


# login sessions: the cookie names one, so that logging out (or a new password) ends it on the
# server too; a copied cookie is then worth nothing

def create_session(conn, user_id: int) -> str:
    session_id = secrets.token_urlsafe(24)
    conn.execute("INSERT INTO login_sessions (id, user_id, created_at) VALUES (?, ?, ?)",
                 (session_id, user_id, time.time()))
    return session_id


def session_alive(conn, session_id: str, user_id: int) -> bool:
    return conn.execute("SELECT 1 FROM login_sessions WHERE id = ? AND user_id = ?",
                        (session_id, user_id)).fetchone() is not None


def end_session(conn, session_id: str) -> None:
    conn.execute("DELETE FROM login_sessions WHERE id = ?", (session_id,))


def set_role(conn, name: str, role: str) -> None:
    _check_role(role)
    if conn.execute("UPDATE users SET role = ? WHERE name = ?", (role, name)).rowcount == 0:
        raise AuthError(f"no user {name!r}")


def list_users(conn) -> list[dict]:
    return [dict(r) for r in conn.execute("SELECT id, name, role, created_at FROM users ORDER BY name")]


def get_user(conn, name: str) -> dict | None:
    row = conn.execute("SELECT * FROM users WHERE name = ?", (name,)).fetchone()
    return dict(row) if row else None


def get_user_by_id(conn, user_id: int) -> dict | None:
    row = conn.execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone()
    return dict(row) if row else None


def authenticate(conn, name, password) -> dict | None:
    """The user when name and password match; None otherwise (same work either way)."""
    if not isinstance(name, str) or not isinstance(password, str) or len(name) > 200 or len(password) > 1024:
        return None
    user = get_user(conn, name)
    ok = check_password_hash(user["password_hash"] if user else _dummy_hash(), password)
    return user if user and ok else None


def password_fingerprint(user: dict) -> str:
    """Part of the session id: changing the password ends the user's other sessions."""
    return hashlib.sha256(user["password_hash"].encode()).hexdigest()[:16]


# tokens

def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(conn, name: str, role: str | None = None, user: str | None = None) -> tuple[int, str]:
    """Returns (id, token); only the hash is kept. A user's token never outranks its user."""
    name = (name or "").strip()
    if not name or len(name) > 64:
        raise AuthError("a token name is 1-64 characters")
    owner = None
    if user is not None:
        owner = get_user(conn, user)
        if owner is None:
            raise AuthError(f"no user {user!r}")
        role = role or owner["role"]
        if role_rank(role) > role_rank(owner["role"]):
            raise AuthError(f"a token of {user!r} cannot have more than the user's role ({owner['role']})")
    role = role or "operator"
    _check_role(role)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    cursor = conn.execute("INSERT INTO api_tokens (name, token_hash, role, user_id, created_at) VALUES (?, ?, ?, ?, ?)",
                          (name, _hash_token(token), role, owner["id"] if owner else None, time.time()))
    return cursor.lastrowid, token


def create_worker_token(conn, worker: str) -> tuple[int, str]:
    """A worker's token (its name is the worker's): revocable, and good for nothing but joining."""
    try:
        name = check_worker_name((worker or "").strip())
    except ValueError as exc:
        raise AuthError(str(exc)) from None
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    cursor = conn.execute("INSERT INTO api_tokens (name, token_hash, role, user_id, created_at) VALUES (?, ?, ?, NULL, ?)",
                          (name, _hash_token(token), WORKER_ROLE, time.time()))
    return cursor.lastrowid, token


def replace_worker_token(conn, worker: str) -> str:
    """A fresh token for ``worker`` (``otweb serve``'s own worker, at each start); its older ones end."""
    conn.execute("UPDATE api_tokens SET revoked_at = ? WHERE name = ? AND role = ? AND revoked_at IS NULL",
                 (time.time(), worker, WORKER_ROLE))
    return create_worker_token(conn, worker)[1]


def worker_token_hashes(conn) -> dict[str, list[str]]:
    """worker name -> the sha256 of each of its live tokens (what its Redis user accepts)."""
    found: dict[str, list[str]] = {}
    for name, token_hash in conn.execute("SELECT name, token_hash FROM api_tokens WHERE role = ? AND "
                                         "revoked_at IS NULL ORDER BY id", (WORKER_ROLE,)):
        found.setdefault(name, []).append(token_hash)
    return found


def find_token(conn, token: str) -> dict | None:
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    row = conn.execute(
        "SELECT t.id, t.name, t.role, u.name AS user_name, u.role AS user_role FROM api_tokens t "
        "LEFT JOIN users u ON u.id = t.user_id WHERE t.token_hash = ? AND t.revoked_at IS NULL",
        (_hash_token(token),)).fetchone()
    if row is None:
        return None
    found = dict(row)
    if found["user_role"] is not None and role_rank(found["user_role"]) < role_rank(found["role"]):
        found["role"] = found["user_role"]  # the user was demoted after the token was made
    _note_use(conn, found["id"])
    return found


LAST_USED_EVERY_S = 60  # a token's last use is written at most this often: a read needs no write


def _note_use(conn, token_id: int) -> None:
    """Record a token's last use, best effort: a full disk (or a busy database) must not turn
    every token-authenticated read into a 500; the use is noted at a later request."""
    now = time.time()
    try:
        conn.execute("UPDATE api_tokens SET last_used_at = ? WHERE id = ?"
                     " AND (last_used_at IS NULL OR last_used_at < ?)", (now, token_id, now - LAST_USED_EVERY_S))
    except sqlite3.OperationalError as exc:
        log.warning("could not note the use of token %s: %s", token_id, exc)


def list_tokens(conn) -> list[dict]:
    return [dict(r) for r in conn.execute(
        "SELECT t.id, t.name, t.role, u.name AS user_name, t.created_at, t.last_used_at, t.revoked_at "
        "FROM api_tokens t LEFT JOIN users u ON u.id = t.user_id ORDER BY t.id")]


def revoke_token(conn, token_id: int) -> None:
    if conn.execute("UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                    (time.time(), token_id)).rowcount == 0:
        raise AuthError(f"no live token with id {token_id}")


# -- whether accounts are on: read by the web at start and by `otweb serve/web` before binding ----


def resolve_mode(explicit, admin_token, database: Path) -> str:
    explicit = str(explicit or "auto").strip().lower()
    if explicit not in ("on", "off", "auto"):
        raise RuntimeError(f"OTWEB_AUTH must be on, off or auto, not {explicit!r}")
    if explicit != "auto":
        return explicit
    if admin_token:
        return "on"
    conn = connect(database)
    try:
        return "on" if has_principals(conn) else "off"
    finally:
        conn.close()


def is_loopback(host: str) -> bool:
    """Parsed, not compared as text: "127.0.0.1.nip.io" is a public name, not a loopback address."""
    host = (host or "").strip()
    if host.lower() == "localhost" or host.startswith("unix:"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def refuse_open_bind(host: str, database: Path) -> str | None:
    """The message that stops `otweb serve/web` on a non-loopback address with accounts off."""
    if is_loopback(host):
        return None
    mode = resolve_mode(env_text("OTWEB_AUTH") or None, env_text("OTWEB_ADMIN_TOKEN") or None, database)
    if mode == "on":
        return None
    return (f"refusing to listen on {host} without accounts: anyone on the network could train, read "
            "and download everything. Create an admin first:\n"
            "  otweb user add NAME --role admin\n"
            "or a token for scripts (otweb token create NAME --role admin), or set OTWEB_ADMIN_TOKEN; "
            "then start again. (Accounts off is only allowed on 127.0.0.1.)")

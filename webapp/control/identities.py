"""Each worker its own Redis identity: an ACL user named after it (settings.worker_user) whose
password is its worker token and whose keys are only its own (settings.worker_prefix), so a worker
can spoil nothing but the runs assigned to it.

The record (SQLite) keeps only each token's sha256, and Redis accepts a password given as
``#<sha256>``, so the web makes the users from what it stores: at every start, every few seconds
(a token created or revoked with `otweb token`), and after Redis restarts empty (ACL users are not
in the append-only file). A revoked token's user is deleted, which also drops its connections.
"""
from __future__ import annotations

import logging

import redis

from webapp.settings import (WORKER_USER_PREFIX, WORKERS_KEY, check_worker_name, worker_prefix,
                             worker_user)
from webapp.store import accounts

log = logging.getLogger(__name__)

# what a worker sends (loop, heartbeat, stream_sink, supervisor, backup_receive), and the
# connection's own upkeep; nothing that reads other keys (KEYS, SCAN) or changes the server
# (CONFIG, ACL, FLUSH*, DEBUG, CLIENT KILL), and no pub/sub
WORKER_COMMANDS = ("ping", "echo", "select", "auth", "hello", "client|setname",
                   "blmove", "lrange", "llen", "lrem", "blpop", "lpop",
                   "get", "set", "exists", "del", "xadd", "xlen")


def worker_rules(name: str, hashes: list[str]) -> list[str]:
    """The ACL SETUSER rules of a worker whose live tokens hash to ``hashes``."""
    return (["reset", "on"] + [f"#{h}" for h in sorted(hashes)] + [f"~{worker_prefix(name)}*", "resetchannels"]
            + [f"+{command}" for command in WORKER_COMMANDS])


class Identities:
    """Keeps Redis' worker users equal to the live worker tokens in the record."""

    def __init__(self, conn, redis_client: redis.Redis):
        self.conn, self.redis = conn, redis_client
        self.made: dict[str, list[str]] = {}  # user -> the rules it was last given here
        self.refused: str | None = None

    def sync(self) -> list[str]:
        """Make, change or delete users as the record says; returns the workers that have one.
        Raises redis.ResponseError when the web's own Redis user may not manage users."""
        wanted = {}
        for name, hashes in accounts.worker_token_hashes(self.conn).items():
            try:
                wanted[worker_user(check_worker_name(name))] = (name, hashes, worker_rules(name, hashes))
            except ValueError as exc:  # a token made before names were checked: it gets no user
                log.warning("worker token %s has no Redis user: %s", name, exc)
        existing = {user for user in self.redis.acl_users() if user.startswith(WORKER_USER_PREFIX)}
        for user, (name, hashes, rules) in wanted.items():
            if user in existing and self.made.get(user) == rules:
                continue
            if user in existing and set(self.redis.acl_getuser(user)["passwords"]) - set(hashes):
                # one of its tokens was revoked: whoever logged in with it must be cut off too (a
                # changed password leaves connections open); the others log in again at once
                self.redis.execute_command("ACL", "DELUSER", user)
            self.redis.execute_command("ACL", "SETUSER", user, *rules)
            self.made[user] = rules
        gone = sorted(existing - wanted.keys())
        if gone:
            self.redis.execute_command("ACL", "DELUSER", *gone)  # their connections end with them
        for user in gone:
            self.made.pop(user, None)
        names = [name for name, _, _ in wanted.values()]
        if names:
            self.redis.sadd(WORKERS_KEY, *names)
        return names

    def try_sync(self) -> None:
        """sync(), saying once (not every turn) why it cannot."""
        try:
            self.sync()
            self.refused = None
        except redis.ResponseError as exc:
            if self.refused != str(exc):
                log.warning("cannot make the workers' Redis users (%s): the web's Redis user needs the ACL "
                            "command; workers with a token cannot log in until then", exc)
            self.refused = str(exc)

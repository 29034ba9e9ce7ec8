"""Caps on what one user can take from everyone: live streams, queued runs, submissions per
minute. Each refusal is a 429 (this user's share) or 503 (the process or the queue is full) with
Retry-After and the API's {"error", "detail"} shape. All settable (OTWEB_MAX_STREAMS_PER_USER, ...).

Streams are counted per web process (a stream lives in one); with accounts off everyone is the one
local admin, so only the process's cap applies then.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager

from flask import current_app

from webapp import store
from webapp.web.errors import ApiError
from webapp.web.extensions import get_db

DEFAULTS = {"MAX_STREAMS_PER_USER": 16, "MAX_STREAMS": 1500, "MAX_QUEUED_PER_USER": 20, "MAX_QUEUED": 200,
            "SUBMIT_RATE": "30 per minute", "MAX_BODY_BYTES": 1024 * 1024}


def init_app(app) -> None:
    for key, value in DEFAULTS.items():
        app.config.setdefault(key, value)
    app.config["MAX_CONTENT_LENGTH"] = int(app.config["MAX_BODY_BYTES"])
    app.extensions["otweb_streams"] = StreamCounter()


class StreamCounter:
    def __init__(self):
        self.lock, self.total, self.by_user = threading.Lock(), 0, {}

    def take(self, user: str | None, per_user: int, total: int) -> None:
        with self.lock:
            if self.total >= total:
                raise ApiError(503, "too many live streams", f"this server holds {total} streams; try again soon",
                               headers={"Retry-After": "10"})
            if user is not None and self.by_user.get(user, 0) >= per_user:
                raise ApiError(429, "too many live streams", f"{user} has {per_user} streams open already; "
                               "close a tab", headers={"Retry-After": "10"})
            self.total += 1
            if user is not None:
                self.by_user[user] = self.by_user.get(user, 0) + 1

    def give_back(self, user: str | None) -> None:
        with self.lock:
            self.total -= 1
            if user is not None:
                self.by_user[user] -= 1
                if not self.by_user[user]:
                    del self.by_user[user]


def stream_slot():
    """Take a stream slot now (or answer 429/503); returns what gives it back when the stream ends."""
    from webapp.web.auth.identity import auth_on, current_principal
    principal = current_principal()
    user = principal.name if principal is not None and auth_on() else None
    counter: StreamCounter = current_app.extensions["otweb_streams"]
    config = current_app.config
    counter.take(user, int(config["MAX_STREAMS_PER_USER"]), int(config["MAX_STREAMS"]))
    return lambda: counter.give_back(user)


@contextmanager
def held(release):
    try:
        yield
    finally:
        release()


def check_queue(user: str, adding: int = 1) -> None:
    """Before runs are queued: this user's share of the queue, the queue's size, and the rate."""
    config = current_app.config
    queued = store.queued_runs(get_db())
    mine = sum(1 for run in queued if (run.get("started_by") or "local") == user)
    if len(queued) + adding > int(config["MAX_QUEUED"]):
        raise ApiError(503, "the queue is full", f"{len(queued)} runs are queued; try again when some have run",
                       headers={"Retry-After": "60"})
    if mine + adding > int(config["MAX_QUEUED_PER_USER"]):
        raise ApiError(429, "too many queued runs", f"{user} has {mine} runs queued (at most "
                       f"{config['MAX_QUEUED_PER_USER']}); cancel some or wait", headers={"Retry-After": "60"})
    _count_submission(user)


def _count_submission(user: str) -> None:
    from limits import parse
    from webapp.web.auth.limits import limiter
    if not current_app.config.get("RATELIMIT_ENABLED", True):
        return
    try:
        allowed = limiter.limiter.hit(parse(str(current_app.config["SUBMIT_RATE"])), "otweb-submit", user)
    except Exception:  # noqa: BLE001 - Redis away: the other caps still hold; never a 500 for it
        return
    if not allowed:
        raise ApiError(429, "too many submissions", f"at most {current_app.config['SUBMIT_RATE']} for {user}",
                       headers={"Retry-After": "60"})

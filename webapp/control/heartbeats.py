"""Liveness, in one place: a worker is alive while its heartbeat key lives in Redis (it beats every
second and the key expires HEARTBEAT_TTL_S after the last beat). The dispatcher, the run pages, the
fleet page and the System page all ask here, so they cannot disagree about who is gone."""
from __future__ import annotations

import json
import time

import redis

from webapp.settings import HEARTBEAT_TTL_S, WORKERS_KEY, heartbeat_key, joined_key

RECONNECT_AFTER_S = 3.0   # a beat older than this (they come every second): the worker lost Redis
# after Redis starts, a worker whose key expired while Redis was down beats again within a second
# and a reconnect: until then it is reconnecting, not gone (the run page showed interrupted: issue 33)
REDIS_RESTART_GRACE_S = 3.0


def joined(redis_client: redis.Redis) -> dict[str, str]:
    """name -> what it said when it joined (JSON), for every worker of the fleet that has joined
    (one with a token that never connected has not)."""
    names = sorted(redis_client.smembers(WORKERS_KEY))
    said = redis_client.mget([joined_key(n) for n in names]) if names else []
    return {name: raw for name, raw in zip(names, said) if raw}


def read_beats(redis_client: redis.Redis) -> dict[str, dict]:
    """name -> its live heartbeat, for every worker of the fleet whose beat has not lapsed."""
    names = sorted(redis_client.smembers(WORKERS_KEY))
    if not names:
        return {}
    beats = {}
    for name, raw in zip(names, redis_client.mget([heartbeat_key(n) for n in names])):
        if raw:
            try:
                beat = json.loads(raw)
            except ValueError:
                continue
            if isinstance(beat, dict):
                beats[name] = beat
    return beats


def run_beat(redis_client: redis.Redis, worker: str | None) -> tuple[bool | None, dict | None]:
    """(alive, its beat). alive is None when nothing can be said yet: Redis cannot be asked, or it
    started less than REDIS_RESTART_GRACE_S ago and the worker had joined (a heartbeat key that
    expired while Redis was down comes back with the worker's next beat: a worker reconnecting is
    not gone). A run must not be shown as stopped on that alone."""
    if not worker:
        return False, None
    try:
        raw = redis_client.get(heartbeat_key(worker))
        if raw is None:
            reconnecting = redis_client.sismember(WORKERS_KEY, worker) and redis_just_started(redis_client)
            return (None if reconnecting else False), None
    except redis.RedisError:
        return None, None
    try:
        beat = json.loads(raw)
    except ValueError:
        beat = None
    return True, beat if isinstance(beat, dict) else None


def redis_just_started(redis_client: redis.Redis) -> bool:
    """Whether Redis (re)started so lately that a live worker may not have beaten since."""
    uptime = redis_client.info("server").get("uptime_in_seconds")
    return uptime is not None and float(uptime) < REDIS_RESTART_GRACE_S


def beat_state(beat: dict | None, now: float | None = None) -> str:
    """gone (no live beat), reconnecting (its beat is old or it says so), or live."""
    if beat is None:
        return "gone"
    age = (now or time.time()) - beat.get("time", 0)
    return "reconnecting" if beat.get("reconnecting") or age > RECONNECT_AFTER_S else "live"


def lapse_reason(worker: str, silent_s: float) -> str:
    return (f"worker {worker} stopped sending heartbeats ({max(silent_s, HEARTBEAT_TTL_S):.0f} s): its process or "
            f"host died, or it lost Redis. Resume puts the run back on {worker} (its backups are there), "
            f"or on any worker with the newest uploaded backup while {worker} is gone.")

"""The workers alive now, from their heartbeats in Redis: name, GPUs, current run, and the
per-rank usage of that run."""
from __future__ import annotations

import redis

from webapp.control.heartbeats import read_beats
from webapp.web.extensions import get_redis


def live_workers() -> list[dict]:
    """From the heartbeats the dispatcher reads too (one reader of them: control/heartbeats.py)."""
    try:
        beats = read_beats(get_redis())
    except redis.RedisError:
        return []
    return [{"name": name, "gpus": beat.get("devices") or [0], "run_id": beat.get("run_id"),
             "ranks": beat.get("ranks") or [], "beat": beat} for name, beat in beats.items()]


def run_usage(run_id: int, workers: list[dict]) -> list[dict]:
    for worker in workers:
        if worker["run_id"] == run_id:
            return worker["ranks"]
    return []

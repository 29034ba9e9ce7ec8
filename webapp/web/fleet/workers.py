"""The workers alive now, from their heartbeats in Redis: name, GPUs, current run, and the
per-rank usage of that run. Why a queued run waits, when no worker has enough GPUs for it."""
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
             "ranks": beat.get("ranks") or []} for name, beat in beats.items()]


def waiting_reason(gpus: int, workers: list[dict]) -> str | None:
    """Why a queued run that needs ``gpus`` devices cannot start on any live worker (None: it can,
    once a worker is free)."""
    if not workers:
        return "waiting for a worker: none is running"
    largest = max(workers, key=lambda w: len(w["gpus"]))
    if gpus > len(largest["gpus"]):
        return (f"waiting for a worker with {gpus} GPUs: the largest has {len(largest['gpus'])} "
                f"({largest['name']})")
    return None


def run_usage(run_id: int, workers: list[dict]) -> list[dict]:
    for worker in workers:
        if worker["run_id"] == run_id:
            return worker["ranks"]
    return []

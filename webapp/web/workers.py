"""The workers alive now, from their heartbeats in Redis: name, GPUs, current run, and the
per-rank usage of that run. Why a queued run waits, when no worker has enough GPUs for it."""
from __future__ import annotations

import json

import redis

from webapp.settings import heartbeat_key
from webapp.web.extensions import get_redis


def live_workers() -> list[dict]:
    workers = []
    try:
        client = get_redis()
        for key in sorted(client.scan_iter(heartbeat_key("*"))):
            beat = json.loads(client.get(key) or "{}")
            workers.append({"name": key.split(":", 2)[-1], "gpus": beat.get("devices") or [0],
                            "run_id": beat.get("run_id"), "ranks": beat.get("ranks") or []})
    except (redis.RedisError, ValueError):
        return []
    return workers


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

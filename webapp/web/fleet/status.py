"""The fleet as people see it: every worker that has joined (Redis), its live heartbeat (GPUs,
load, labels, version), its current run with progress (the record), and what it is doing:
idle, training, draining, reconnecting (its events wait in its spool) or gone. Plus drain and
remove, and the totals the dashboard shows."""
from __future__ import annotations

import json
import time

import redis

from webapp import store
from webapp.settings import (HEARTBEAT_TTL_S, WORKERS_KEY, assign_key, drain_key, heartbeat_key, joined_key,
                             taken_key)
from webapp.control.heartbeats import beat_state, joined, read_beats
from webapp.web.errors import ApiError
from webapp.web.extensions import get_db, get_redis

def workers() -> list[dict]:
    client = get_redis()
    try:
        said = joined(client)
        beats = read_beats(client)
        draining = client.mget([drain_key(name) for name in said]) if said else []
    except redis.RedisError as exc:
        raise ApiError(503, "Redis is unreachable", str(exc)) from None
    running = store.assignments.running_on(get_db())
    counts = store.assignments.runs_by_worker(get_db())
    return [_worker(name, raw, beats.get(name), bool(drains), running.get(name), counts.get(name, 0))
            for (name, raw), drains in zip(said.items(), draining)]


def _worker(name: str, raw: str, beat: dict | None, draining: bool, run_id: int | None, runs: int) -> dict:
    try:
        known = json.loads(raw)
    except ValueError:
        known = {}
    info = beat or known
    age = time.time() - info.get("time", 0)
    state = beat_state(beat)  # gone, reconnecting, or live: then what it does
    if state == "live":
        state = "draining" if draining else ("training" if run_id or beat.get("run_id") else "idle")
    run = store.get_run(get_db(), run_id) if run_id else None
    progress = (run or {}).get("progress") or {}
    return {"name": name, "state": state, "host": info.get("host"), "version": info.get("version"),
            "labels": info.get("labels") or [], "gpus": info.get("gpus") or [], "draining": draining,
            "last_seen": info.get("time"), "seen_s_ago": round(age, 1), "spooled": info.get("spooled", 0),
            "run_id": run_id, "runs": runs,
            "run": {"id": run["id"], "config_name": run["config_name"], "status": run["status_text"],
                    "step": progress.get("global_step"), "max_step": progress.get("max_step")} if run else None}


def totals(listed: list[dict] | None = None) -> dict:
    listed = workers() if listed is None else listed
    live = [w for w in listed if w["state"] != "gone"]
    gpus = [g for w in live for g in w["gpus"]]
    return {"workers": len(listed), "connected": len(live),
            "training": sum(w["state"] in ("training", "draining") and bool(w["run_id"]) for w in live),
            "idle": sum(w["state"] == "idle" for w in live), "gpus": len(gpus),
            "gpu_memory_total_mb": sum(g.get("memory_total_mb") or 0 for g in gpus),
            "gpu_memory_used_mb": sum(g.get("memory_used_mb") or 0 for g in gpus),
            "queued": len(store.queued_runs(get_db()))}


def set_draining(name: str, draining: bool) -> None:
    _known(name)
    client = get_redis()
    if draining:
        client.set(drain_key(name), "1")
    else:
        client.delete(drain_key(name))


def remove(name: str) -> None:
    """Forget a worker that is gone (a live one would join again at its next beat; one with a
    live token stays in the fleet's set, listed again once it joins)."""
    _known(name)
    client = get_redis()
    if client.exists(heartbeat_key(name)):
        raise ApiError(409, "worker is connected", f"{name} still sends heartbeats: stop it first, or drain it")
    if name in store.assignments.running_on(get_db()):
        raise ApiError(409, "worker holds a run", f"{name} has a run marked running; wait {HEARTBEAT_TTL_S:g} s")
    pipe = client.pipeline(transaction=False)
    pipe.srem(WORKERS_KEY, name)
    pipe.delete(joined_key(name), drain_key(name), assign_key(name), taken_key(name))
    pipe.execute()


def _known(name: str) -> None:
    if not get_redis().exists(joined_key(name)):
        raise ApiError(404, "unknown worker", f"no worker named {name!r} has joined")

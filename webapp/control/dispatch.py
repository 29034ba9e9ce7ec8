"""The control plane's dispatcher: hands queued runs to idle workers through Redis, in the queue's
order, and marks a run interrupted when its worker's heartbeat lapses.

The queue stays in SQLite (order, pause and cancel act on what is not yet taken). A run is handed
over by recording the assignment (queued -> running, conditionally), then LPUSHing it into the
worker's inbox; the worker BLMOVEs it into its "taken" list, so it is never lost and never runs
twice. A run goes to any worker, a named one, or one with all of its labels; one nobody can take
waits, and its status says why. A resumed run goes back to its worker (its backups are there), or,
while that worker is gone, to any worker with its newest uploaded backup (web/backup_carry.py).
"""
from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import redis

from webapp import store
from webapp.eventlog import EventSink
from webapp.protocol import Event, Reason, RunState, make_event
from webapp.control.placement import eligible, waiting_reason
from webapp.control.playground_yield import close_for, waiting_text, yielding_session
from webapp.control.heartbeats import lapse_reason, read_beats, redis_just_started
from webapp.settings import HEARTBEAT_TTL_S, assign_key, drain_key, taken_key
from webapp.control.backup_carry import newest_uploaded_backup, not_carried_because, push_backup

LAPSE_CHECK_S = 1.0  # how often heartbeats are read while no run waits in the queue


class Dispatcher:
    def __init__(self, conn, redis_client: redis.Redis, token_ok=lambda name: True,
                 ttl_s: float = HEARTBEAT_TTL_S, run_dir=None, datasets=None):
        """token_ok(name): whether a worker may be given runs (a live worker token of its name, when
        accounts are on; its heartbeat was written by its own Redis user). run_dir(run_id): this
        host's copy of a run's folder, where uploaded backups are (None: a resume always waits for
        the run's own worker). datasets: a control/dataset_delivery.DatasetDelivery, which sends a run's
        dataset folders on this host to its worker (None: none are sent)."""
        self.conn, self.redis, self.token_ok, self.ttl_s = conn, redis_client, token_ok, ttl_s
        self.run_dir, self.datasets = run_dir, datasets
        self.sink = EventSink(conn, redis_client)
        self.started = time.monotonic()
        self.last_seen: dict[str, float] = {}
        self.announced: dict[int, str] = {}
        self.assigned = 0
        self.beats_read_at = float("-inf")
        self.missing: set[str] = set()  # workers with a run recorded running and no heartbeat

    def step(self) -> None:
        now = time.monotonic()
        waiting = not store.queue_paused(self.conn) and store.has_queued(self.conn)
        if not waiting and not self.missing and now - self.beats_read_at < LAPSE_CHECK_S:
            # nothing to hand out and every running run's worker beating: heartbeats are read once
            # a second (a TTL is 15 s), not every turn. Once a beat is missing, every turn again,
            # so a lapse is recorded no later than before
            return
        self.beats_read_at = now
        beats = read_beats(self.redis)
        for name in beats:
            self.last_seen[name] = now
        self._interrupt_lapsed(beats, now)
        if waiting:
            self._assign(beats)

    # -- liveness ---------------------------------------------------------------------------

    def _interrupt_lapsed(self, beats: dict, now: float) -> None:
        running = store.assignments.running_on(self.conn)
        self.missing = {worker for worker in running if worker not in beats}
        if self.missing and redis_just_started(self.redis):
            return  # their keys expired while Redis was down: they beat again within a second
        for worker, run_id in running.items():
            if worker in beats:
                continue
            # its heartbeat key expires a TTL after its last beat, so a worker this process saw beating
            # has lapsed the moment its key is gone (waiting a TTL more took up to twice the TTL);
            # one not seen yet (a web that just started) is given a TTL from now
            silent = now - self.last_seen.get(worker, self.started)
            if worker not in self.last_seen and silent < self.ttl_s:
                continue
            self.sink.emit(run_id, make_event(Event.RUN, state=RunState.INTERRUPTED.value,
                                              reason=lapse_reason(worker, silent), reason_code=Reason.WORKER_LAPSED.value))

    # -- assignments ------------------------------------------------------------------------

    def _assign(self, beats: dict) -> None:
        busy = set(store.assignments.running_on(self.conn))
        idle = {name: beat for name, beat in beats.items()
                if name not in busy and not beat.get("run_id") and self._free(name, beat)}
        for run in store.queued_runs(self.conn):
            target = self._target(run, beats)
            chosen = next((name for name, beat in sorted(idle.items()) if eligible(name, beat, target)), None)
            if chosen is None:
                session = yielding_session(self.conn, run, target, beats)
                if session is not None:  # a playground gives way to training
                    close_for(self.conn, self.redis, self.sink, session, run)
                    self._announce(run, waiting_text(session))
                    continue
                self._announce(run, waiting_reason(target, beats, busy, self.token_ok))
                continue
            if self._hand_over(run, chosen, target.get("carry")):
                idle.pop(chosen)
                self.announced.pop(run["id"], None)

    def _free(self, name: str, beat: dict) -> bool:
        if beat.get("draining") or not self.token_ok(name):
            return False
        pipe = self.redis.pipeline(transaction=False)
        pipe.llen(assign_key(name))
        pipe.llen(taken_key(name))
        pipe.exists(drain_key(name))
        inbox, taken, draining = pipe.execute()
        return not inbox and not taken and not draining

    def _target(self, run: dict, beats: dict) -> dict:
        target = store.assignments.target_of(run)
        if run.get("resume_requested") and run.get("worker") and not target:
            backup, why = (None, None) if run["worker"] in beats else self._uploaded_backup(run)
            if backup is None:  # its backups are on that host
                target = {"worker": run["worker"], "resume": True, "only_there": why}
            else:  # its worker is gone, its newest backup is here: any worker, sent the backup
                target = {"carry": backup}
        return {**target, "gpus": run.get("gpus") or 1}

    def _uploaded_backup(self, run: dict) -> tuple[Path | None, str | None]:
        """The backup to send with a resume elsewhere, or (None, why it stays on its host)."""
        if self.run_dir is None:
            return None, None
        folder = Path(self.run_dir(run["id"]))
        backup = newest_uploaded_backup(folder, store.kept_files(self.conn, run["id"]))
        why = backup and not_carried_because(folder, backup, store.uploads.of_run(self.conn, run["id"], "backups"))
        return (None, why) if why else (backup, None)

    def _hand_over(self, run: dict, worker: str, carry=None) -> bool:
        assignment_id = uuid.uuid4().hex[:16]
        if not store.assignments.assign(self.conn, run["id"], worker, assignment_id):
            return False  # canceled meanwhile
        payload = {"id": assignment_id, "run_id": run["id"], "config_name": run["config_name"],
                   "config": store.run_config(run), "resume": bool(run.get("resume_requested"))}
        try:
            if self.datasets is not None:
                payload["dataset"] = self.datasets.offer(worker, assignment_id, run["id"], payload["config"])
            if carry is not None:
                payload["backup"] = push_backup(self.redis, worker, assignment_id, Path(self.run_dir(run["id"])), carry,
                                                store.uploads.of_run(self.conn, run["id"], "backups"))
            self.redis.lpush(assign_key(worker), json.dumps(payload))
        except redis.RedisError:
            store.assignments.unassign(self.conn, run["id"], assignment_id)
            raise
        self.assigned += 1
        text = f"starting on {worker}" + (f" from backup {carry.name}, sent from the web" if carry else "")
        self.sink.emit(run["id"], make_event(Event.STATUS, text=text, worker=worker))
        return True

    def _announce(self, run: dict, reason: str) -> None:
        if self.announced.get(run["id"]) == reason:
            return
        self.announced[run["id"]] = reason
        self.sink.emit(run["id"], make_event(Event.STATUS, text=f"waiting: {reason}", waiting=True))

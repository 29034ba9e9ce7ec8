"""The worker's loop: heartbeat, recovery after a crash, one run at a time, clean shutdown."""
from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time

import redis

from webapp import store
from webapp.config import paths
from webapp.settings import HEARTBEAT_TTL_S, WAKE_KEY, Settings, heartbeat_key
from webapp.protocol import Event, RunState, dumps, make_event
from webapp.eventlog import EventSink
from webapp.worker.supervisor import TrainerHost

log = logging.getLogger(__name__)
HEARTBEAT_EVERY_S = 1.0
SHUTDOWN_GRACE_S = 20.0


class Worker:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.name = settings.worker_name
        self.redis = redis.Redis.from_url(settings.redis_url, decode_responses=True)
        settings.workspace.mkdir(parents=True, exist_ok=True)
        self.conn = store.connect(settings.database)
        store.init_schema(self.conn)
        self.sink = EventSink(self.conn, self.redis)
        self.stopping = threading.Event()
        self.host: TrainerHost | None = None

    def serve_forever(self) -> None:
        self._install_signal_handlers()
        self._recover()
        beat = threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True)
        beat.start()
        log.info("worker %s ready (workspace %s)", self.name, self.settings.workspace)
        try:
            while not self.stopping.is_set():
                run = store.claim_next_run(self.conn, self.name)
                if run is None:
                    self._wait_for_work()
                    continue
                self.run_one(run)
        finally:
            self.stopping.set()
            self.redis.delete(heartbeat_key(self.name))

    def run_one(self, run: dict) -> RunState:
        run_dir = self.settings.run_dir(run["id"])
        run_dir.mkdir(parents=True, exist_ok=True)
        config = store.run_config(run)
        if run["resume_requested"]:
            config = {**config, "continue_last_backup": True}  # the trainer picks the newest backup
        if self._refuses_paths(run["id"], config, run_dir):
            return RunState.FAILED
        _write_atomic(run_dir / "config.json", json.dumps(config, indent=2))
        self.host = TrainerHost(run, config, run_dir, self.settings.workspace, self.sink, self.redis)
        try:
            state = self.host.run_to_end()
        finally:
            self.host = None
        log.info("run %s ended: %s", run["id"], state.value)
        return state

    def _refuses_paths(self, run_id: int, config: dict, run_dir) -> bool:
        """The web checked the config's paths; the worker checks again with its own roots, in case
        the record was written by something else (never trust one check alone)."""
        roots = paths.read_roots(self.settings.workspace, self.settings.config_dir)
        problems = paths.config_problems(config, self.settings.workspace, roots, run_dir)
        if problems:
            reason = "refused before start: " + "; ".join(f"{p['field']} {p['message']}" for p in problems)
            self.sink.emit(run_id, make_event(Event.RUN, state=RunState.FAILED.value, reason=reason))
        return bool(problems)

    def _wait_for_work(self) -> None:
        try:
            self.redis.blpop([WAKE_KEY], timeout=1)
        except redis.RedisError as exc:
            log.warning("waiting for work: %s", exc)
            self.stopping.wait(1)

    def _recover(self) -> None:
        """A run this worker had when it died is not running any more: say so, durably."""
        for run in store.runs_of_worker(self.conn, self.name, RunState.RUNNING):
            self.sink.emit(run["id"], make_event(
                Event.RUN, state=RunState.INTERRUPTED.value,
                reason="the worker stopped while this run was training"))

    def _heartbeat(self) -> None:
        key = heartbeat_key(self.name)
        while not self.stopping.is_set():
            host = self.host
            beat = {"pid": os.getpid(), "time": time.time(),
                    "run_id": host.run_id if host else None,
                    "trainer_pid": host.pid if host else None}
            try:
                self.redis.set(key, dumps(beat), ex=HEARTBEAT_TTL_S)
            except redis.RedisError as exc:
                log.warning("heartbeat: %s", exc)
            self.stopping.wait(HEARTBEAT_EVERY_S)

    def _install_signal_handlers(self) -> None:
        def on_signal(signum, frame):
            if self.stopping.is_set():
                return
            log.info("worker: %s, stopping", signal.Signals(signum).name)
            self.stopping.set()
            host = self.host
            if host is not None:
                host.request_stop()
                killer = threading.Timer(SHUTDOWN_GRACE_S, host.kill)
                killer.daemon = True  # must not keep a finished worker alive
                killer.start()
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)


def _write_atomic(path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)

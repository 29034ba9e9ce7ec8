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
from webapp.settings import HEARTBEAT_TTL_S, WAKE_KEY, Settings, heartbeat_key
from webapp.protocol import Event, RunState, dumps, make_event
from webapp.eventlog import EventSink
from webapp.worker.supervisor import TrainerHost
from webapp.worker.usage import rank_usage

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
        log.info("worker %s ready (workspace %s, GPUs %s)", self.name, self.settings.workspace,
                 ",".join(map(str, self.settings.worker_gpus)))
        try:
            while not self.stopping.is_set():
                run = store.claim_next_run(self.conn, self.name, gpus=len(self.settings.worker_gpus))
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
        _write_atomic(run_dir / "config.json", json.dumps(config, indent=2))
        self.host = TrainerHost(run, config, run_dir, self.settings.workspace, self.sink, self.redis)
        try:
            state = self.host.run_to_end()
        finally:
            self.host = None
        log.info("run %s ended: %s", run["id"], state.value)
        return state

    def _wait_for_work(self) -> None:
        try:
            self.redis.blpop([WAKE_KEY], timeout=1)
        except redis.RedisError as exc:
            log.warning("waiting for work: %s", exc)
            self.stopping.wait(1)

    def _recover(self) -> None:
        """A run this worker had when it died is not running any more: say so, durably."""
        cause = os.environ.get("OTWEB_RESTART_CAUSE")  # set by `otweb serve` when it restarts us
        reason = "the worker stopped while this run was training" + (f" ({cause})" if cause else "") + \
            "; resume it to continue from its newest backup"
        for run in store.runs_of_worker(self.conn, self.name, RunState.RUNNING):
            self.sink.emit(run["id"], make_event(Event.RUN, state=RunState.INTERRUPTED.value, reason=reason))

    def _heartbeat(self) -> None:
        key = heartbeat_key(self.name)
        while not self.stopping.is_set():
            host = self.host
            beat = {"pid": os.getpid(), "time": time.time(),
                    "run_id": host.run_id if host else None,
                    "trainer_pid": host.pid if host else None,
                    "gpus": list(self.settings.worker_gpus),
                    "ranks": rank_usage(host.pids) if host else []}
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

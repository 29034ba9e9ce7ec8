"""The worker's loop: take an assignment from Redis, host its run, send everything back through
the event stream; a heartbeat; clean shutdown. It shares nothing with the web but Redis: no
SQLite, no shared folder (its runs live in its own folder, ``Settings.worker_dir``).

Assignments are taken reliably: BLMOVE from the worker's inbox into its "taken" list, removed
from there only once the run's final state is sent. One left there at start is a run this worker
held when it died: it is reported interrupted, never started again on its own.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import threading

import redis

from webapp.config import paths
from webapp.protocol import Event, Reason, RunState, dumps, make_event
from webapp.settings import (CONFIG_NAME, HEARTBEAT_TTL_S, WORKERS_KEY, Settings, restart_cause, upload_max_bytes, assign_key,
                             finish_wait_s, owed_max_days, commands_key, drain_key, dataset_cache_bytes,
                             heartbeat_key, joined_key, taken_key, worker_stream, worker_user)
from webapp.worker.backup_receive import CarryError, receive_backup
from webapp.worker.dataset_cache import DatasetCache
from webapp.worker.dataset_receive import DatasetReceiver, DeliveryError
from webapp.worker.heartbeat import GpuProbe, beat
from webapp.worker.owed import OwedJournal
from webapp.worker.owing import Owing
from webapp.worker.stream_sink import StreamSink
from webapp.worker.supervisor import TrainerHost
from webapp.worker.usage import rank_usage
from webapp.worker.uploads import FolderSync
from webapp.worker.warm import WarmTrainer

log = logging.getLogger(__name__)
HEARTBEAT_EVERY_S = 1.0
SHUTDOWN_GRACE_S = 20.0
TAKE_TIMEOUT_S = 1


def redis_client(url: str, name: str | None = None, token: str | None = None) -> redis.Redis:
    """With a token, the worker logs in as its own Redis user (whatever credentials the URL has):
    it reaches only its own keys. Without one it is whoever the URL says (a box trusted whole)."""
    # bounded waits: a lost Redis must not hang the loop (blocking calls wait at most a few seconds)
    client = redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=2, socket_timeout=10,
                                  health_check_interval=15)
    if token:
        client.connection_pool.connection_kwargs.update(username=worker_user(name), password=token)
    return client


class Worker:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.name = settings.worker_name
        self.redis = redis_client(settings.redis_url, self.name, settings.worker_token)
        settings.worker_dir.mkdir(parents=True, exist_ok=True)
        self.sink = StreamSink(self.redis, settings.worker_dir / "spool", worker_stream(self.name))
        self.gpus = GpuProbe()
        self.stopping = threading.Event()
        self.host: TrainerHost | None = None
        self.draining = False
        self.warm: WarmTrainer | None = None
        self.datasets = DatasetCache(settings.worker_dir / "dataset-cache", dataset_cache_bytes())
        self.journal = OwedJournal(settings.worker_owed_dir, owed_max_days())
        self.owing = Owing(self.sink, self.journal, upload_max_bytes())

    def serve_forever(self) -> None:
        self._install_signal_handlers()
        beat_thread = threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True)
        beat_thread.start()
        log.info("worker %s ready (labels %s; GPUs %s; its folder %s)", self.name,
                 ",".join(self.settings.worker_labels) or "none", ",".join(map(str, self.settings.worker_gpus)),
                 self.settings.worker_dir)
        try:
            self._recover()
            self.owing.resume()  # files an earlier worker left unsent: in threads of their own
            self._keep_warm()
            while not self.stopping.is_set():
                assignment = self._take()
                if assignment is not None:
                    self.run_one(assignment)
                    self._done(assignment)
        finally:
            self.stopping.set()
            if self.warm is not None:
                self.warm.discard()
                self.warm = None
            self.sink.drain()
            try:
                self.redis.delete(heartbeat_key(self.name))
            except redis.RedisError:
                pass

    def run_one(self, assignment: dict) -> RunState:
        run_id = assignment["run_id"]
        run_dir = self.settings.worker_run_dir(run_id)
        run_dir.mkdir(parents=True, exist_ok=True)
        config = assignment["config"]
        if assignment.get("resume"):
            config = {**config, "continue_last_backup": True}  # the trainer picks the newest backup
        self.sink.bind(run_id, assignment["id"], run_dir)
        try:
            return self._run_bound(assignment, config, run_dir)
        finally:
            self.datasets.release(run_id)  # its materialised folders; its files may be evicted now

    def _run_bound(self, assignment: dict, config: dict, run_dir) -> RunState:
        run_id = assignment["run_id"]
        given = self._receive_dataset(assignment, config)  # its concepts' paths on this host
        if given is None or self._refuses_paths(run_id, given, run_dir):
            return RunState.FAILED
        received = self._receive_backup(assignment, run_dir)
        if received is None:
            return RunState.FAILED
        # the config as the web sent it (a clone of the run reads the dataset where the web has it)
        _write_atomic(run_dir / CONFIG_NAME, json.dumps(config, indent=2))
        config = given
        self.owing.settle(run_id)  # an earlier assignment's files still sending: this one sends them
        uploads = FolderSync(self.sink, run_id, run_dir, upload_max_bytes(), finish_wait_s(),
                             journal=self.journal, assignment=assignment["id"])
        uploads.already_there(received)  # the web sent them: no need to send them back
        uploads.start()
        warm, self.warm = self.warm, None
        try:
            self.host = TrainerHost({"id": run_id}, config, run_dir, self.settings.data_dir, self.sink, self.redis,
                                    on_exit=uploads.finish, warm=warm, commands=commands_key(self.name, run_id))
        except BaseException:
            self.warm = warm  # still idle: kept for the next run
            raise
        if self.host.adopted_warm:
            log.info("run %s: the warm trainer (pid %s) takes it", run_id, warm.process.pid)
        elif warm is not None:
            if warm.alive():
                self.warm = warm  # a multi-GPU run starts its own ranks: kept for the next run
            else:
                warm.discard()  # it died while waiting: the run got a cold one
        try:
            state = self.host.run_to_end()
        finally:
            self.host = None
            if uploads.following():
                self.owing.keep(uploads)  # its last files follow its end (the heartbeat says how many)
            self._keep_warm()
        log.info("run %s ended: %s", run_id, state.value)
        return state

    def _receive_dataset(self, assignment: dict, config: dict) -> dict | None:
        """The run's dataset, when the web sends it (its folders are on the web's host): the config
        with its concepts' paths on this host; None when it could not be received (the run failed)."""
        if not assignment.get("dataset"):
            return config
        roots = paths.read_roots(self.settings.data_dir, self.settings.config_dir)
        status = lambda text: self.sink.emit(assignment["run_id"], make_event(Event.STATUS, text=text))  # noqa: E731
        try:
            config, _ = DatasetReceiver(self.redis, self.name, self.datasets, self.settings.data_dir, roots,
                                        status).receive(assignment, config)
        except DeliveryError as exc:
            self.sink.emit(assignment["run_id"], make_event(Event.RUN, state=RunState.FAILED.value, reason=str(exc),
                                                            reason_code=Reason.DATASET_DELIVERY.value))
            return None
        return config

    def _receive_backup(self, assignment: dict, run_dir) -> list[str] | None:
        """The backup a resume on this worker was sent with (its own worker is gone); [] when none,
        None when it could not be received (the run is failed with why)."""
        carried = assignment.get("backup")
        if not carried:
            return []
        try:
            placed = receive_backup(self.redis, carried, run_dir)
        except CarryError as exc:
            self.sink.emit(assignment["run_id"], make_event(Event.RUN, state=RunState.FAILED.value, reason=str(exc),
                                                            reason_code=Reason.REFUSED.value))
            return None
        self.sink.emit(assignment["run_id"], make_event(Event.LOG, level="info", text=(
            f"received backup {carried.get('name')} ({len(placed)} files) from the web: resuming from it here")))
        return placed

    def _keep_warm(self) -> None:
        """A trainer process for the next run, importing torch while this worker waits."""
        if self.warm is None and not self.stopping.is_set() and WarmTrainer.enabled():
            self.warm = WarmTrainer(os.getpid())

    def _refuses_paths(self, run_id: int, config: dict, run_dir) -> bool:
        """The web checked the config's paths; the worker checks again with its own roots, in case
        the assignment was written by something else (never trust one check alone)."""
        roots = paths.read_roots(self.settings.data_dir, self.settings.config_dir)
        problems = paths.config_problems(config, self.settings.data_dir, roots, run_dir)
        if problems:
            reason = "refused before start: " + "; ".join(f"{p['field']} {p['message']}" for p in problems)
            self.sink.emit(run_id, make_event(Event.RUN, state=RunState.FAILED.value, reason=reason,
                                              reason_code=Reason.REFUSED.value))
        return bool(problems)

    def _take(self) -> dict | None:
        if self._draining():
            self.stopping.wait(TAKE_TIMEOUT_S)
            return None
        try:
            raw = self.redis.blmove(assign_key(self.name), taken_key(self.name), TAKE_TIMEOUT_S, "RIGHT", "LEFT")
        except redis.RedisError as exc:
            log.warning("waiting for work: %s", exc)
            self.stopping.wait(1)
            return None
        if raw is None:
            return None
        try:
            assignment = json.loads(raw)
            assignment["raw"] = raw
            return assignment
        except ValueError:
            log.error("dropped a malformed assignment: %.200r", raw)
            self.redis.lrem(taken_key(self.name), 1, raw)
            return None

    def _done(self, assignment: dict) -> None:
        """The run's final state is in the stream (or the spool): the assignment is finished. Marked
        so on this host first: Redis may be going away too (a clean shutdown of everything), and an
        assignment left in the taken list is not reported interrupted at the next start when it
        ended (a stopped run, its output saved, became interrupted: issue 33)."""
        marker = self._ended_marker(assignment)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        while True:
            try:
                self.redis.lrem(taken_key(self.name), 1, assignment["raw"])
                break
            except redis.RedisError:
                if self.stopping.wait(1):
                    return  # left there, and marked: the next start takes it out
        marker.unlink(missing_ok=True)

    def _ended_marker(self, assignment: dict):
        return self.settings.worker_ended_dir / str(assignment.get("id"))

    def _draining(self) -> bool:
        try:
            self.draining = bool(self.redis.exists(drain_key(self.name)))
        except redis.RedisError:
            pass
        return self.draining

    def _recover(self) -> None:
        """A run this worker had taken when it died is not running any more: say so."""
        cause = restart_cause()  # set by `otweb serve` when it restarts us
        reason = (f"worker {self.name} stopped while this run was training" + (f" ({cause})" if cause else "")
                  + "; resume it to continue from its newest backup")
        while not self.stopping.is_set():
            try:
                held = self.redis.lrange(taken_key(self.name), 0, -1)
                break
            except redis.RedisError as exc:
                log.warning("connecting to Redis: %s", exc)
                self.stopping.wait(1)
        else:
            return
        for raw in held:
            try:
                assignment = json.loads(raw)
            except ValueError:
                continue
            if self._ended_marker(assignment).exists():
                continue  # it ended before the worker stopped: its final state was sent (or spooled)
            run_id = assignment["run_id"]
            self.sink.bind(run_id, f"{assignment['id']}:recover", self.settings.worker_run_dir(run_id))
            self.sink.emit(run_id, make_event(Event.RUN, state=RunState.INTERRUPTED.value, reason=reason,
                                              reason_code=Reason.WORKER_RESTARTED.value))
        self.redis.delete(taken_key(self.name))
        for marker in self.settings.worker_ended_dir.glob("*"):
            marker.unlink(missing_ok=True)

    def _heartbeat(self) -> None:
        key = heartbeat_key(self.name)
        while not self.stopping.is_set():
            left = self.sink.drain()  # a spool from a Redis outage goes out first, in order
            payload = beat(self.name, self.settings.worker_labels, self.host, left, self.sink.connected,
                           self.gpus.gpus(), self.draining)
            # the devices this worker owns (a run needing more waits) and the usage of each rank
            payload.update(devices=list(self.settings.worker_gpus),
                           ranks=rank_usage(self.host.pids) if self.host else [], owed=self.owing.backlog())
            try:
                pipe = self.redis.pipeline(transaction=False)
                pipe.set(key, dumps(payload), px=int(HEARTBEAT_TTL_S * 1000))
                pipe.set(joined_key(self.name), dumps(payload))
                if not self.settings.worker_token:  # one with a token is in the fleet by the web's doing
                    pipe.sadd(WORKERS_KEY, self.name)
                pipe.execute()
            except redis.RedisError as exc:
                log.debug("heartbeat: %s", exc)
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

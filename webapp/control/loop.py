"""The control plane's background loop: the recorder and the dispatcher, in one thread (a
greenlet under gunicorn's gevent workers) of one web process at a time.

Every web process starts the loop; a Redis lock (renewed each turn, lapsing after LOCK_TTL_S)
makes one of them the leader, and the others stand by to take over. One recorder keeps the events
of a run in the order its worker sent them; idempotence by (run, assignment, n) makes a takeover's
second reading of pending entries harmless. Every Redis call has a timeout: the loop never blocks
a gevent hub for longer than a blocking read's BLOCK_MS.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from contextlib import closing

import redis
from webapp import store
from webapp.settings import DISPATCH_LOCK
from webapp.control.dataset_delivery import DatasetDelivery
from webapp.control.dispatch import Dispatcher
from webapp.control.housekeeping import Housekeeping
from webapp.control.identities import Identities
from webapp.control.notifier import run_notifier
from webapp.control.recorder import Recorder

log = logging.getLogger(__name__)
LOCK_TTL_S = 5.0
LOCK_RENEW_S = 1.0
# an idle loop turns once a second (its reads block that long): a web process's idle CPU was
# mostly these turns at 4 a second. A change to the queue nudges the loop through the event
# stream (run_actions.nudge_dispatcher), so a queued run is handed out at once, not at the next turn
BLOCK_MS = 1000
DISPATCH_EVERY_S = 1.0
TOKEN_CHECK_S = 5.0


class ControlLoop:
    def __init__(self, redis_url: str, database, run_dir, accounts_on: bool, workspace=None):
        """run_dir(run_id): this host's copy of a run's folder. accounts_on: a worker is given runs
        only with a live worker token of its name. workspace: the web's, whose datasets (and the
        data roots') are sent to the worker that trains on them (None: none are sent)."""
        self.redis_url, self.database, self.run_dir, self.accounts_on = redis_url, database, run_dir, accounts_on
        self.workspace = workspace
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.notifier_thread: threading.Thread | None = None
        self.leader = False
        self._renewed_at = 0.0
        self.recorder: Recorder | None = None
        self.dispatcher: Dispatcher | None = None
        self.consumer = f"{socket.gethostname()}-{os.getpid()}"

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="control-loop", daemon=True)
        self.thread.start()
        # webhooks and browser notifications in a thread of their own: a slow destination never
        # holds up the recorder; it works only while this process leads (the loop's lock)
        self.notifier_thread = threading.Thread(target=self._notify, name="notifier", daemon=True)
        self.notifier_thread.start()

    def _notify(self) -> None:
        with closing(store.connect(self.database)) as conn:
            run_notifier(conn, self.stopping, lambda: self.leader)

    def stop(self) -> None:
        self.stopping.set()
        for thread in (self.thread, self.notifier_thread):
            if thread is not None:
                thread.join(timeout=5)

    def stats(self) -> dict:
        return {"leader": self.leader, "consumer": self.consumer,
                "recorder": self.recorder.stats() if self.recorder else None,
                "assigned": self.dispatcher.assigned if self.dispatcher else 0}

    def _run(self) -> None:
        client = redis.Redis.from_url(self.redis_url, decode_responses=True, socket_connect_timeout=2,
                                      socket_timeout=5, health_check_interval=15)
        with closing(store.connect(self.database)) as conn:
            self.recorder = Recorder(conn, client, self.run_dir, self.consumer)
            datasets = DatasetDelivery(client, self.database, self.workspace) if self.workspace else None
            self.dispatcher = Dispatcher(conn, client, token_ok=self._token_checker(conn), run_dir=self.run_dir,
                                         datasets=datasets)
            identities = Identities(conn, client)
            housekeeping = Housekeeping(conn, self.run_dir)
            lock = client.lock(DISPATCH_LOCK, timeout=LOCK_TTL_S, blocking=False)
            dispatched_at = synced_at = float("-inf")
            while not self.stopping.is_set():
                try:
                    if not self._lead(lock):
                        self.stopping.wait(1.0)
                        continue
                    if time.monotonic() - synced_at >= TOKEN_CHECK_S:  # tokens made or revoked meanwhile
                        identities.try_sync()
                        synced_at = time.monotonic()
                    # the read waits no longer than the next dispatch is due (heartbeats are
                    # looked at once a second), or until a nudge comes
                    due_ms = (dispatched_at + DISPATCH_EVERY_S - time.monotonic()) * 1000
                    self._record(int(min(BLOCK_MS, max(1, due_ms))))
                    if self.recorder.nudged or time.monotonic() - dispatched_at >= DISPATCH_EVERY_S:
                        self.dispatcher.step()
                        dispatched_at = time.monotonic()
                    housekeeping.maybe_step()  # ended runs compacted and measured, a little a turn
                except (redis.RedisError, OSError) as exc:
                    log.warning("control loop: Redis: %s", exc)
                    self.leader = False
                    self.stopping.wait(1.0)
                except Exception:  # keep recording: a dead loop would stop every run's record
                    log.exception("control loop failed; going on")
                    self.stopping.wait(1.0)
            if self.leader:
                try:
                    lock.release()
                except redis.RedisError:
                    pass

    def _record(self, block_ms: int) -> None:
        """One recorder step. Dispatch does not wait on the recorder: a step that raises (a bug, a
        wrong-typed key) is logged and the dispatcher still takes its turn; Redis' own errors go
        to the loop when Redis is away (it stands down as leader)."""
        try:
            self.recorder.step(block_ms=block_ms)
        except (redis.ConnectionError, redis.TimeoutError):
            raise
        except Exception:  # noqa: BLE001 - the record catches up at the next step
            log.exception("recorder failed; dispatching anyway")
            self.stopping.wait(min(1.0, block_ms / 1000))

    def _lead(self, lock) -> bool:
        # renewed once per LOCK_RENEW_S, not every turn: a turn per batch of events made the
        # renewal (a Redis round trip) a third of the recorder's cost; the lock lasts LOCK_TTL_S
        if self.leader and time.monotonic() - self._renewed_at >= LOCK_RENEW_S:
            try:
                lock.reacquire()
                self._renewed_at = time.monotonic()
            except redis.exceptions.LockError:
                self.leader = False
        if not self.leader:
            # the lock's value names the process that leads (host-pid), for a person or a test
            # reading it in Redis; unique per acquisition as redis-py's own tokens are
            self.leader = lock.acquire(blocking=False, token=f"{self.consumer}/{uuid.uuid4().hex}")
            self._renewed_at = time.monotonic()
            if self.leader:
                log.info("control loop: %s records events and dispatches runs", self.consumer)
        return self.leader

    def _token_checker(self, conn):
        """With accounts on, a worker is given runs only with a live worker token of its name."""
        if not self.accounts_on:
            return lambda name: True
        from webapp.store import accounts

        checked: dict = {}

        def token_ok(name) -> bool:
            # the worker proved its name by writing its heartbeat as its own Redis user; a revoked
            # token stops new assignments within TOKEN_CHECK_S (not one lookup per turn)
            if "at" not in checked or time.monotonic() - checked["at"] >= TOKEN_CHECK_S:
                checked.update(names=set(accounts.worker_token_hashes(conn)), at=time.monotonic())
            return name in checked["names"]
        return token_ok


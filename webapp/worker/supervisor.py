"""Hosts one run in spawned trainer process(es) and follows it to the end.

A multi-GPU built-in run is one process per rank, supervised as one run (ranks.py): a rank that
dies ends the others and fails the run, naming the rank.

The main loop moves events (queue → bridge → sink); a relay thread moves commands
(Redis list → command queue). When the process ends, the run's final state comes from what
it said (finished, error) and how it exited (code, signal), with the tail of its log.
"""
from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
from pathlib import Path

import redis

from webapp.config.builtin.backend_choice import ranks_to_start
from webapp.protocol import Command, Event, Reason, RunState, make_command, make_event
from webapp.worker.bridge import EventBridge
from webapp.worker.ranks import Ranks
from webapp.worker.warm import WarmTrainer

log = logging.getLogger(__name__)
LOG_TAIL_LINES = 20
# how long the other ranks of a multi-GPU run have to end after rank 0 did
RANKS_EXIT_S = 2.0
# after the trainer's exit, the queue is read until it stays empty this long: a trainer flushes its
# queue before it exits, so what it said is all there; nothing read is dropped, however long sending
# it takes (a 2 s deadline here lost the last minutes of a run over a 200 ms link: issue 33)
EXIT_QUIET_S = 0.05
# events moved per turn: one Redis round trip for all of them (the sink's together()); one round
# trip per event was at most ~5 events/s over a 200 ms link, slower than a sampling trainer speaks
PUMP_BATCH = 500
CATCHING_UP_SHOWN = 50  # events waiting while the trainer runs before the run page says so
# a stop before training begins: the trainer polls while it scans and caches, and so ends by
# itself at once; one that polls nothing (importing torch, loading a model) is ended after this.
# With detection (≤ 0.1 s) and the final event, the run is over well within 2 s.
STOP_GRACE_S = 1.0
PUMP_IDLE_S = 0.5


class TrainerHost:
    def __init__(self, run: dict, config: dict, run_dir: Path, base_dir: Path, sink, redis_client,
                 on_exit=None, warm: WarmTrainer | None = None, commands: str | None = None):
        """on_exit(): called when the trainer process has ended, before the run's final state is
        sent (the worker sends the run folder's last files there). warm: a trainer process started
        ahead (torch already imported); a single-rank run adopts it if it is still alive (then
        ``adopted_warm``), a multi-GPU run leaves it to the worker."""
        self.run, self.config, self.on_exit = run, config, on_exit
        self.run_id = run["id"]
        self.commands_key = commands  # where the web pushes this run's commands (None: none come)
        self.run_dir, self.base_dir = run_dir, base_dir
        self.sink, self.redis = sink, redis_client
        self.bridge = EventBridge(sink, self.run_id)
        count = ranks_to_start(config)
        self.adopted_warm = warm is not None and count == 1 and warm.alive()
        context = multiprocessing.get_context("spawn")
        if self.adopted_warm:
            self.events, self.commands = warm.events, warm.commands
        else:
            self.events, self.commands = context.Queue(), context.Queue()
        self.ranks = Ranks(context, count, self.run_id, config, run_dir, base_dir,
                           self.events, self.commands, warm=warm if self.adopted_warm else None)
        self.process = self.ranks.main
        self.done = threading.Event()
        self.timers: list[threading.Timer] = []
        self.shutdown_requested = False
        self.stop_sent = False
        self.pid: int | None = None
        self.pids: list[int] = []
        self.stopped_before_training = False
        self.exited = False  # the trainer process has ended: what is left is sending its events

    def run_to_end(self) -> RunState:
        self.ranks.start()
        self.process = self.ranks.main  # another one if the warm trainer died before it was handed the run
        self.pid = self.process.pid
        self.pids = self.ranks.pids
        self.sink.emit(self.run_id, make_event(Event.RUN, state=RunState.RUNNING.value, pid=self.pid,
                                               ranks=len(self.pids)))
        relay = threading.Thread(target=self._relay_commands, name="command-relay", daemon=True)
        relay.start()
        try:
            self._pump_events()
        finally:
            self.done.set()
            for timer in self.timers:
                timer.cancel()
            if self.on_exit is not None:
                self.on_exit()
        state, reason, code = self._final_state()
        self.sink.emit(self.run_id, make_event(Event.RUN, state=state.value, reason=reason, reason_code=code,
                                               exit_code=self.process.exitcode))
        # after the final state, not before: the relay wakes from its BLPOP within a second, and a
        # stop's "run ended" must not wait for that (it did: up to 1 s of the 2 s a stop may take)
        relay.join(timeout=3)
        for timer in self.timers:
            timer.join(timeout=1)
        self.ranks.close()
        return state

    def request_stop(self) -> None:
        """Graceful: the trainer finishes its step, saves, and ends."""
        self.shutdown_requested = True
        self.send(make_command(Command.STOP))
        self._stop_soon_if_not_training()

    def kill(self) -> None:
        self.ranks.kill()

    def send(self, command: dict) -> None:
        try:
            self.commands.put_nowait(command)
        except (ValueError, OSError):  # queue closed: the trainer is gone already
            pass

    def _pump_events(self) -> None:
        while self.ranks.running():
            # wake often once the run is ending, so that its final state follows the process's
            # exit at once; while it trains, events (at most a few a second) wake the loop, and a
            # process killed without a last event is noticed within PUMP_IDLE_S
            self._move_events(timeout=0.01 if self._ending() else PUMP_IDLE_S)
        # the process is gone: take everything it left in the pipe (a killed one's half-written
        # message ends the reading)
        self.exited = True
        while self._move_events(timeout=EXIT_QUIET_S):
            pass
        self.ranks.wait_rest(timeout=RANKS_EXIT_S)

    def _ending(self) -> bool:
        return self.stop_sent or self.bridge.finished is not None or self.bridge.last_error is not None

    def _move_events(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for an event, then take every one waiting (up to PUMP_BATCH) and
        send them in one round trip; False when none came."""
        event = self._next_event(timeout)
        if event is None:
            return False
        moved = 0
        with getattr(self.sink, "together", contextlib.nullcontext)():
            while event is not None:
                self.bridge.handle(event)
                moved += 1
                event = self._next_event(None) if moved < PUMP_BATCH else None
        return True

    def _next_event(self, timeout: float | None) -> dict | None:
        """The next event; None when none came within ``timeout`` (None: only one already waiting)."""
        try:
            return self.events.get(block=timeout is not None, timeout=timeout)
        except queue.Empty:
            return None
        except (EOFError, OSError, ValueError):  # a half-written message from a killed process
            return None

    def catching_up(self) -> int:
        """Events the trainer said that the worker has not sent yet, once the trainer has ended or
        when they are many (0 otherwise): the heartbeat carries it, the run page says "catching up"."""
        try:
            waiting = self.events.qsize()
        except (NotImplementedError, OSError, ValueError):  # qsize is missing on macOS
            return 0
        return waiting if self.exited or waiting >= CATCHING_UP_SHOWN else 0

    def _relay_commands(self) -> None:
        key = self.commands_key
        while key and not self.done.is_set():
            try:
                item = self.redis.blpop([key], timeout=1)
            except redis.RedisError as exc:
                log.warning("command relay: %s", exc)
                time.sleep(1)
                continue
            if item:
                command = json.loads(item[1])
                self.send(command)
                if command.get("command") == Command.STOP.value:
                    self._stop_soon_if_not_training()

    def _stop_soon_if_not_training(self) -> None:
        """Model loading is one blocking call that polls nothing: if the trainer has not begun
        training within STOP_GRACE_S of a stop, end it (there is nothing to save yet)."""
        self.stop_sent = True
        def end_if_still_starting():
            if self.done.is_set():
                return  # ended meanwhile (the process object may be closed by now)
            if Event.PROGRESS.value not in self.bridge.seen and self.process.is_alive():
                self.stopped_before_training = True
                self.ranks.terminate()
        timer = threading.Timer(STOP_GRACE_S, end_if_still_starting)
        timer.daemon = True
        self.timers.append(timer)
        timer.start()

    def _final_state(self) -> tuple[RunState, str | None, str | None]:
        """The run's final state, the words and the code (protocol.Reason) of why."""
        code = self.process.exitcode
        finished = self.bridge.finished
        failure = self.ranks.failure()
        if failure is not None and not self.stopped_before_training:
            return RunState.FAILED, self._rank_failure(*failure), Reason.RANK_FAILED.value
        if code == 0 and finished is not None:
            return (RunState.STOPPED if finished.get("stopped") else RunState.COMPLETED), None, None
        if self.stopped_before_training:
            return RunState.STOPPED, "stopped before training began", Reason.STOPPED_EARLY.value
        why = Reason.TRAINER_FAILED if self.bridge.last_error else Reason.TRAINER_EXITED
        if self.bridge.last_error:
            reason = self.bridge.last_error.get("message") or "the trainer failed"
        elif code is not None and code < 0:
            name = signal.Signals(-code).name
            hint = " (out of memory?)" if -code == signal.SIGKILL else ""
            reason = f"the trainer process was killed by {name}{hint}"
        else:
            reason = f"the trainer process exited with code {code} before finishing"
        tail = self._log_tail()
        if tail:
            reason += "\n--- last lines of trainer.log ---\n" + tail
        if self.shutdown_requested and not self.bridge.last_error:
            return RunState.INTERRUPTED, "the worker shut down before the trainer finished", Reason.WORKER_SHUTDOWN.value
        return RunState.FAILED, reason, why.value

    def _rank_failure(self, rank: int, how: str) -> str:
        reason = f"rank {rank} of {self.ranks.count} {how}; the run was ended on every rank"
        error = self.bridge.last_error
        if error and error.get("rank", 0) == rank:
            reason += f": {error.get('message')}"
        tail = self._log_tail(rank)
        if tail:
            reason += f"\n--- last lines of {Ranks.log_name(rank)} ---\n" + tail
        return reason

    def _log_tail(self, rank: int = 0) -> str:
        path = self.run_dir / Ranks.log_name(rank)
        try:
            with open(path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - 16384))
                lines = fh.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-LOG_TAIL_LINES:])

"""Commands into a trainer (OneTrainer's shape): flags the trainer polls once per step.

``poll()`` drains the multiprocessing queue (without blocking, unless asked to wait) and sets the
flags; the trainer then reads ``stop_requested`` (sticky) and takes the one-shot requests with
``take_*``.
"""
from __future__ import annotations

import queue as queue_module
import time

from webapp.protocol import Command


class TrainCommands:
    def __init__(self, commands_queue=None):
        self._queue = commands_queue
        self.stop_requested = False
        self._sample_default = False
        self._backup = False
        self._save = False
        self._custom_samples: list[dict] = []

    # -- producer side (the queue, or a direct caller such as a terminal's Ctrl-C) --
    def apply(self, message: dict) -> None:
        name = Command(message["command"])
        if name is Command.STOP:
            self.stop_requested = True
        elif name is Command.SAMPLE_DEFAULT:
            self._sample_default = True
        elif name is Command.SAMPLE_CUSTOM:
            self._custom_samples.append(dict(message.get("sample") or {}))
        elif name is Command.BACKUP:
            self._backup = True
        elif name is Command.SAVE:
            self._save = True

    def stop(self) -> None:
        self.apply({"command": Command.STOP.value})

    def poll(self, wait_s: float = 0.0) -> None:
        """Take every queued command. ``wait_s`` > 0 blocks up to that long for the first one: a
        thread that only forwards commands (the OneTrainer backend's) then passes a stop on as it
        arrives instead of at its next tick."""
        if self._queue is None:  # commands come by direct calls (a terminal's Ctrl-C)
            if wait_s > 0:  # a waiting caller (a loop) must not spin; a step's poll must not yield
                time.sleep(wait_s)  # (sleep(0) is a syscall: 1-2 % of `otweb train`'s loop under load)
            return
        while True:
            try:
                message = self._queue.get(timeout=wait_s) if wait_s > 0 else self._queue.get_nowait()
            except queue_module.Empty:
                return
            except (EOFError, OSError):  # the worker went away: stop cleanly
                self.stop_requested = True
                time.sleep(wait_s)  # nor here, on a broken pipe
                return
            self.apply(message)
            wait_s = 0.0  # the rest are drained without waiting

    # -- consumer side (the trainer) --
    def take_sample_default(self) -> bool:
        requested, self._sample_default = self._sample_default, False
        return requested

    def take_custom_samples(self) -> list[dict]:
        samples, self._custom_samples = self._custom_samples, []
        return samples

    def take_backup(self) -> bool:
        requested, self._backup = self._backup, False
        return requested

    def take_save(self) -> bool:
        requested, self._save = self._save, False
        return requested

"""Callbacks out of a trainer (OneTrainer's shape, our names).

A backend calls these; they turn into protocol events. ``QueueCallbacks`` puts them on the
worker's multiprocessing queue with ``put_nowait`` (an unbounded queue: never blocks a step),
progress batched (protocol.PROGRESS_EVERY_S).
``TrainCallbacks`` itself does nothing, so a backend can always call it (``otweb train``
and benchmarks use it, or a subclass that prints).
"""
from __future__ import annotations

import time

from webapp.protocol import PROGRESS_EVERY_S, Event, make_event


class TrainCallbacks:
    """The interface. Every method is optional for a caller to care about; all are cheap."""

    def emit(self, event: Event, **data) -> None:
        pass

    def progress(self, *, global_step: int, max_step: int, epoch: int, max_epoch: int,
                 epoch_step: int, epoch_length: int, loss: float | None = None,
                 lr: float | None = None) -> None:
        self.emit(Event.PROGRESS, global_step=global_step, max_step=max_step, epoch=epoch,
                  max_epoch=max_epoch, epoch_step=epoch_step, epoch_length=epoch_length,
                  loss=loss, lr=lr)

    def status(self, text: str) -> None:
        self.emit(Event.STATUS, text=text)

    def sample(self, kind: Event, **sample) -> None:
        """kind is Event.SAMPLE_DEFAULT or Event.SAMPLE_CUSTOM; sample holds path (relative
        to the run folder), prompt, negative_prompt, seed, steps, cfg_scale, width, height,
        global_step, epoch."""
        self.emit(kind, **sample)

    def sample_progress(self, step: int, max_step: int) -> None:
        self.emit(Event.SAMPLE_PROGRESS, step=step, max_step=max_step)

    def log(self, text: str, level: str = "info", **extra) -> None:
        """extra: ``artifact={"kind": "save"|"backup", "path", "global_step", "epoch"}`` when the
        line announces a model written into the run folder (it becomes a model version)."""
        self.emit(Event.LOG, text=text, level=level, **extra)

    def error(self, message: str, traceback: str = "") -> None:
        self.emit(Event.ERROR, message=message, traceback=traceback)

    def finished(self, *, stopped: bool, output: str | None) -> None:
        self.emit(Event.FINISHED, stopped=stopped, output=output)


class QueueCallbacks(TrainCallbacks):
    """Progress goes out at most every PROGRESS_EVERY_S with the loss rows of every step since the
    last one; the first at once, and a held one before any other event (order is kept). A step
    that finds the interval passed sends at once, so a held progress waits one step at most."""

    def __init__(self, events_queue, progress_every_s: float = PROGRESS_EVERY_S):
        self._queue = events_queue
        self._every_s = progress_every_s
        self._held: dict | None = None
        self._rows: list[list] = []
        self._sent_at = float("-inf")

    def emit(self, event: Event, **data) -> None:
        if event == Event.PROGRESS:
            self._held = make_event(event, **data)
            self._rows.append([data.get("global_step"), data.get("loss"), data.get("lr"), self._held["time"]])
            if time.monotonic() - self._sent_at >= self._every_s:
                self.flush()
            return
        self.flush()
        self._queue.put_nowait(make_event(event, **data))

    def flush(self) -> None:
        """Send the held progress (with its rows) now."""
        if self._held is None:
            return
        self._held["data"]["rows"] = self._rows
        self._queue.put_nowait(self._held)
        self._held, self._rows, self._sent_at = None, [], time.monotonic()


class RankCallbacks(QueueCallbacks):
    """A rank other than 0 of a multi-GPU run: rank 0 reports for the group, so only this
    rank's own failure goes out (named, so the run's reason says which rank failed)."""

    def __init__(self, events_queue, rank: int):
        super().__init__(events_queue)
        self.rank = rank

    def emit(self, event: Event, **data) -> None:
        if event is Event.ERROR:
            data["message"] = f"rank {self.rank}: {data.get('message', '')}"
            data["rank"] = self.rank
            super().emit(event, **data)

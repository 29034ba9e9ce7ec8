"""Moves a trainer's events to the sink, in order: every loss value to the metrics table with the
progress it came with, everything else at once.

The trainer batches progress (protocol.PROGRESS_EVERY_S; each event carries the loss rows of the
steps since the one before). The bridge derives what the trainer need not compute on its hot path:
speed (it/s), ETA and a smoothed loss.
"""
from __future__ import annotations

import contextlib
from collections import deque

from webapp.protocol import Event

SPEED_WINDOW = 50            # steps the it/s figure is averaged over
LOSS_SMOOTHING = 0.9


class EventBridge:
    def __init__(self, sink, run_id: int):
        self.sink, self.run_id = sink, run_id
        self.recent_steps: deque = deque(maxlen=SPEED_WINDOW)
        self.smooth_loss: float | None = None
        self.seen: set[str] = set()
        self.last_error: dict | None = None
        self.finished: dict | None = None
        self.newest_step: int | None = None  # in the heartbeat: where the trainer is, whatever the record has

    def handle(self, event: dict) -> None:
        name = event["event"]
        self.seen.add(name)
        if name == Event.PROGRESS:
            self._progress(event)
            return
        if name == Event.ERROR:
            self.last_error = event["data"]
        elif name == Event.FINISHED:
            self.finished = event["data"]
        self.sink.emit(self.run_id, event)

    def _progress(self, event: dict) -> None:
        data = event["data"]
        step = data.get("global_step", 0)
        self.newest_step = step
        # a trainer's batch, or one step's event (a sender that does not batch)
        rows = [tuple(row) for row in data.pop("rows", None) or [(step, data.get("loss"), data.get("lr"), event["time"])]]
        for row_step, loss, _lr, at in rows:
            self.recent_steps.append((at, row_step))
            if loss is not None:
                self.smooth_loss = loss if self.smooth_loss is None else (
                    LOSS_SMOOTHING * self.smooth_loss + (1 - LOSS_SMOOTHING) * loss)
        data.update(self._rates(step, data.get("max_step") or 0), smooth_loss=self.smooth_loss)
        # the loss rows and their progress in one send where the sink can (the worker's StreamSink)
        with getattr(self.sink, "together", contextlib.nullcontext)():
            self.sink.metrics(self.run_id, rows)
            self.sink.emit(self.run_id, event)

    def _rates(self, step: int, max_step: int) -> dict:
        if len(self.recent_steps) < 2:
            return {"speed": None, "eta_s": None}
        (t0, s0), (t1, s1) = self.recent_steps[0], self.recent_steps[-1]
        speed = (s1 - s0) / (t1 - t0) if t1 > t0 else None
        eta = (max_step - step) / speed if speed and max_step >= step else None
        return {"speed": speed, "eta_s": eta}

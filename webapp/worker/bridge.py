"""Moves a trainer's events to the sink: every loss value to the metrics table, progress for live
display coalesced to a few per second, everything else at once and in order.

It also derives what the trainer need not compute on its hot path: speed (it/s), ETA and a
smoothed loss.
"""
from __future__ import annotations

import contextlib
import time
from collections import deque

from webapp.protocol import Event

PROGRESS_INTERVAL_S = 0.08   # live progress at most 12 times a second: a held one waits < 80 ms
SPEED_WINDOW = 50            # steps the it/s figure is averaged over
LOSS_SMOOTHING = 0.9


class EventBridge:
    def __init__(self, sink, run_id: int):
        self.sink, self.run_id = sink, run_id
        self.pending_progress: dict | None = None
        self.pending_metrics: list[tuple] = []
        self.last_progress_at = 0.0
        self.recent_steps: deque = deque(maxlen=SPEED_WINDOW)
        self.smooth_loss: float | None = None
        self.seen: set[str] = set()
        self.last_error: dict | None = None
        self.finished: dict | None = None

    def handle(self, event: dict) -> None:
        name = event["event"]
        self.seen.add(name)
        if name == Event.PROGRESS:
            self._take_progress(event)
            return
        if name == Event.ERROR:
            self.last_error = event["data"]
        elif name == Event.FINISHED:
            self.finished = event["data"]
        self.flush()  # keep order: progress before whatever follows it
        self.sink.emit(self.run_id, event)

    def due_in(self) -> float | None:
        """Seconds until the held progress is due to go out (None: none is held)."""
        if not self.pending_progress:
            return None
        return max(0.0, self.last_progress_at + PROGRESS_INTERVAL_S - time.monotonic())

    def tick(self) -> None:
        """Called when the queue is quiet, so the last progress still goes out on time."""
        if self.pending_progress and time.monotonic() - self.last_progress_at >= PROGRESS_INTERVAL_S:
            self.flush()

    def flush(self) -> None:
        # the loss rows and their progress in one send where the sink can (the worker's StreamSink)
        with getattr(self.sink, "together", contextlib.nullcontext)():
            if self.pending_metrics:
                self.sink.metrics(self.run_id, self.pending_metrics)
                self.pending_metrics = []
            if self.pending_progress:
                self.sink.emit(self.run_id, self.pending_progress)
                self.pending_progress = None
                self.last_progress_at = time.monotonic()

    def _take_progress(self, event: dict) -> None:
        data = event["data"]
        step, loss = data.get("global_step", 0), data.get("loss")
        self.recent_steps.append((event["time"], step))
        if loss is not None:
            self.smooth_loss = loss if self.smooth_loss is None else (
                LOSS_SMOOTHING * self.smooth_loss + (1 - LOSS_SMOOTHING) * loss)
        self.pending_metrics.append((step, loss, data.get("lr"), event["time"]))
        data.update(self._rates(step, data.get("max_step") or 0), smooth_loss=self.smooth_loss)
        self.pending_progress = event
        if time.monotonic() - self.last_progress_at >= PROGRESS_INTERVAL_S:
            self.flush()

    def _rates(self, step: int, max_step: int) -> dict:
        if len(self.recent_steps) < 2:
            return {"speed": None, "eta_s": None}
        (t0, s0), (t1, s1) = self.recent_steps[0], self.recent_steps[-1]
        speed = (s1 - s0) / (t1 - t0) if t1 > t0 else None
        eta = (max_step - step) / speed if speed and max_step >= step else None
        return {"speed": speed, "eta_s": eta}

"""A TrainCallbacks that keeps every event, for tests that run a backend in-process, and a sink that
keeps what the worker's bridge hands it. (Named apart from webapp.control.recorder.Recorder, which
records a run's stream into SQLite.)"""
from __future__ import annotations

from webapp.trainer.callbacks import TrainCallbacks
from webapp.protocol import Event


class RecordingCallbacks(TrainCallbacks):
    def __init__(self):
        self.events: list[tuple[Event, dict]] = []

    def emit(self, event, **data):
        self.events.append((Event(event), data))

    def of(self, event) -> list[dict]:
        return [data for name, data in self.events if name is Event(event)]


class RecordingSink:
    """What EventBridge gives a sink: events and loss rows, kept."""

    def __init__(self):
        self.events, self.rows = [], []

    def emit(self, run_id, event):
        self.events.append(event)

    def metrics(self, run_id, rows):
        self.rows += rows

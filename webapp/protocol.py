"""The one contract between a trainer, the worker and the web: names and wire format.

Events travel as plain dicts ``{"event": name, "data": {...}, "time": unix_seconds}`` from
the trainer process; the worker's sink numbers them (``seq``) and adds ``run_id``. Images
travel as files in the run folder, never through queues.
"""
from __future__ import annotations

import json
import time
from enum import Enum

# a config holding this key is a playground session, not a training: the trainer process hosts the
# playground backend for it (webapp/trainer/playground_backend.py) and the web lists it apart
PLAYGROUND_MARKER = "__playground__"
# the file that marks a backup folder complete: the trainer writes it last, a worker uploads it last,
# and the web carries only a backup that has it (a resume on another worker)
BACKUP_COMPLETE_FILE = "progress.json"
# a backup the web may send to another host holds only these files: tensors as safetensors, the rest
# as JSON (the built-in trainer's format); one with anything else (a pickle: optimizer.pt, a OneTrainer
# backup) resumes only on the host that wrote it, since unpickling it elsewhere could run its code there
BACKUP_STATE_STEM = "training_state"
# the largest side a sample may ask for (a custom sample's width and height); a sample image larger
# than this and than the run's resolution is refused when it arrives (webapp/control/sample_check.py)
SAMPLE_MAX_SIDE = 4096
BACKUP_SAFE_FILES = frozenset({BACKUP_COMPLETE_FILE, "config.json", "trained.safetensors",
                               f"{BACKUP_STATE_STEM}.safetensors", f"{BACKUP_STATE_STEM}.json"})
# progress leaves the trainer at most this often, each event carrying the loss rows of the steps since
# the last one (every loss is recorded). Once a second still reads as live in a browser; per step (up
# to ~50 a second on a small model) every hop after the trainer paid for each event: the worker's
# queue, Redis, the recorder and every viewer's stream (benchmarks/bench_fleet_cpu.py: worker + web
# CPU per minute of training went from 3.8 s to 0.55 s)
PROGRESS_EVERY_S = 1.0


class Event(str, Enum):
    # named after OneTrainer's callbacks
    PROGRESS = "progress"            # global_step, max_step, epoch, max_epoch, epoch_step, epoch_length, loss, lr
    #                                  (from the trainer also rows: [[step, loss, lr, time], ...], taken off by the worker)
    STATUS = "status"                # text
    SAMPLE_DEFAULT = "sample_default"  # sample: path (relative to the run folder), prompt, settings...
    SAMPLE_CUSTOM = "sample_custom"
    SAMPLE_PROGRESS = "sample_progress"  # step, max_step
    LOG = "log"                      # text, level[, artifact: {kind: save|backup, path, global_step, epoch}][, torch_threads]
    ERROR = "error"                  # message, traceback
    FINISHED = "finished"            # stopped (bool), output (path or None)
    # emitted by the worker, not the trainer: the run's lifecycle
    RUN = "run"                      # state: queued|running|completed|stopped|failed|interrupted|canceled, reason


class Command(str, Enum):
    STOP = "stop"
    SAMPLE_DEFAULT = "sample_default"
    SAMPLE_CUSTOM = "sample_custom"  # + "sample": {prompt, negative_prompt, seed, steps, cfg_scale, width, height}
    BACKUP = "backup"
    SAVE = "save"


class RunState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    STOPPED = "stopped"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    CANCELED = "canceled"            # taken out of the queue before it ran

    @property
    def is_active(self) -> bool:
        return self in (RunState.QUEUED, RunState.RUNNING)


SAMPLE_EVENTS = (Event.SAMPLE_DEFAULT, Event.SAMPLE_CUSTOM)


class Reason(str, Enum):
    """Why a run is in its state, as a code beside the words (a run event's ``reason_code``): code
    reads the code, people read the words."""
    WORKER_LAPSED = "worker_lapsed"        # its worker stopped sending heartbeats (control/heartbeats.py)
    WORKER_RESTARTED = "worker_restarted"  # its worker started again and found the run it had taken
    WORKER_SHUTDOWN = "worker_shutdown"    # its worker was asked to stop before the trainer finished
    TRAINER_FAILED = "trainer_failed"      # the trainer reported an error (its message is the words)
    TRAINER_EXITED = "trainer_exited"      # the trainer process ended (killed, or an exit code) without finishing
    RANK_FAILED = "rank_failed"            # one rank of a multi-GPU run failed: every rank was ended
    STOPPED_EARLY = "stopped_early"        # stopped before its first training step
    REFUSED = "refused"                    # the worker refused it before it started (its paths, a carried backup)
    CANCELED = "canceled"                  # taken out of the queue before it ran
    DATASET_DELIVERY = "dataset_delivery"  # its dataset could not be sent to its worker (control/dataset_delivery.py)


def make_event(event: Event | str, **data) -> dict:
    return {"event": Event(event).value, "data": data, "time": time.time()}


def make_command(command: Command | str, **data) -> dict:
    return {"command": Command(command).value, **data}


# compact and ASCII-only: one format for SQLite, Redis and SSE. One encoder made once: json.dumps
# with options builds a new JSONEncoder per call, a third of the cost of a small event's encoding
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)


def dumps(obj: dict) -> str:
    return _ENCODER.encode(obj)

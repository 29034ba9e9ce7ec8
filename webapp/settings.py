"""Settings from the environment, one place for the web, the worker and the CLI."""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

EVENTS_CHANNEL = "otweb:events"          # Redis pub/sub: every numbered event, as JSON
# a worker whose heartbeat is older is gone: its run is marked interrupted within this
HEARTBEAT_TTL_S = float(os.environ.get("OTWEB_HEARTBEAT_TTL_S") or 15)

# the fleet: what a worker and the control plane share, all in Redis (see DESIGN "One event")
EVENT_STREAM = "otweb:stream:events"     # events, losses and small files (samples), in order
FILE_STREAM = "otweb:stream:files"       # the chunks of larger files (log, config, outputs, backups)
RECORDER_GROUP = "recorder"              # the control plane's consumer group on both streams
WORKERS_KEY = "otweb:workers"            # hash: worker name -> what it said when it joined
DRAIN_KEY = "otweb:drain"                # set: workers that finish their run and take no more
DISPATCH_LOCK = "otweb:dispatch:lock"    # one dispatcher at a time among the web processes

# a run folder (Settings.run_dir): what the worker and the trainer write there, and the web reads
CONFIG_NAME = "config.json"              # the config as it ran
LOG_NAME = "trainer.log"                 # the trainer process's stdout and stderr


def upload_max_bytes() -> int:
    """OTWEB_UPLOAD_MAX_MB: the largest file a worker uploads (a larger one stays on its host), and
    the most the web accepts of one file."""
    return int(float(os.environ.get("OTWEB_UPLOAD_MAX_MB") or 4096) * 1e6)


def rank_log_name(rank: int) -> str:
    """The log of rank ``rank`` > 0 of a multi-GPU run (rank 0 writes LOG_NAME)."""
    return f"trainer-rank{rank}.log"


def parse_gpus(text: str) -> tuple[int, ...]:
    """"0,1,2,3" → (0, 1, 2, 3); ValueError naming what is wrong."""
    parts = [part.strip() for part in str(text).split(",") if part.strip()]
    if not parts or not all(part.isdigit() for part in parts):
        raise ValueError(f"{text!r}: list the GPUs as numbers separated by commas, e.g. 0,1")
    gpus = tuple(int(part) for part in parts)
    if len(set(gpus)) != len(gpus):
        raise ValueError(f"{text!r} names a GPU twice")
    return gpus


def heartbeat_key(worker: str) -> str:
    return f"otweb:worker:{worker}"


def commands_key(run_id: int) -> str:
    return f"otweb:run:{run_id}:commands"


def assign_key(worker: str) -> str:
    """A worker's inbox: the control plane pushes an assignment, the worker BLMOVEs it out."""
    return f"otweb:assign:{worker}"


def carry_key(assignment_id: str) -> str:
    """The chunks of a backup the control plane sends with a resume to a worker that lacks it."""
    return f"otweb:carry:{assignment_id}"


def taken_key(worker: str) -> str:
    """Where a worker keeps the assignment it took until its run has ended (reliable queue)."""
    return f"otweb:taken:{worker}"


@dataclass
class Settings:
    workspace: Path
    config_dir: Path
    redis_url: str | None
    worker_name: str
    worker_gpus: tuple[int, ...] = (0,)  # the devices this worker owns (otweb worker --gpus 0,1)
    worker_labels: tuple = ()
    worker_token: str | None = None
    data_dir: Path | None = None             # where a worker resolves a config's relative paths

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        env = os.environ
        values = dict(
            workspace=Path(env.get("OTWEB_WORKSPACE", "workspace")),
            config_dir=Path(env.get("OTWEB_CONFIG_DIR", "configs")),
            redis_url=env.get("REDIS_URL") or None,
            worker_name=env.get("OTWEB_WORKER_NAME") or f"{socket.gethostname()}-gpu0",
            worker_gpus=parse_gpus(env.get("OTWEB_WORKER_GPUS") or "0"),
            worker_labels=parse_labels(env.get("OTWEB_WORKER_LABELS", "")),
            worker_token=env.get("OTWEB_WORKER_TOKEN") or None,
            data_dir=Path(env["OTWEB_DATA_DIR"]) if env.get("OTWEB_DATA_DIR") else None,
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.workspace = Path(settings.workspace).resolve()
        settings.config_dir = Path(settings.config_dir).resolve()
        settings.data_dir = Path(settings.data_dir or settings.workspace).resolve()
        return settings

    @property
    def database(self) -> Path:
        return self.workspace / "otweb.sqlite3"

    def run_dir(self, run_id: int) -> Path:
        return self.workspace / "runs" / str(run_id)

    @property
    def worker_dir(self) -> Path:
        """A worker's own folder (its run folders and its spool): never the control plane's runs/,
        so a worker and the web on one box (``otweb serve``) do not write the same files."""
        return self.workspace / "worker"

    def worker_run_dir(self, run_id: int) -> Path:
        return self.worker_dir / "runs" / str(run_id)

    def export_env(self) -> dict:
        """The environment a child process (worker, gunicorn) needs to see the same settings."""
        env = dict(os.environ, OTWEB_WORKSPACE=str(self.workspace), OTWEB_CONFIG_DIR=str(self.config_dir),
                   OTWEB_WORKER_NAME=self.worker_name, OTWEB_WORKER_LABELS=",".join(self.worker_labels),
                   OTWEB_WORKER_GPUS=",".join(str(i) for i in self.worker_gpus))
        if self.worker_token:
            env["OTWEB_WORKER_TOKEN"] = self.worker_token
        if self.redis_url:
            env["REDIS_URL"] = self.redis_url
        return env


def parse_labels(text) -> tuple:
    """"24gb, sdxl" -> ("24gb", "sdxl"): lower case, no blanks, no duplicates."""
    if isinstance(text, (list, tuple)):
        text = ",".join(text)
    return tuple(dict.fromkeys(part.strip().lower() for part in str(text or "").split(",") if part.strip()))

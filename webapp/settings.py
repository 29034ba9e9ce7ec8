"""Settings from the environment, one place for the web, the worker and the CLI."""
from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

EVENTS_CHANNEL = "otweb:events"          # Redis pub/sub: every numbered event, as JSON


def env_text(name: str, default: str = "", env=None) -> str:
    """One setting as the environment gives it, read when asked, not at import: a test or `otweb
    serve` sets it for the process it starts. Every module reads its settings here."""
    return str((os.environ if env is None else env).get(name) or default).strip()


def env_flag(name: str, default: bool, env=None) -> bool:
    text = env_text(name, "", env).lower()
    return default if not text else text not in ("0", "false", "no", "off")


def compact_after_s(env=None) -> float:
    """OTWEB_COMPACT_AFTER_S: how long after a run has ended its progress events are thinned
    (store.compaction) and its folder measured; an hour by default, so that a run just ended still
    replays in full to whoever watched it."""
    return float(env_text("OTWEB_COMPACT_AFTER_S", "3600", env))


# a worker whose heartbeat is older is gone: its run is marked interrupted within this. Read once
# per process: the web and its workers must agree, and both get it at their start
HEARTBEAT_TTL_S = float(env_text("OTWEB_HEARTBEAT_TTL_S", "15"))
DATA_ROOTS_ENV = "OTWEB_DATA_ROOTS"      # folders a config may read besides the workspace and configs
CONFIG_DIR_ENV = "OTWEB_CONFIG_DIR"
ONETRAINER_DIR_ENV = "ONETRAINER_DIR"    # an installed OneTrainer checkout (its backend)


def upload_max_bytes(env=None) -> int:
    """OTWEB_UPLOAD_MAX_MB: a run folder's file larger than this stays on its worker's host."""
    return int(float(env_text("OTWEB_UPLOAD_MAX_MB", "4096", env)) * 1e6)


def finish_wait_s(env=None) -> float:
    """OTWEB_FINISH_WAIT_S: how long a run's last files wait for room in the event stream before its
    end is reported without them (they follow it, noted in the worker's owed/ journal)."""
    return float(env_text("OTWEB_FINISH_WAIT_S", "30", env))


def owed_max_days(env=None) -> float:
    """OTWEB_OWED_MAX_DAYS: files a worker still owes the web are given up after this long."""
    return float(env_text("OTWEB_OWED_MAX_DAYS", "14", env))


def warm_trainer_enabled(env=None) -> bool:
    """OTWEB_WARM_TRAINER (default on): a worker keeps a trainer process with torch imported ready."""
    return env_flag("OTWEB_WARM_TRAINER", True, env)


def restart_cause(env=None) -> str | None:
    """OTWEB_RESTART_CAUSE: set by `otweb serve` on a worker it starts again (why the last one ended)."""
    return env_text("OTWEB_RESTART_CAUSE", "", env) or None

# the fleet: what a worker and the control plane share, all in Redis (see DESIGN "One event").
# Everything a worker reads or writes is under its own prefix (worker_prefix), the only keys its
# Redis user may touch (control/identities.py); the rest is the web's.
RECORDER_GROUP = "recorder"              # the control plane's consumer group on every worker's stream
WORKERS_KEY = "otweb:fleet"              # set: the workers' names (the web adds each with a worker token)
NUDGE_STREAM = "otweb:stream:nudge"      # the web's own: "look at the queue now" (run_actions.nudge_dispatcher)
WORKER_USER_PREFIX = "otweb-worker-"     # a worker's Redis (ACL) user: this + its name; its password is its token
DISPATCH_LOCK = "otweb:dispatch:lock"    # one dispatcher at a time among the web processes
# the web's own (no worker writes them): entries the recorder set aside, and why it cannot record
DEAD_LETTER_STREAM = "otweb:deadletter"  # malformed entries with their reason and source (capped)
DEAD_LETTER_COUNT = "otweb:deadletter:count"  # how many were ever set aside
DEAD_LETTER_MAXLEN = 1000
RECORD_BLOCKED_KEY = "otweb:record:blocked"  # JSON: why the record cannot be written, and the runs held

# a run folder (Settings.run_dir): what the worker and the trainer write there, and the web reads
CONFIG_NAME = "config.json"              # the config as it ran
LOG_NAME = "trainer.log"                 # the trainer process's stdout and stderr
# set by the worker once its first warm trainer has started: a later one keeps the model libraries'
# import notices (torchvision, bitsandbytes, deprecations) out of the terminal, where each run repeated them
IMPORT_NOTICES_SHOWN_ENV = "OTWEB_IMPORT_NOTICES_SHOWN"


def import_notices_shown() -> bool:
    return bool(os.environ.get(IMPORT_NOTICES_SHOWN_ENV))


def mark_import_notices_shown() -> None:
    """In the worker, after its first warm trainer started: the spawned ones after it inherit it."""
    os.environ[IMPORT_NOTICES_SHOWN_ENV] = "1"


TRAINER_THREADS_ENV = "OTWEB_TRAINER_THREADS"


def trainer_threads(env=None) -> int | None:
    """OTWEB_TRAINER_THREADS: torch's CPU (intra-op) threads in every trainer process, `otweb train`'s
    and a worker's alike (trainer/threads.py applies it). None for "auto" or unset: the cores but one,
    shared among a run's ranks. ValueError, naming the variable, for anything else but a number >= 1."""
    text = env_text(TRAINER_THREADS_ENV, "", env).lower()
    if text in ("", "auto"):
        return None
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{TRAINER_THREADS_ENV}={text!r}: a whole number of threads (1 or more), or auto")
    return int(text)


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


WORKER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_worker_name(name: str) -> str:
    """A worker's name is part of its Redis key pattern and user name: no glob or URL characters."""
    if not isinstance(name, str) or not WORKER_NAME.fullmatch(name):
        raise ValueError(f"{name!r}: a worker name is 1-64 letters, digits, '.', '_' or '-' (not first)")
    return name


def worker_prefix(worker: str) -> str:
    """Every key a worker may read or write starts with this (its ACL key pattern is this + '*')."""
    return f"otweb:w:{worker}:"


def worker_user(worker: str) -> str:
    return WORKER_USER_PREFIX + worker


def worker_stream(worker: str) -> str:
    """The worker's event stream: events, losses and files' chunks, in order; the recorder reads it."""
    return worker_prefix(worker) + "stream"


def heartbeat_key(worker: str) -> str:
    return worker_prefix(worker) + "beat"


def joined_key(worker: str) -> str:
    """What the worker said when it joined (no expiry): the Fleet page shows it once it is gone."""
    return worker_prefix(worker) + "joined"


def drain_key(worker: str) -> str:
    """Set by the web: the worker finishes its run and takes no more."""
    return worker_prefix(worker) + "drain"


def commands_key(worker: str, run_id: int) -> str:
    """The web pushes a run's commands to the worker that holds the run."""
    return worker_prefix(worker) + f"commands:{run_id}"


def assign_key(worker: str) -> str:
    """A worker's inbox: the control plane pushes an assignment, the worker BLMOVEs it out."""
    return worker_prefix(worker) + "inbox"


def carry_key(worker: str, assignment_id: str) -> str:
    """The chunks of a backup the control plane sends with a resume to a worker that lacks it."""
    return worker_prefix(worker) + f"carry:{assignment_id}"


def dataset_key(worker: str, assignment_id: str, part: str) -> str:
    """A dataset sent to a worker (control/dataset_delivery.py, worker/dataset_receive.py): ``manifest``
    (what the run's concepts hold), ``want`` (the sha256s the worker lacks), ``chunks`` (a bounded
    window of them), ``error`` (why the web could not send it)."""
    return worker_prefix(worker) + f"ds:{assignment_id}:{part}"


def dataset_cache_bytes(env=None) -> int:
    """OTWEB_DATASET_CACHE_MB: how much a worker's cache of datasets sent to it may hold (least
    recently used go first; a dataset a run uses is never evicted)."""
    return int(float(env_text("OTWEB_DATASET_CACHE_MB", "20000", env)) * 1e6)


def taken_key(worker: str) -> str:
    """Where a worker keeps the assignment it took until its run has ended (reliable queue)."""
    return worker_prefix(worker) + "taken"


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

    @property
    def worker_ended_dir(self) -> Path:
        """One empty file per assignment whose final state the worker has sent (or spooled), until it
        is out of the worker's taken list: one left there at start has ended, not been interrupted."""
        return self.worker_dir / "ended"

    @property
    def worker_owed_dir(self) -> Path:
        """One JSON file per run folder whose files are not all sent to the web yet (worker/owed.py)."""
        return self.worker_dir / "owed"

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


# notifications (webapp/control/notifier.py, webapp/control/webhook_http.py)
def webhook_hosts(env=None) -> tuple[str, ...]:
    """OTWEB_WEBHOOK_HOSTS: the admin-approved webhook hosts (comma-separated names; `*.example.com`
    for its subdomains). None set: no webhook can be added or sent."""
    return tuple(h.strip().lower().rstrip(".") for h in env_text("OTWEB_WEBHOOK_HOSTS", "", env).split(",") if h.strip())


def webhook_allow_loopback(env=None) -> bool:
    """OTWEB_WEBHOOK_ALLOW_LOOPBACK=1: for tests only (a receiver on 127.0.0.1); off, a webhook to a
    loopback address is refused even when its host is listed."""
    return env_flag("OTWEB_WEBHOOK_ALLOW_LOOPBACK", False, env)


def webhook_backoff_s(env=None) -> float:
    """OTWEB_WEBHOOK_BACKOFF_S: the first retry's wait (doubling each failure, at most 5 minutes)."""
    return float(env_text("OTWEB_WEBHOOK_BACKOFF_S", "2", env))


def public_url(env=None) -> str:
    """OTWEB_PUBLIC_URL: this app's address as people reach it (a webhook's links to a run); none: no links."""
    return env_text("OTWEB_PUBLIC_URL", "", env).rstrip("/")
# the dataset library (web/datasets/): <workspace>/datasets/<name>/, writable; OTWEB_DATA_ROOTS' sub-folders, read-only
DATASETS_FOLDER = "datasets"


def dataset_max_bytes(env=None) -> int:
    """OTWEB_MAX_DATASET_MB: one library dataset may not grow past this (an upload past it: 413)."""
    return int(float(env_text("OTWEB_MAX_DATASET_MB", "20000", env)) * 1e6)


def datasets_total_max_bytes(env=None) -> int:
    """OTWEB_MAX_DATASETS_MB: all library datasets together, with the uploads under way (past it: 507)."""
    return int(float(env_text("OTWEB_MAX_DATASETS_MB", "200000", env)) * 1e6)


def archive_max_ratio(env=None) -> float:
    """OTWEB_ARCHIVE_MAX_RATIO: an archive whose contents are more than this many times its own
    size is refused before anything is extracted (a zip bomb)."""
    return float(env_text("OTWEB_ARCHIVE_MAX_RATIO", "100", env))

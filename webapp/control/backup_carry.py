"""Resume on another worker: when a run's worker is gone but its newest backup was uploaded, the
dispatcher sends that backup with the assignment, as ENTRY_FILE-shaped chunks in a Redis list the
new worker reads into its own run folder before the trainer starts (webapp/worker/backup_receive.py).
Redis carries it because Redis is all a worker shares with the web; uploads came the same way, with
the same size bound (OTWEB_UPLOAD_MAX_MB), so what came up can go back down."""
from __future__ import annotations

import json
from pathlib import Path

import redis

from webapp.eventlog import file_chunks
from webapp.protocol import BACKUP_COMPLETE_FILE as PROGRESS_FILE
from webapp.settings import carry_key

CARRY_TTL_S = 24 * 3600           # a worker that never reads it does not leave it in Redis for ever
PUSH_BATCH = 16                    # chunks per round trip (256 KiB each)


def newest_uploaded_backup(run_folder: Path, kept: list[dict]) -> Path | None:
    """The backup with the highest step whose every file is here (none kept on the worker host)."""
    kept_names = {k.get("name", "") for k in kept}
    found = []
    for path in (run_folder / "backups").iterdir() if (run_folder / "backups").is_dir() else []:
        if path.name.startswith(".") or not (path / PROGRESS_FILE).is_file():
            continue
        if any(name.startswith(f"backups/{path.name}/") for name in kept_names):
            continue
        try:
            step = int(json.loads((path / PROGRESS_FILE).read_text())["global_step"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        found.append((step, path.stat().st_mtime_ns, path))
    return max(found)[-1] if found else None


def push_backup(client: redis.Redis, worker: str, assignment_id: str, run_folder: Path, backup: Path) -> dict:
    """Queue the backup's chunks for the worker (under its own keys: it may read nothing else);
    returns what the assignment says about it."""
    key = carry_key(worker, assignment_id)
    count = 0
    pipe = client.pipeline(transaction=False)
    for path in sorted(p for p in backup.rglob("*") if p.is_file()):
        for chunk in file_chunks(path, path.relative_to(run_folder).as_posix()):
            pipe.rpush(key, json.dumps(chunk))
            count += 1
            if count % PUSH_BATCH == 0:
                pipe.execute()
    pipe.expire(key, CARRY_TTL_S)
    pipe.execute()
    return {"key": key, "name": backup.name, "chunks": count}

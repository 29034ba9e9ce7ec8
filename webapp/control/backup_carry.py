"""Resume on another worker: when a run's worker is gone but its newest backup was uploaded, the
dispatcher sends that backup with the assignment, as ENTRY_FILE-shaped chunks in a Redis list the
new worker reads into its own run folder before the trainer starts (webapp/worker/backup_receive.py).
Redis carries it because Redis is all a worker shares with the web; uploads came the same way, with
the same size bound (OTWEB_UPLOAD_MAX_MB), so what came up can go back down.

Hosts do not trust each other, so only a backup that loads without running code travels (the
built-in trainer's: safetensors and JSON, ``protocol.BACKUP_SAFE_FILES``), and only as the web
recorded it: each file's sha256 from its upload goes with the assignment and the receiving worker
checks it before anything is read. Any other backup resumes only on the host that wrote it."""
from __future__ import annotations

import json
from pathlib import Path

import redis

from webapp.eventlog import file_chunks
from webapp.protocol import BACKUP_COMPLETE_FILE as PROGRESS_FILE
from webapp.protocol import BACKUP_SAFE_FILES
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


def not_carried_because(run_folder: Path, backup: Path, recorded: dict[str, dict]) -> str | None:
    """Why this backup may not go to another host (None: it may). ``recorded``: the run's uploads
    (store.uploads.of_run)."""
    for path in sorted(p for p in backup.rglob("*") if p.is_file()):
        relative = path.relative_to(run_folder).as_posix()
        if path.relative_to(backup).as_posix() not in BACKUP_SAFE_FILES:
            return (f"its backup {backup.name} holds {path.name}, which is loaded only on the host that wrote "
                    "it (a file another host wrote could run code when loaded)")
        if relative not in recorded or recorded[relative]["size"] != path.stat().st_size:
            return f"its backup {backup.name} was not recorded whole at upload ({path.name})"
    return None


def push_backup(client: redis.Redis, worker: str, assignment_id: str, run_folder: Path, backup: Path,
                recorded: dict[str, dict]) -> dict:
    """Queue the backup's chunks for the worker (under its own keys: it may read nothing else);
    returns what the assignment says about it: with each file's sha256 as recorded at upload, which
    the worker checks (not a sum of the bytes here)."""
    key = carry_key(worker, assignment_id)
    files, count = {}, 0
    pipe = client.pipeline(transaction=False)
    # the completion mark last, as a worker uploads it: a folder cut short is never a backup
    for path in sorted((p for p in backup.rglob("*") if p.is_file()), key=lambda p: (p.name == PROGRESS_FILE, p.name)):
        relative = path.relative_to(run_folder).as_posix()
        files[relative] = recorded[relative]["sha256"]
        for chunk in file_chunks(path, relative, digest=files[relative]):
            pipe.rpush(key, json.dumps(chunk))
            count += 1
            if count % PUSH_BATCH == 0:
                pipe.execute()
    pipe.expire(key, CARRY_TTL_S)
    pipe.execute()
    return {"key": key, "name": backup.name, "chunks": count, "files": files}

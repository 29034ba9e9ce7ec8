"""A resume sent to this worker from another's backup: read the chunks the dispatcher queued in
Redis (webapp/control/backup_carry.py) into this host's run folder before the trainer starts and
finds it as its newest backup. Each file is checked against the sha256 the web recorded when it was
uploaded (sent with the assignment, not with the chunks) and placed only whole and matching; a
mismatch fails the run and leaves nothing of the backup here."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import redis

from webapp.eventlog import ChunkWriter, UploadError, confined
from webapp.settings import upload_max_bytes

READ_BATCH = 16


class CarryError(RuntimeError):
    pass


def receive_backup(client: redis.Redis, carried: dict, run_dir: Path) -> list[str]:
    """Writes the backup into run_dir; returns the files placed (relative). Raises CarryError."""
    key, expected, name = carried["key"], int(carried.get("chunks") or 0), carried.get("name")
    files = carried.get("files")
    if not isinstance(files, dict) or not files:
        raise CarryError(f"the backup {name} came without the sha256 the web recorded at upload: not read")
    try:
        placed = _receive(client, key, expected, files, run_dir, name)
        client.delete(key)
    except (UploadError, OSError, ValueError, redis.RedisError) as exc:
        shutil.rmtree(confined(run_dir, f"backups/{name}"), ignore_errors=True)
        raise CarryError(f"the backup {name} could not be received: {exc}") from exc
    except CarryError:
        shutil.rmtree(confined(run_dir, f"backups/{name}"), ignore_errors=True)
        raise
    return placed


def _receive(client, key: str, expected: int, files: dict, run_dir: Path, name) -> list[str]:
    writer, placed, index = ChunkWriter(upload_max_bytes()), [], 0
    while index < expected:
        batch = client.lrange(key, index, index + READ_BATCH - 1)
        if not batch:
            raise CarryError(f"the backup {name} was sent in {expected} chunks but only "
                             f"{index} arrived (it expired in Redis, or Redis lost it): resume again")
        for raw in batch:
            chunk = json.loads(raw)
            if chunk.get("path") not in files:
                raise CarryError(f"the backup {name} holds {chunk.get('path')!r}, which the web did not record")
            try:  # the sum the web recorded at upload, whatever the chunk says
                done = writer.write(run_dir, {**chunk, "mode": "whole", "sha256": files[chunk["path"]]})
            except UploadError as exc:
                raise CarryError(f"the backup {name} is not the one the web recorded at upload: {exc}") from None
            if done:
                placed.append(done["path"])
        index += len(batch)
    if missing := sorted(set(files) - set(placed)):
        raise CarryError(f"the backup {name} arrived without {', '.join(missing)}")
    return placed

"""A resume sent to this worker from another's backup: read the chunks the dispatcher queued in
Redis (webapp/control/backup_carry.py) into this host's run folder, each file checked against its
sha256 and placed whole, before the trainer starts and finds it as its newest backup."""
from __future__ import annotations

import json
from pathlib import Path

import redis

from webapp.eventlog import UploadError, write_chunk

READ_BATCH = 16


class CarryError(RuntimeError):
    pass


def receive_backup(client: redis.Redis, carried: dict, run_dir: Path) -> list[str]:
    """Writes the backup into run_dir; returns the files placed (relative). Raises CarryError."""
    key, expected = carried["key"], int(carried.get("chunks") or 0)
    placed, index = [], 0
    try:
        while index < expected:
            batch = client.lrange(key, index, index + READ_BATCH - 1)
            if not batch:
                raise CarryError(f"the backup {carried.get('name')} was sent in {expected} chunks but only "
                                 f"{index} arrived (it expired in Redis, or Redis lost it): resume again")
            for raw in batch:
                chunk = json.loads(raw)
                write_chunk(run_dir, chunk)
                if chunk.get("last"):
                    placed.append(chunk["path"])
            index += len(batch)
        client.delete(key)
    except (UploadError, OSError, ValueError, redis.RedisError) as exc:
        raise CarryError(f"the backup {carried.get('name')} could not be received: {exc}") from exc
    return placed

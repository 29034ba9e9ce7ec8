"""The manifests of the datasets runs trained on: each kept once, by its content fingerprint
(config/dataset_manifest.py), and per run and concept the fingerprint it trained on. The run and
model pages compare it with the dataset now ("3 files added, 1 removed, 5 captions changed")."""
from __future__ import annotations

import json
import time

SCHEMA = """
CREATE TABLE IF NOT EXISTS dataset_manifests (
    fingerprint TEXT PRIMARY KEY,
    files_json TEXT NOT NULL,
    file_count INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS run_dataset_manifests (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    concept INTEGER NOT NULL,
    path TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    recorded_at REAL NOT NULL,
    PRIMARY KEY (run_id, concept)
);
"""


def init_schema(conn) -> None:
    conn.executescript(SCHEMA)


def record_run(conn, run_id: int, manifests: list[dict]) -> None:
    """The manifests (config/dataset_manifest.concept_manifests) a run trains on, replacing what
    it recorded before (queued, then sent to its worker: the later one is what it trained on)."""
    now = time.time()
    with conn:
        for entry in manifests:
            conn.execute("INSERT OR IGNORE INTO dataset_manifests (fingerprint, files_json, file_count, bytes, "
                         "created_at) VALUES (?, ?, ?, ?, ?)",
                         (entry["fingerprint"], json.dumps(entry["files"], separators=(",", ":")), entry["count"],
                          entry["bytes"], now))
            conn.execute("INSERT OR REPLACE INTO run_dataset_manifests (run_id, concept, path, fingerprint, "
                         "recorded_at) VALUES (?, ?, ?, ?, ?)",
                         (run_id, entry["concept"], entry["path"], entry["fingerprint"], now))


def of_run(conn, run_id: int) -> list[dict]:
    """Per concept: concept, path, fingerprint, files ({rel: [size, sha256]}), count, bytes."""
    rows = conn.execute("SELECT r.concept, r.path, r.fingerprint, m.files_json, m.file_count, m.bytes "
                        "FROM run_dataset_manifests r JOIN dataset_manifests m USING (fingerprint) "
                        "WHERE r.run_id = ? ORDER BY r.concept", (run_id,)).fetchall()
    return [{"concept": row[0], "path": row[1], "fingerprint": row[2], "files": json.loads(row[3]),
             "count": row[4], "bytes": row[5]} for row in rows]

"""Model versions: every model a run saved (its output, saves, periodic saves and backups), with the
lineage a team needs to pick one: run, config, base model, method, format, step, epoch, smoothed
loss, who started it, when; tags (one may be the model's pick), a note, and the file's size and
sha256 once the control plane has measured them.

Versions are registered from the events as they are recorded (``register_from_event``, called by
``store.append_event`` in the event's own transaction), so a run on any worker host registers its
versions the same way. A model is the versions of one config name. ``backfill`` finds the versions
of runs recorded before this table existed, once, by replaying their events.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import PurePosixPath

from ..protocol import PLAYGROUND_MARKER, Event

SCHEMA = """
CREATE TABLE IF NOT EXISTS model_versions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    config_name TEXT NOT NULL,
    base_model TEXT NOT NULL DEFAULT '',
    model_type TEXT NOT NULL DEFAULT '',
    method TEXT NOT NULL DEFAULT '',
    format TEXT NOT NULL DEFAULT '',
    global_step INTEGER,
    epoch INTEGER,
    loss REAL,
    size INTEGER,
    sha256 TEXT,
    file_stamp TEXT,
    note TEXT NOT NULL DEFAULT '',
    picked INTEGER NOT NULL DEFAULT 0,
    created_by TEXT,
    created_at REAL NOT NULL,
    UNIQUE (run_id, kind, path)
);
CREATE INDEX IF NOT EXISTS model_versions_model ON model_versions(config_name, id);
-- the list's other orders (ORDERS): a page reads its rows, never sorts every version
CREATE INDEX IF NOT EXISTS model_versions_loss ON model_versions(loss IS NULL, loss, id DESC);
CREATE INDEX IF NOT EXISTS model_versions_step ON model_versions(COALESCE(global_step, -1), id);
CREATE INDEX IF NOT EXISTS model_versions_base ON model_versions(base_model);
CREATE INDEX IF NOT EXISTS model_versions_method ON model_versions(method, id);
CREATE TABLE IF NOT EXISTS model_tags (
    version_id INTEGER NOT NULL REFERENCES model_versions(id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (version_id, tag)
);
CREATE INDEX IF NOT EXISTS model_tags_tag ON model_tags(tag);
CREATE TABLE IF NOT EXISTS run_datasets (
    run_id INTEGER PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,
    fingerprint_json TEXT NOT NULL,
    taken_at REAL NOT NULL
);
"""
BACKFILL_KEY = "model_versions_backfilled"
KINDS = ("output", "save", "backup")
# what the built-in trainer's log lines said before they carried an ``artifact`` (runs recorded
# before model versions existed): "saved: saves/<name>", "backup written: backups/<name>"
LOGGED = (("saved: ", "save"), ("backup written: ", "backup"))
STEP_IN_NAME = re.compile(r"step(\d+)")


# -- registering, from the events --------------------------------------------------------------

def artifact_of(name: str, data: dict) -> dict | None:
    """The model an event announces: {"kind", "path"[, "global_step", "epoch"]}, or None."""
    if name == Event.FINISHED:
        return {"kind": "output", "path": data["output"]} if data.get("output") else None
    if name != Event.LOG:
        return None
    artifact = data.get("artifact")
    if isinstance(artifact, dict) and artifact.get("kind") in KINDS and artifact.get("path"):
        return artifact
    text = str(data.get("text") or "")
    for prefix, kind in LOGGED:
        if text.startswith(prefix):
            return {"kind": kind, "path": text[len(prefix):].strip()}
    return None


def register_from_event(conn, run_id: int, name: str, data: dict, at: float) -> int | None:
    """Inside the event's transaction: record the version it announces. The run's progress as
    folded so far is the step and smoothed loss at that moment (the bridge sends pending progress
    before any other event)."""
    artifact = artifact_of(name, data)
    if artifact is None:
        return None
    row = conn.execute("SELECT progress_json FROM runs WHERE id = ?", (run_id,)).fetchone()
    progress = json.loads(row["progress_json"] or "null") if row else None
    return register(conn, run_id, artifact, progress or {}, at)


def register(conn, run_id: int, artifact: dict, progress: dict, at: float) -> int | None:
    run = conn.execute("SELECT config_name, config_json, started_by FROM runs WHERE id = ?", (run_id,)).fetchone()
    if run is None:
        return None
    config = json.loads(run["config_json"] or "{}")
    if PLAYGROUND_MARKER in config:
        return None
    path = relative_to_run(str(artifact["path"]), run_id)
    step = artifact.get("global_step", progress.get("global_step"))
    if step is None and (match := STEP_IN_NAME.search(PurePosixPath(path).name)):
        step = int(match.group(1))
    loss = progress.get("smooth_loss") if progress.get("smooth_loss") is not None else progress.get("loss")
    cur = conn.execute(
        "INSERT OR IGNORE INTO model_versions (run_id, kind, path, config_name, base_model, model_type, method,"
        " format, global_step, epoch, loss, created_by, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (run_id, artifact["kind"], path, run["config_name"], str(config.get("base_model_name") or ""),
         str(config.get("model_type") or ""), str(config.get("training_method") or "FINE_TUNE"),
         str(config.get("output_model_format") or ""), step, artifact.get("epoch", progress.get("epoch")),
         loss, run["started_by"], at))
    return cur.lastrowid if cur.rowcount else None


def relative_to_run(path: str, run_id: int) -> str:
    """A path as the run folder's relative one (``runs/<id>/`` is the layout on every host), so a
    version found on a worker's disk names the same file in the control plane's copy."""
    parts = PurePosixPath(path.replace("\\", "/")).parts
    for index in range(len(parts) - 1):
        if parts[index] == "runs" and parts[index + 1] == str(run_id):
            return PurePosixPath(*parts[index + 2:]).as_posix()
    return PurePosixPath(*parts).as_posix()


def backfill(conn) -> int:
    """Once per workspace: the versions of runs recorded before this table, found by replaying
    their events (each with the progress recorded just before it). Returns how many it found."""
    from .db import setting, transaction
    with transaction(conn):
        if setting(conn, BACKFILL_KEY):
            return 0
        found = 0
        rows = conn.execute("SELECT seq, run_id, name, data, time FROM events WHERE name IN (?, ?) ORDER BY seq",
                            (Event.FINISHED.value, Event.LOG.value)).fetchall()
        for row in rows:
            artifact = artifact_of(row["name"], json.loads(row["data"]))
            if artifact is None:
                continue
            last = conn.execute("SELECT data FROM events WHERE run_id = ? AND name = ? AND seq < ?"
                                " ORDER BY seq DESC LIMIT 1", (row["run_id"], Event.PROGRESS.value, row["seq"])).fetchone()
            found += register(conn, row["run_id"], artifact, json.loads(last["data"]) if last else {},
                              row["time"]) is not None
        conn.execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", (BACKFILL_KEY, str(time.time())))
    return found


# -- reading ----------------------------------------------------------------------------------

ORDERS = {"newest": "v.id DESC", "loss": "v.loss IS NULL, v.loss ASC, v.id DESC",
          "step": "COALESCE(v.global_step, -1) DESC, v.id DESC"}
# each order's sort key as a row value, "greater" meaning "later in the list": a keyset page goes
# on after the cursor version's key (looked up by its id)
ORDER_KEYS = {"loss": "({t}.loss IS NULL, COALESCE({t}.loss, 0), -{t}.id)",
              "step": "(-COALESCE({t}.global_step, -1), -{t}.id)"}


def list_versions(conn, filters: dict | None = None, order: str = "newest", limit: int = 500,
                  before: int | None = None) -> list[dict]:
    """``before``: a version id (the last of the previous page, in this order) for the next page."""
    filters = {k: v for k, v in (filters or {}).items() if v not in (None, "")}
    where, params = [], []
    for column, key in (("v.config_name", "model"), ("v.base_model", "base_model"), ("v.method", "method"),
                        ("v.kind", "kind"), ("v.run_id", "run")):
        if key in filters:
            where.append(f"{column} = ?")
            params.append(filters[key])
    if "tag" in filters:
        where.append("EXISTS (SELECT 1 FROM model_tags t WHERE t.version_id = v.id AND t.tag = ?)")
        params.append(filters["tag"])
    if filters.get("picked"):
        where.append("v.picked = 1")
    if before is not None and order == "newest":  # by id alone: a deleted cursor version still pages on
        where.append("v.id < ?")
        params.append(before)
    elif before is not None:
        key = ORDER_KEYS[order]
        where.append(f"{key.format(t='v')} > (SELECT {key.format(t='c')[1:-1]} FROM model_versions c WHERE c.id = ?)")
        params.append(before)
    query = ("SELECT v.*, r.state AS run_state FROM model_versions v JOIN runs r ON r.id = v.run_id"
             + (" WHERE " + " AND ".join(where) if where else "") + f" ORDER BY {ORDERS[order]} LIMIT ?")
    versions = [dict(row) for row in conn.execute(query, (*params, limit))]
    _attach_tags(conn, versions)
    return versions


def get_version(conn, version_id: int) -> dict | None:
    row = conn.execute("SELECT v.*, r.state AS run_state FROM model_versions v JOIN runs r ON r.id = v.run_id"
                       " WHERE v.id = ?", (version_id,)).fetchone()
    if row is None:
        return None
    version = dict(row)
    _attach_tags(conn, [version])
    return version


def _attach_tags(conn, versions: list[dict]) -> None:
    by_id = {v["id"]: v for v in versions}
    for v in versions:
        v["tags"], v["picked"] = [], bool(v["picked"])
    if not by_id:
        return
    marks = ",".join("?" * len(by_id))
    for row in conn.execute(f"SELECT version_id, tag FROM model_tags WHERE version_id IN ({marks}) ORDER BY tag",
                            tuple(by_id)):
        by_id[row["version_id"]]["tags"].append(row["tag"])


def choices(conn) -> dict:
    """The values each filter can take, for the page's selects."""
    from .db import distinct  # each by an index: one seek per value, not a read of every version
    def values(table, column):
        return [value for value in distinct(conn, table, column) if value]
    return {"model": values("model_versions", "config_name"), "base_model": values("model_versions", "base_model"),
            "method": values("model_versions", "method"), "tag": values("model_tags", "tag"), "kind": list(KINDS)}


def samples_near(conn, run_id: int, step: int | None, limit: int = 4) -> list[dict]:
    """The run's scheduled samples taken at the step nearest to ``step`` (one per prompt), else
    its custom ones: what the model looked like when it was saved."""
    from .samples import sample_dict
    for kind in ("default", "custom"):
        nearest = conn.execute("SELECT global_step FROM samples WHERE run_id = ? AND kind = ? AND global_step IS NOT NULL"
                               " ORDER BY abs(global_step - ?), global_step DESC LIMIT 1",
                               (run_id, kind, step or 0)).fetchone()
        if nearest:
            rows = conn.execute("SELECT * FROM samples WHERE run_id = ? AND kind = ? AND global_step = ?"
                                " ORDER BY id LIMIT ?", (run_id, kind, nearest[0], limit))
            return [sample_dict(r) for r in rows]
    return []


def dataset_fingerprint(conn, run_id: int) -> dict | None:
    row = conn.execute("SELECT fingerprint_json FROM run_datasets WHERE run_id = ?", (run_id,)).fetchone()
    return json.loads(row[0]) if row else None


# -- changing ---------------------------------------------------------------------------------

def set_dataset_fingerprint(conn, run_id: int, fingerprint: dict) -> None:
    conn.execute("INSERT OR REPLACE INTO run_datasets (run_id, fingerprint_json, taken_at) VALUES (?, ?, ?)",
                 (run_id, json.dumps(fingerprint, separators=(",", ":")), time.time()))


def set_file_facts(conn, version_id: int, size: int | None, sha256: str | None, stamp: str | None) -> None:
    conn.execute("UPDATE model_versions SET size = ?, sha256 = ?, file_stamp = ? WHERE id = ?",
                 (size, sha256, stamp, version_id))


def add_tag(conn, version_id: int, tag: str, pick: bool = False) -> None:
    """Tag a version; ``pick`` makes it its model's one current pick (the others lose it)."""
    from .db import transaction
    with transaction(conn):
        conn.execute("INSERT OR IGNORE INTO model_tags (version_id, tag) VALUES (?, ?)", (version_id, tag))
        if pick:
            conn.execute("UPDATE model_versions SET picked = (id = :id) WHERE config_name ="
                         " (SELECT config_name FROM model_versions WHERE id = :id)", {"id": version_id})


def remove_tag(conn, version_id: int, tag: str) -> None:
    conn.execute("DELETE FROM model_tags WHERE version_id = ? AND tag = ?", (version_id, tag))


def unpick(conn, version_id: int) -> None:
    conn.execute("UPDATE model_versions SET picked = 0 WHERE id = ?", (version_id,))


def set_note(conn, version_id: int, note: str) -> None:
    conn.execute("UPDATE model_versions SET note = ? WHERE id = ?", (note, version_id))


def delete_version(conn, version_id: int) -> bool:
    return conn.execute("DELETE FROM model_versions WHERE id = ?", (version_id,)).rowcount == 1

"""The run's columns that lists filter on, written once when the run is created (its kind — a
training or a playground session —, model type and method), the indexes that serve the lists'
orders, and ``filter_clause``: the one place a list's filters become SQL.

Why: a run's ~15 KB config sits in the row before any column added later, so reading ``state`` or
a ``json_extract`` of the config walks the row's overflow pages; with 20,000 runs a list read
hundreds of MB. The indexes below hold every column a filter reads (a covering index), so a page
reads the index, then only the rows it shows.
"""
from __future__ import annotations

from ..protocol import PLAYGROUND_MARKER

TRAINING, PLAYGROUND = "training", "playground"
KINDS = (TRAINING, PLAYGROUND)
COLUMNS = (("kind", f"TEXT NOT NULL DEFAULT '{TRAINING}'"), ("model_type", "TEXT"), ("method", "TEXT"))
STARTER = "COALESCE(started_by, 'local')"  # NULL: a run started where no one signs in
COVER = f"state, model_type, method, {STARTER}, config_name"  # what a filter may read after the order
INDEXES = f"""
CREATE INDEX IF NOT EXISTS runs_kind_list ON runs(kind, id, {COVER});
CREATE INDEX IF NOT EXISTS runs_kind_state ON runs(kind, state, id, {COVER});
CREATE INDEX IF NOT EXISTS runs_kind_model_type ON runs(kind, model_type, id, {COVER});
CREATE INDEX IF NOT EXISTS runs_kind_method ON runs(kind, method, id, {COVER});
CREATE INDEX IF NOT EXISTS runs_kind_starter ON runs(kind, {STARTER}, id, {COVER});
CREATE INDEX IF NOT EXISTS runs_kind_finished ON runs(kind, COALESCE(finished_at, created_at), state);
CREATE INDEX IF NOT EXISTS runs_kind_ended ON runs(kind, finished_at, state, {STARTER});
"""
# name: SQL with one ? — each reads a column the indexes above hold
FILTERS = {
    "state": "state = ?",
    "config": "config_name LIKE '%' || ? || '%'",
    "model_type": "model_type = ?",
    "method": "method = ?",
    "started_by": f"{STARTER} = ?",
    "kind": "kind = ?",
}


def values_for(config: dict) -> dict:
    """The columns' values for a run of this config, as ``create_run`` writes them."""
    def text(value):
        return None if value is None else str(value)
    return {"kind": PLAYGROUND if PLAYGROUND_MARKER in config else TRAINING,
            "model_type": text(config.get("model_type")), "method": text(config.get("training_method"))}


def filter_clause(filters: dict, kind: str | None = TRAINING) -> tuple[str, list]:
    """``(sql, params)``: a WHERE condition (never empty) for runs matching ``filters`` (keys of
    FILTERS; empty values are ignored) and of ``kind`` (None: either). Unknown keys are ignored."""
    chosen = {k: v for k, v in filters.items() if k in FILTERS and v not in (None, "")}
    if kind is not None:
        chosen.setdefault("kind", kind)
    where = [FILTERS[k] for k in chosen] or ["1 = 1"]
    return " AND ".join(where), list(chosen.values())


def init(conn, columns: set[str]) -> None:
    """Add the columns to a workspace made before them and fill them from each run's config (once:
    a run's config never changes), then the indexes."""
    missing = [(name, kind) for name, kind in COLUMNS if name not in columns]
    for name, kind in missing:
        conn.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
    if missing:
        conn.execute(
            "UPDATE runs SET kind = CASE WHEN json_extract(config_json, ?) IS NULL THEN ? ELSE ? END,"
            " model_type = CAST(json_extract(config_json, '$.model_type') AS TEXT),"
            " method = CAST(json_extract(config_json, '$.training_method') AS TEXT)",
            (f'$."{PLAYGROUND_MARKER}"', TRAINING, PLAYGROUND))
    conn.executescript(INDEXES)

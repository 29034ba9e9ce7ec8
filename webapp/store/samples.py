"""SQL for the samples a gallery shows: per run (filtered by prompt and kind), the newest overall,
the prompt-by-step grid, and the LoRA files a playground can open.

Rows are written by ``store.append_event`` (one per sample event); this module only reads them.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..protocol import PLAYGROUND_MARKER




def list_for_run(conn, run_id: int, prompt: str | None = None, kind: str | None = None,
                 limit: int = 500, before: int | None = None) -> list[dict]:
    """Newest first; ``prompt`` matches a part of the prompt (case-insensitive); ``before``: a
    sample id, for the next (older) page."""
    query, params = "SELECT * FROM samples WHERE run_id = ?", [run_id]
    if before is not None:
        query += " AND id < ?"
        params.append(before)
    if prompt:
        query += " AND instr(lower(prompt), lower(?)) > 0"
        params.append(prompt)
    if kind:
        query += " AND kind = ?"
        params.append(kind)
    rows = conn.execute(query + " ORDER BY id DESC LIMIT ?", (*params, limit))
    return [sample_dict(r) for r in rows]


GALLERY_SOURCES = ("training", "playground")  # a run's kind (store.run_columns)


def across_runs(conn, prompt: str | None = None, source: str | None = None, run_id: int | None = None,
                before: int | None = None, limit: int = 60) -> list[dict]:
    """The gallery of every run's samples, newest first, each with its run's config name and
    whether a playground made it; ``before``: a sample id, for the next (older) page."""
    query = ("SELECT samples.*, runs.config_name AS config_name,"
             " runs.kind = 'playground' AS playground"
             " FROM samples JOIN runs ON runs.id = samples.run_id WHERE 1 = 1")
    params: list = []
    if prompt:
        query += " AND instr(lower(samples.prompt), lower(?)) > 0"
        params.append(prompt)
    if source in GALLERY_SOURCES:
        query += " AND runs.kind = ?"
        params.append(source)
    if run_id is not None:
        query += " AND samples.run_id = ?"
        params.append(run_id)
    if before is not None:
        query += " AND samples.id < ?"
        params.append(before)
    rows = conn.execute(query + " ORDER BY samples.id DESC LIMIT ?", (*params, limit))
    return [sample_dict(r) for r in rows]


def newest_per_run(conn, run_ids: list[int]) -> dict[int, int]:
    """run id -> the id of its newest sample, for the runs that have one."""
    if not run_ids:
        return {}
    marks = ",".join("?" * len(run_ids))
    rows = conn.execute(f"SELECT run_id, MAX(id) FROM samples WHERE run_id IN ({marks}) GROUP BY run_id", run_ids)
    return {run_id: sample_id for run_id, sample_id in rows}


def latest(conn, count: int) -> list[dict]:
    return [sample_dict(r) for r in conn.execute("SELECT * FROM samples ORDER BY id DESC LIMIT ?", (count,))]


def prompts(conn, run_id: int) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT prompt FROM samples WHERE run_id = ? GROUP BY prompt ORDER BY MIN(id)", (run_id,))]


def grid(conn, run_id: int, prompt: str | None = None) -> dict:
    """{"steps": [ascending global steps], "rows": [{"prompt", "cells": {step: newest sample}}]}:
    one row per prompt (in the order they first appeared), one column per step sampled."""
    samples = list_for_run(conn, run_id, prompt=prompt, limit=5000)
    steps = sorted({s["global_step"] or 0 for s in samples})
    rows: dict[str, dict] = {}
    for sample in reversed(samples):  # oldest first: a later image at the same step wins
        row = rows.setdefault(sample["prompt"], {"prompt": sample["prompt"], "cells": {}})
        row["cells"][sample["global_step"] or 0] = sample
    return {"steps": steps, "rows": list(rows.values())}


def same_prompt(conn, sample: dict) -> list[dict]:
    """The run's other samples of this prompt, by step: what a sample can be compared with."""
    rows = conn.execute("SELECT * FROM samples WHERE run_id = ? AND prompt = ? ORDER BY global_step, id",
                        (sample["run_id"], sample["prompt"]))
    return [sample_dict(r) for r in rows]


def lora_sources(conn, workspace: Path, run_dir) -> list[dict]:
    """What a playground can open, from our records only: each finished LoRA run's output and the
    .safetensors under its run folder (intermediate saves), but not a backup's trained tensors
    (trained.safetensors: no LoRA file layout). Each has a stable key ("<run id>:<n>"), so a
    request names a key, never a path."""
    sources = []
    # LoRA trainings only, by the columns written at creation; a config is read only for a run
    # with files to open (a history of thousands of runs is mostly files long deleted)
    rows = conn.execute("SELECT id, config_name, output_path FROM runs WHERE kind = 'training' AND method = 'LORA'"
                        " AND state IN ('completed', 'stopped', 'failed', 'interrupted') ORDER BY id DESC LIMIT 200")
    for row in rows:
        files = []
        if row["output_path"] and Path(row["output_path"]).is_file():
            files.append(Path(row["output_path"]))
        folder = Path(run_dir(row["id"]))
        if folder.is_dir():
            files += sorted(p for p in folder.rglob("*.safetensors")
                            if p not in files and p.name != "trained.safetensors")
        config = json.loads(conn.execute("SELECT config_json FROM runs WHERE id = ?", (row["id"],)).fetchone()[0]) \
            if files else {}
        if not config.get("base_model_name"):
            continue
        for index, path in enumerate(files):
            label = path.relative_to(folder).as_posix() if folder in path.parents else path.name
            sources.append({"key": f"{row['id']}:{index}", "run_id": row["id"], "label": label,
                            "config_name": row["config_name"], "path": str(path),
                            "base_model_name": config["base_model_name"], "config": config})
    return sources


def is_playground(run: dict | None) -> bool:
    return bool(run) and PLAYGROUND_MARKER in json.loads(run.get("config_json") or "{}")


def get_sample(conn, sample_id: int) -> dict | None:
    row = conn.execute("SELECT * FROM samples WHERE id = ?", (sample_id,)).fetchone()
    return sample_dict(row) if row else None


def list_samples(conn, run_id: int | None = None, limit: int = 50) -> list[dict]:
    if run_id is None:
        rows = conn.execute("SELECT * FROM samples ORDER BY id DESC LIMIT ?", (limit,))
    else:
        rows = conn.execute("SELECT * FROM samples WHERE run_id = ? ORDER BY id DESC LIMIT ?", (run_id, limit))
    return [sample_dict(r) for r in rows]


def sample_dict(row) -> dict:
    sample = dict(row)
    sample["settings"] = json.loads(sample.pop("settings_json"))
    return sample

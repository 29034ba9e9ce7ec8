"""Bulk deletion (admin): ended runs picked by filters (older than, state, config), what deleting
them frees (runs, files, bytes) shown first, then deleted with their folders. The delete names the
selection it was shown (a digest of the run ids): if the runs the filters pick have changed since
the preview, nothing is deleted and the answer says to look again. Queued and running runs are never
picked (store.run_selection), and a run that starts meanwhile is left alone (store.delete_run_rows)."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from flask import current_app

from webapp import store
from webapp.store.run_selection import ENDED_STATES, FILTERS
from webapp.web.errors import ApiError
from webapp.web.extensions import get_db

MAX_RUNS = 1000  # per deletion: a larger selection is deleted in rounds
MAX_DAYS = 100_000


def parse_filters(values) -> dict:
    """The filters from a form or a JSON body; a 400 naming each bad field; at least one filter."""
    filters, problems = {}, []
    days = values.get("older_than_days")
    if days not in (None, ""):
        try:
            filters["older_than_days"] = float(days)
            if not 0 <= filters["older_than_days"] <= MAX_DAYS:
                raise ValueError
        except (TypeError, ValueError):
            problems.append({"field": "older_than_days", "message": f"a number of days from 0 to {MAX_DAYS}"})
    state = values.get("state")
    if state not in (None, ""):
        if state not in ENDED_STATES:
            problems.append({"field": "state", "message": f"one of {', '.join(ENDED_STATES)}"})
        filters["state"] = state
    config = values.get("config")
    if config not in (None, ""):
        if not isinstance(config, str) or len(config) > 200:
            problems.append({"field": "config", "message": "part of a config's name, at most 200 characters"})
        filters["config"] = config
    if problems:
        raise ApiError(400, "invalid field", problems)
    if not filters:
        raise ApiError(400, "no filter", f"pick runs by at least one of: {', '.join(FILTERS)}")
    return filters


def preview(filters: dict) -> dict:
    """The runs the filters pick (up to MAX_RUNS), each with its folder's disk use, and the totals."""
    conn = get_db()
    runs = store.run_selection.ended_runs(conn, filters, MAX_RUNS + 1)
    more, runs = len(runs) > MAX_RUNS, runs[:MAX_RUNS]
    measured = store.disk_use.of_runs(conn, [r["id"] for r in runs])
    for run in runs:
        # measured by the control loop once a run has settled; the rest (just ended) here
        use = measured.get(run["id"]) or store.disk_use.record(conn, run["id"], _run_dir(run["id"]))
        run.update(bytes=use["bytes"], files=use["files"])
    return {"filters": filters, "runs": runs, "more": more, "selection": selection_digest(runs),
            "total": {"runs": len(runs), "files": sum(r["files"] for r in runs), "bytes": sum(r["bytes"] for r in runs)}}


def delete(filters: dict, selection: str) -> dict:
    """Delete what ``preview(filters)`` showed as ``selection``; what it freed."""
    shown = preview(filters)
    if not selection or selection != shown["selection"]:
        raise ApiError(409, "selection changed", "the runs these filters pick are not the ones shown: preview again")
    conn = get_db()
    deleted, files, freed = [], 0, 0
    for run in shown["runs"]:
        if store.delete_run_rows(conn, run["id"]):  # refuses a run that is active again (resumed)
            shutil.rmtree(_run_dir(run["id"]), ignore_errors=True)
            deleted.append(run["id"])
            files, freed = files + run["files"], freed + run["bytes"]
    return {"deleted": deleted, "runs": len(deleted), "files": files, "bytes": freed, "more": shown["more"]}


def selection_digest(runs: list[dict]) -> str:
    return hashlib.sha256(",".join(str(r["id"]) for r in runs).encode()).hexdigest()[:16]


def _run_dir(run_id: int) -> Path:
    return current_app.config["SETTINGS"].run_dir(run_id)

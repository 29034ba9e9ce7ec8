"""Know without looking: a training you started that has ended since you last looked shows a banner
on every page (completed, failed, stopped, interrupted), until you dismiss it. What was dismissed is
remembered per browser in a cookie: nothing to store, and a phone and a laptop each get told once."""
from __future__ import annotations

import sqlite3
import time

from flask import request

from webapp import store
from webapp.web.auth.identity import current_principal
from webapp.web.extensions import get_db
from webapp.web.runs.actions import started_by

SEEN_COOKIE = "otweb_seen_run"
SEEN_MAX_AGE_S = 30 * 86400
RECENT_S = 24 * 3600  # an older ending is history, not news
MESSAGES = {"completed": "finished", "failed": "failed", "stopped": "was stopped",
            "interrupted": "was interrupted", "canceled": "was canceled"}


def seen_run() -> int:
    raw = request.cookies.get(SEEN_COOKIE, "")
    return int(raw) if raw.isdigit() else 0


def ended_run_banner() -> dict | None:
    """For base.html: the run to tell the current person about, or None (also on the run's own page)."""
    if request.headers.get("HX-Request") or current_principal() is None:  # a fragment; nobody signed in
        return None
    try:
        run = store.runs.newest_ended_by(get_db(), started_by(), seen_run(), time.time() - RECENT_S)
    except sqlite3.Error:  # an error page about the database must still render
        return None
    if run is None or request.view_args == {"run_id": run["id"]} and request.endpoint == "runs.page":
        return None
    return {"id": run["id"], "name": run["config_name"], "state": run["state"],
            "text": MESSAGES.get(run["state"], run["state"])}

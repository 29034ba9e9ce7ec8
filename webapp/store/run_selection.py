"""Which ended runs a bulk deletion takes: its filters (older than, state, config name) as SQL over
plain columns of ``runs``. A queued or running run is never selected, whatever the filters say.
(Kept apart so that the history's own filter clause can take its place once it covers these.)"""
from __future__ import annotations

import time

ENDED_STATES = ("completed", "stopped", "failed", "canceled", "interrupted")
FILTERS = ("older_than_days", "state", "config")


def where(filters: dict, now: float | None = None) -> tuple[str, list]:
    """``filters``: older_than_days (a number: ended, or made, that long ago), state (an ended
    state), config (part of the config's name). The SQL condition and its parameters."""
    clauses, params = [f"state IN ({', '.join('?' * len(ENDED_STATES))})"], list(ENDED_STATES)
    if filters.get("older_than_days") is not None:
        clauses.append("COALESCE(finished_at, created_at) < ?")
        params.append((now or time.time()) - float(filters["older_than_days"]) * 86400)
    if filters.get("state"):
        clauses.append("state = ?")
        params.append(filters["state"])
    if filters.get("config"):
        clauses.append("config_name LIKE '%' || ? || '%' ESCAPE '\\'")
        params.append(filters["config"].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_"))
    return " AND ".join(clauses), params


def ended_runs(conn, filters: dict, limit: int, now: float | None = None) -> list[dict]:
    """The selected runs, oldest first: id, config_name, state, created_at, finished_at."""
    sql, params = where(filters, now)
    rows = conn.execute(f"SELECT id, config_name, state, created_at, finished_at FROM runs WHERE {sql}"
                        " ORDER BY id LIMIT ?", (*params, limit))
    return [dict(row) for row in rows]

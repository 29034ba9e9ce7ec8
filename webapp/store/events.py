"""Events: the numbered log that SSE replays. Appending one folds it into its run's row (state,
progress, status) and records a sample, in one transaction."""
from __future__ import annotations

import contextlib
import json
import time

from ..protocol import SAMPLE_EVENTS, Event, RunState, dumps
from . import loss_summary, model_versions
from .db import transaction


def append_event(conn, run_id: int, event: dict) -> dict:
    """Record one event and fold it into the run's row, in one transaction. Returns it numbered."""
    name, data, at = event["event"], event.get("data") or {}, event.get("time") or time.time()
    with transaction(conn):  # or the caller's: the recorder commits a batch of entries at once
        seq = conn.execute("INSERT INTO events (run_id, name, data, time) VALUES (?, ?, ?, ?)",
                           (run_id, name, dumps(data), at)).lastrowid
        _fold_into_run(conn, run_id, name, data, at)
        if name in SAMPLE_EVENTS:
            _record_sample(conn, run_id, name, data, at)
        model_versions.register_from_event(conn, run_id, name, data, at)
    return {"seq": seq, "run_id": run_id, "event": name, "data": data, "time": at}


class BatchAppender:
    """Appends many events inside the caller's transaction (the recorder's batch of stream
    entries): the same rows as ``append_event`` one by one, for less. A progress event (nearly all
    of a run's events) is one INSERT, its data encoded once (``append`` returns the text for the
    wire too); the run's ``progress_json`` is written once per run and batch, and always before an
    event of another kind, since folding one may read it (a model version takes the progress so
    far). Call ``flush`` before the transaction commits or before reading the run's row."""

    def __init__(self, conn):
        self.conn, self._progress = conn, {}

    def append(self, run_id: int, event: dict) -> tuple[dict, str | None]:
        """The event numbered, and its data's JSON text where it was encoded here."""
        name = event["event"]
        if name != Event.PROGRESS:
            self.flush()
            return append_event(self.conn, run_id, event), None
        data, at = event.get("data") or {}, event.get("time") or time.time()
        text = dumps(data)
        seq = self.conn.execute("INSERT INTO events (run_id, name, data, time) VALUES (?, ?, ?, ?)",
                                (run_id, name, text, at)).lastrowid
        self._progress[run_id] = text
        return {"seq": seq, "run_id": run_id, "event": name, "data": data, "time": at}, text

    def flush(self) -> None:
        if self._progress:
            self.conn.executemany(_FOLD_PROGRESS, [(text, run_id, text) for run_id, text in self._progress.items()])
            self._progress.clear()

    @contextlib.contextmanager
    def savepoint(self):
        """One entry's writes, undone together (its rows and its pending progress) if it raises."""
        pending = dict(self._progress)
        self.conn.execute("SAVEPOINT entry")
        try:
            yield self
        except BaseException:
            self.conn.execute("ROLLBACK TO entry")
            self.conn.execute("RELEASE entry")
            self._progress = pending
            raise
        self.conn.execute("RELEASE entry")


# a run's progress never moves backwards: a step older than the one recorded (arriving late), or any
# progress after the run ended, is kept in the timeline but not folded into the run's row
_FOLD_PROGRESS = ("UPDATE runs SET progress_json = ?1 WHERE id = ?2"
                  " AND state NOT IN ('completed', 'stopped', 'failed', 'canceled', 'interrupted')"
                  " AND COALESCE(json_extract(progress_json, '$.global_step'), -1)"
                  " <= COALESCE(json_extract(?3, '$.global_step'), 9e18)")


def _fold_into_run(conn, run_id: int, name: str, data: dict, at: float) -> None:
    if name == Event.PROGRESS:
        text = dumps(data)
        conn.execute(_FOLD_PROGRESS, (text, run_id, text))
    elif name == Event.STATUS:
        conn.execute("UPDATE runs SET status_text = ? WHERE id = ?", (data.get("text", ""), run_id))
    elif name == Event.LOG and data.get("skipped_files"):  # dataset files the trainer could not use
        conn.execute("UPDATE runs SET skipped_files = ? WHERE id = ?", (int(data["skipped_files"]), run_id))
    elif name == Event.FINISHED:
        conn.execute("UPDATE runs SET output_path = ? WHERE id = ?", (data.get("output"), run_id))
    elif name == Event.RUN:
        state = RunState(data["state"])
        if state is RunState.QUEUED:
            # the row is queued by whoever queues it (create_run, requeue_for_resume): a "queued" event
            # arriving after the dispatcher handed the run out must not put it back (it ran twice)
            return
        finished_at = None if state.is_active else at
        if data.get("pid"):
            conn.execute("UPDATE runs SET pid = ? WHERE id = ?", (data["pid"], run_id))
        # the reason's code (protocol-level, e.g. "worker_lapsed") travels with its words: readers ask
        # for the code, never for a phrase in the words. A final state brings its own reason or none:
        # a run completed after a lapse kept "stopped sending heartbeats" forever (issue 33)
        reason = data.get("reason")
        conn.execute("UPDATE runs SET state = ?, finished_at = ?,"
                     " reason = CASE WHEN ? OR ? IS NOT NULL THEN ? ELSE reason END,"
                     " reason_code = CASE WHEN ? OR ? IS NOT NULL THEN ? ELSE reason_code END,"
                     " status_text = CASE WHEN ? THEN status_text ELSE ? END WHERE id = ?",
                     (state.value, finished_at, not state.is_active, reason, reason,
                      not state.is_active, reason, data.get("reason_code"), state.is_active, state.value, run_id))


def _record_sample(conn, run_id: int, name: str, data: dict, at: float) -> None:
    settings = {k: v for k, v in data.items() if k not in ("path", "prompt", "global_step", "epoch")}
    sample_id = conn.execute(
        "INSERT INTO samples (run_id, kind, path, prompt, settings_json, global_step, epoch, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (run_id, "custom" if name == Event.SAMPLE_CUSTOM else "default", data["path"],
         data.get("prompt", ""), dumps(settings), data.get("global_step"), data.get("epoch"), at)).lastrowid
    data["sample_id"] = sample_id  # travels with the event so a page can link the image


def kept_files(conn, run_id: int) -> list[dict]:
    """Files a worker kept on its host (too large to upload), as its log events said: name, host,
    path, size; one it said was removed since is left out."""
    found: dict[str, dict] = {}
    rows = conn.execute("SELECT json_extract(data, '$.kept') FROM events WHERE run_id = ? AND name = 'log'"
                        " AND json_extract(data, '$.kept') IS NOT NULL ORDER BY seq", (run_id,))
    for (raw,) in rows:
        kept = json.loads(raw)
        if kept.get("removed"):
            found.pop(kept.get("name"), None)
        elif kept.get("name"):
            found[kept["name"]] = kept
    return list(found.values())


def events_since(conn, after_seq: int, run_id: int | None = None, limit: int = 1000) -> list[dict]:
    query = "SELECT * FROM events WHERE seq > ?" + (" AND run_id = ?" if run_id is not None else "")
    params = (after_seq, run_id) if run_id is not None else (after_seq,)
    rows = conn.execute(query + " ORDER BY seq LIMIT ?", (*params, limit))
    return [{"seq": r["seq"], "run_id": r["run_id"], "event": r["name"], "data": json.loads(r["data"]),
             "time": r["time"]} for r in rows]


def events_before(conn, run_id: int, before_seq: int, limit: int = 1000) -> list[dict]:
    """The run's ``limit`` events just before ``before_seq``, oldest first: a keyset page going back."""
    rows = conn.execute("SELECT * FROM events WHERE run_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
                        (run_id, before_seq, limit)).fetchall()
    return [{"seq": r["seq"], "run_id": r["run_id"], "event": r["name"], "data": json.loads(r["data"]),
             "time": r["time"]} for r in reversed(rows)]


def recent_events(conn, run_id: int, name: str, limit: int = 30) -> list[dict]:
    rows = conn.execute("SELECT * FROM events WHERE run_id = ? AND name = ? ORDER BY seq DESC LIMIT ?",
                        (run_id, name, limit)).fetchall()
    return [{"seq": r["seq"], "run_id": r["run_id"], "event": r["name"], "data": json.loads(r["data"]),
             "time": r["time"]} for r in reversed(rows)]


def first_events(conn, run_id: int, name: str, limit: int) -> list[dict]:
    """A run's oldest events of one name, oldest first."""
    rows = conn.execute("SELECT * FROM events WHERE run_id = ? AND name = ? ORDER BY seq LIMIT ?",
                        (run_id, name, limit)).fetchall()
    return [{"seq": r["seq"], "run_id": r["run_id"], "event": r["name"], "data": json.loads(r["data"]),
             "time": r["time"]} for r in rows]


def chart_version(conn, run_id: int) -> tuple:
    """What a run's loss chart is drawn from, in a few index lookups: the newest event (samples,
    saves and backups come with one), the number of loss rows (from the coarsest summary
    buckets: one or two rows) and whether the summary waits to be rebuilt."""
    return conn.execute(
        "SELECT (SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id = :run),"
        " (SELECT COALESCE(SUM(n), 0) FROM metric_buckets WHERE run_id = :run AND width = :width),"
        " (SELECT COUNT(*) FROM metric_buckets_stale WHERE run_id = :run)",
        {"run": run_id, "width": loss_summary.BUCKET_WIDTHS[-1]}).fetchone()[:]


def last_seq(conn) -> int:
    return conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]

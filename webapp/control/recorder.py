"""The control plane's recorder: reads the workers' event stream with a consumer group and records
each entry once, by (run, assignment, n): events and losses into SQLite, files into the run's folder
here. One batch is one transaction; it commits, then XACKs and deletes the entries (the stream is
trimmed only past what is recorded), then publishes the events for the SSE fan-out.

A web process that dies between commit and XACK leaves its entries pending: whoever runs the
recorder next claims them (XAUTOCLAIM) and finds them recorded already.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import redis

from webapp import store
from webapp.eventlog import (ENTRY_EVENT, ENTRY_FILE, ENTRY_METRICS, ENTRY_REMOVE, NUDGE_FIELD, UploadError,
                             confined, decode_entry, encode_event, join_events, write_chunk)
from webapp.control import heartbeats
from webapp.protocol import Event, Reason, RunState, make_event
from webapp.settings import EVENT_STREAM, EVENTS_CHANNEL, RECORDER_GROUP

log = logging.getLogger(__name__)
BATCH = 1000
CLAIM_IDLE_MS = 3000     # a pending entry this old belongs to a recorder that is gone
CLAIM_EVERY_S = 1.0      # how often to look for such entries


class Recorder:
    def __init__(self, conn, redis_client: redis.Redis, run_dir, consumer: str, stream: str = EVENT_STREAM):
        """run_dir(run_id): this host's copy of a run's folder."""
        self.conn, self.redis, self.run_dir = conn, redis_client, run_dir
        self.consumer, self.stream = consumer, stream
        self.recorded = 0
        self.duplicates = 0
        self.lag_s = 0.0
        self._group_ready = False
        self.claim_every_s, self._claim_at = CLAIM_EVERY_S, 0.0
        self._assignments: dict[str, dict] = {}
        self._attempts: dict[str, int] = {}  # assignment -> which attempt of its run it is
        self._lapsed: dict[int, bool] = {}  # per batch: run -> interrupted by a lapsed heartbeat
        self.nudged = False  # the last batch held a nudge: the queue changed (run_actions.nudge_dispatcher)

    def stats(self) -> dict:
        return {"recorded": self.recorded, "duplicates": self.duplicates, "lag_s": round(self.lag_s, 4)}

    def step(self, block_ms: int = 200) -> int:
        """Record one batch: entries left pending by a recorder that is gone first, then new ones."""
        self._ensure_group()
        entries = self._claim() if time.monotonic() >= self._claim_at else []
        if not entries:
            try:
                answer = self.redis.xreadgroup(RECORDER_GROUP, self.consumer, {self.stream: ">"}, count=BATCH,
                                               block=block_ms)
            except redis.ResponseError as exc:
                if "NOGROUP" in str(exc):  # Redis came back without the stream: make the group again
                    self._group_ready = False
                    return 0
                raise
            entries = answer[0][1] if answer else []
        self.nudged = False
        if entries:
            self.record(entries)
        return len(entries)

    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            self.redis.xgroup_create(self.stream, RECORDER_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def _claim(self) -> list:
        """Entries another recorder read and never acked. They become claimable only CLAIM_IDLE_MS
        after that read, so asking once per CLAIM_EVERY_S is enough (not once per batch: under a
        steady trickle of events that was a second Redis round trip per batch); while a claim
        fills whole batches, the next step asks again."""
        try:
            answer = self.redis.xautoclaim(self.stream, RECORDER_GROUP, self.consumer, CLAIM_IDLE_MS,
                                           start_id="0-0", count=BATCH)
        except redis.ResponseError:  # the group went away (Redis restarted empty): make it again
            self._group_ready = False
            return []
        entries = [entry for entry in answer[1] if entry and entry[1]]
        self._claim_at = time.monotonic() + (0 if len(entries) >= BATCH else self.claim_every_s)
        return entries

    def record(self, entries: list) -> None:
        ids = [entry_id for entry_id, _ in entries]
        records = [entry for entry in entries if NUDGE_FIELD not in entry[1]]
        self.nudged = len(records) < len(entries)
        with store.transaction(self.conn):
            published = self._record_batch(records)
        # after the commit: an entry acked is recorded; one published is in SQLite for a replay
        pipe = self.redis.pipeline(transaction=False)
        pipe.xack(self.stream, RECORDER_GROUP, *ids)
        pipe.xdel(self.stream, *ids)
        for message in join_events(published):
            pipe.publish(EVENTS_CHANNEL, message)
        pipe.execute()
        self.lag_s = max(0.0, time.time() - int(ids[-1].split("-")[0]) / 1000)

    def _record_batch(self, entries: list) -> list[str]:
        """Inside the batch's transaction: the wire texts of the events to publish."""
        decoded = []
        for entry_id, fields in entries:
            try:
                entry = decode_entry(fields)
            except ValueError as exc:
                log.warning("recorder dropped %s: %s", entry_id, exc)
                continue
            if self._known(entry):
                decoded.append(entry)
        firsts = store.fleet.first_times(self.conn, [(e["run"], e["src"], e["n"]) for e in decoded])
        self.duplicates += firsts.count(False)
        appender, self._lapsed = store.events.BatchAppender(self.conn), {}
        published: list[str] = []
        for entry, first in zip(decoded, firsts):
            if first:
                published += self._apply(entry, appender)
                self.recorded += 1
        appender.flush()
        return published

    def _known(self, entry: dict) -> bool:
        """Only an assignment the control plane made may write into its run."""
        source = entry["src"].split(":")[0]
        found = self._assignments.get(source)
        if found is None or found["run_id"] != entry["run"]:
            found = store.fleet.assignment(self.conn, source)
            if found is None or found["run_id"] != entry["run"]:
                log.warning("recorder dropped an entry of unknown assignment %r (run %s)", source, entry["run"])
                return False
            self._assignments[source] = found
        return True

    def _apply(self, entry: dict, appender) -> list[str]:
        kind, run_id = entry["k"], entry["run"]
        if kind == ENTRY_EVENT:
            return self._event(run_id, entry, appender)
        if kind == ENTRY_METRICS:
            store.append_metrics(self.conn, run_id, [tuple(row) for row in entry.get("rows") or []],
                                 attempt=self._attempt(entry["src"]))
            return []
        try:
            if kind == ENTRY_FILE:
                write_chunk(Path(self.run_dir(run_id)), entry)
            elif kind == ENTRY_REMOVE:
                remove_file(Path(self.run_dir(run_id)), entry["path"])
        except (UploadError, OSError) as exc:
            log.warning("run %s: %s", run_id, exc)
            return [_wire(appender.append(run_id, make_event(Event.LOG, level="warning", text=str(exc))))]
        return []

    def _event(self, run_id: int, entry: dict, appender) -> list[str]:
        name, data = entry.get("event"), entry.get("data") or {}
        if name == Event.RUN:
            self._lapsed.pop(run_id, None)  # its state changes: ask the record again
            current = self._current(run_id, entry["src"])
            if current is None:
                return []  # a state from an assignment the run has left (it was resumed elsewhere since)
            if current:
                return [_wire(appender.append(run_id, _late_report(current, data, entry)))]
        if name == Event.FINISHED and data.get("output") and not os.path.isabs(data["output"]):
            data = {**data, "output": str(confined(Path(self.run_dir(run_id)), data["output"]))}
        event = {"event": name, "data": data, "time": entry.get("time") or time.time()}
        corrected = []
        if name != Event.RUN and self._is_lapsed(run_id, appender):
            corrected = self._back_in_contact(run_id, name, data, appender)
        return corrected + [_wire(appender.append(run_id, event))]

    def _is_lapsed(self, run_id: int, appender) -> bool:
        """Whether the record has the run interrupted by a lapsed heartbeat: asked once per run and
        batch (nothing else writes the run while the batch's transaction holds the database)."""
        if run_id not in self._lapsed:
            appender.flush()
            row = self.conn.execute("SELECT state, reason_code FROM runs WHERE id = ?", (run_id,)).fetchone()
            self._lapsed[run_id] = bool(row) and row[0] == "interrupted" and row[1] == Reason.WORKER_LAPSED.value
        return self._lapsed[run_id]

    def _back_in_contact(self, run_id: int, name: str, data: dict, appender) -> list[str]:
        """A run marked interrupted because its worker's heartbeat lapsed, whose worker turns out to
        be training still (its events arrive, from the same assignment): the record is corrected,
        and the timeline says what happened. The evidence came late; the record must not lie."""
        self._lapsed[run_id] = False
        run = store.get_run(self.conn, run_id)
        lost_at = (run.get("progress") or {}).get("global_step")
        # the first entry to arrive is the oldest it spooled while away (240 where contact came back
        # at ~889: issue 33): the step it is at now is the one in its heartbeat
        steps = [step for step in (lost_at, data.get("global_step") if name == Event.PROGRESS else None,
                                   self._beat_step(run)) if step is not None]
        back_at = max(steps) if steps else None
        text = (f"lost contact with worker {run.get('worker')} at step {lost_at}; back at step {back_at}: "
                "the run went on meanwhile")
        back = make_event(Event.RUN, state="running", reason=None)
        note = make_event(Event.STATUS, text=text, back_in_contact=True)
        # stamped when contact came back (now), not with the spooled entry's time, which came before
        # the interruption it corrects
        return [_wire(appender.append(run_id, back)), _wire(appender.append(run_id, note))]

    def _beat_step(self, run: dict) -> int | None:
        """The step the run's worker says its trainer is at (its heartbeat), if it says so for this run."""
        try:
            _, beat = heartbeats.run_beat(self.redis, run.get("worker"))
        except redis.RedisError:
            return None
        return beat.get("step") if beat and beat.get("run_id") == run["id"] else None

    def _attempt(self, source: str) -> int:
        assignment = source.split(":")[0]
        if assignment not in self._attempts:
            self._attempts[assignment] = store.fleet.attempt_number(self.conn, assignment)
        return self._attempts[assignment]

    def _current(self, run_id: int, source: str) -> str | None:
        """For a state reported by ``source``: None when the run has left that assignment (resumed
        elsewhere since); the final state it has ended in, when it has ended by its worker's own
        report (a later report, e.g. a worker that restarts and finds the assignment still in its
        taken list, goes to the timeline, not into the state); "" when the report is the state."""
        row = self.conn.execute("SELECT assignment, state, reason_code FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None or row[0] != source.split(":")[0]:
            return None
        if RunState(row[1]).is_active or row[2] == Reason.WORKER_LAPSED.value:
            return ""  # running, or marked interrupted only because its heartbeat lapsed
        return row[1]


def _late_report(ended: str, data: dict, entry: dict) -> dict:
    """A state reported for a run that had already ended: said in its timeline, the state stands."""
    reason = f" ({data['reason']})" if data.get("reason") else ""
    note = make_event(Event.STATUS, late_report=True, reported=data.get("state"), text=(
        f"its worker reported it {data.get('state')}{reason} after it had ended {ended}: it stays {ended}"))
    note["time"] = entry.get("time") or note["time"]
    return note


def _wire(appended: tuple[dict, str | None]) -> str:
    numbered, data_json = appended
    return encode_event(numbered, data_json)


# -- files: each write confined to the run's folder --------------------------------------------

def remove_file(folder: Path, relative: str) -> None:
    target = confined(folder, relative)
    target.unlink(missing_ok=True)
    parent = target.parent
    while parent != folder.resolve() and parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent

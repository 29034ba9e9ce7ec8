"""The control plane's recorder: reads every worker's event stream (its own key, which only it and
the web may write) with a consumer group and records each entry once, by (run, assignment, n), and
only from the stream of the worker the run's assignment went to: events and losses into SQLite,
files into the run's folder here. One batch (of one stream) is one transaction; it commits, then
XACKs and deletes the entries (the stream is trimmed only past what is recorded), then publishes
the events for the SSE fan-out.

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
from webapp.control import heartbeats, record_state
from webapp.control.received_files import ReceivedFiles
from webapp.eventlog import (ENTRY_EVENT, ENTRY_FILE, ENTRY_METRICS, ENTRY_REMOVE, UploadError, confined,
                             decode_entry, encode_event, join_events)
from webapp.protocol import SAMPLE_EVENTS, Event, Reason, RunState, make_event
from webapp.settings import EVENTS_CHANNEL, NUDGE_STREAM, RECORDER_GROUP, WORKERS_KEY, worker_stream

log = logging.getLogger(__name__)
BATCH = 1000
# entries recorded per transaction: the recorder runs on the web's event loop (a greenlet under
# gevent) and yields between slices, so that no batch holds the pages and streams of the process for
# long, even when a hostile worker floods the stream (1,000 junk entries a second in
# benchmarks/bench_noisy_neighbour.py blocked the loop > 50 ms 305 times in 30 s with whole batches)
SLICE = 200
CLAIM_IDLE_MS = 3000     # a pending entry this old belongs to a recorder that is gone
CLAIM_EVERY_S = 1.0      # how often to look for such entries
STREAMS_EVERY_S = 1.0    # how often to look for workers that joined the fleet (their streams)


class Recorder:
    def __init__(self, conn, redis_client: redis.Redis, run_dir, consumer: str):
        """run_dir(run_id): this host's copy of a run's folder."""
        self.conn, self.redis, self.run_dir = conn, redis_client, run_dir
        self.consumer = consumer
        self.streams: dict[str, str | None] = {}  # stream -> the worker that writes it (None: the nudges)
        self._streams_at = 0.0
        self.recorded = 0
        self.duplicates = 0
        self.lag_s = 0.0
        self.claim_every_s, self._claim_at = CLAIM_EVERY_S, 0.0
        self._assignments: dict[str, dict] = {}
        self._attempts: dict[str, int] = {}  # assignment -> which attempt of its run it is
        self._lapsed: dict[int, bool] = {}  # per batch: run -> interrupted by a lapsed heartbeat
        self.set_aside = 0   # malformed entries (or ones that raised), acked and moved to the dead letters
        self.held: tuple | None = None  # (entries, stream) the record could not take (a full disk): tried first
        self.blocked: str | None = None  # why it could not
        self._aside: list = []
        self._counts = [0, 0]
        self.folder = _record_folder(conn)
        self.nudged = False  # the last batch held a nudge: the queue changed (run_actions.nudge_dispatcher)
        self.files = ReceivedFiles(conn, run_dir)

    def stats(self) -> dict:
        return {"recorded": self.recorded, "duplicates": self.duplicates, "lag_s": round(self.lag_s, 4),
                "set_aside": self.set_aside, "blocked": self.blocked,
                "held": len(self.held[0]) if self.held else 0}

    def step(self, block_ms: int = 200) -> int:
        """Record one batch: entries left pending by a recorder that is gone first, then new ones."""
        if self.held:
            return self._retry_held(block_ms)
        self._find_streams()
        answer = self._claim() if time.monotonic() >= self._claim_at else []
        if not answer:
            try:
                answer = self.redis.xreadgroup(RECORDER_GROUP, self.consumer, dict.fromkeys(self.streams, ">"),
                                               count=BATCH, block=block_ms) or []
            except redis.ResponseError as exc:
                if "NOGROUP" in str(exc):  # Redis came back without a stream: make the groups again
                    self._streams_at, self.streams = 0.0, {}
                    return 0
                raise
        self.nudged = False
        count = 0
        for stream, entries in answer:
            for start in range(0, len(entries), SLICE):
                if self.held:  # an earlier batch is held: these stay pending, claimed again later
                    return count
                self.record(entries[start:start + SLICE], stream)
                count += len(entries[start:start + SLICE])
                time.sleep(0)  # under gevent: pages and live streams go on between slices
        return count

    def _find_streams(self) -> None:
        """The nudge stream and one stream per worker in the fleet, each with the group."""
        if time.monotonic() < self._streams_at and self.streams:
            return
        wanted = {worker_stream(name): name for name in sorted(self.redis.smembers(WORKERS_KEY))}
        wanted[NUDGE_STREAM] = None
        for stream in wanted.keys() - self.streams.keys():
            try:
                self.redis.xgroup_create(stream, RECORDER_GROUP, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        self.streams, self._streams_at = wanted, time.monotonic() + STREAMS_EVERY_S

    def _claim(self) -> list:
        """Entries another recorder read and never acked. They become claimable only CLAIM_IDLE_MS
        after that read, so asking once per CLAIM_EVERY_S is enough (not once per batch: under a
        steady trickle of events that was a second Redis round trip per batch); while a claim
        fills whole batches, the next step asks again."""
        pipe = self.redis.pipeline(transaction=False)
        for stream in self.streams:
            pipe.xautoclaim(stream, RECORDER_GROUP, self.consumer, CLAIM_IDLE_MS, start_id="0-0", count=BATCH)
        try:
            answers = pipe.execute()
        except redis.ResponseError:  # a group went away (Redis restarted empty): make them again
            self._streams_at, self.streams = 0.0, {}
            return []
        claimed = [(stream, [entry for entry in answer[1] if entry and entry[1]])
                   for stream, answer in zip(self.streams, answers)]
        full = any(len(entries) >= BATCH for _, entries in claimed)
        self._claim_at = time.monotonic() + (0 if full else self.claim_every_s)
        return [(stream, entries) for stream, entries in claimed if entries]

    def record(self, entries: list, stream: str, careful: bool = False) -> bool:
        """One batch of one stream: the nudge stream's entries only wake the dispatcher; a worker's
        are recorded where they belong to a run assigned to that worker. While the record cannot be
        written (a full disk) the batch is held whole: nothing is acked that is not committed, and
        nothing newer is read before it (``step`` tries the held batch again first). Returns whether
        it was recorded. ``careful``: every entry in its own savepoint (a batch whose plain entries
        raised is recorded again so)."""
        ids = [entry_id for entry_id, _ in entries]
        worker = self.streams.get(stream)
        self.nudged = self.nudged or worker is None
        checked, malformed = self._decode(entries) if worker is not None else ([], [])
        self._aside, self._counts = [], [0, 0]
        try:
            with store.transaction(self.conn):
                published = self._record_batch(checked, worker, careful) if worker is not None else []
        except Exception as exc:  # noqa: BLE001 - each entry's own errors are set aside inside
            if not careful and not record_state.cannot_write(exc):
                return self.record(entries, stream, careful=True)
            self._hold(entries, stream, checked, exc)
            return False
        pipe = self.redis.pipeline(transaction=False)
        for entry_id, fields, reason in malformed + self._aside:
            record_state.set_aside(pipe, stream, entry_id, fields, reason)
        # after the commit: an entry acked is recorded; one published is in SQLite for a replay
        pipe.xack(stream, RECORDER_GROUP, *ids)
        pipe.xdel(stream, *ids)
        for message in join_events(published):
            pipe.publish(EVENTS_CHANNEL, message)
        if self.held is not None:
            record_state.clear_blocked(self.redis)
        pipe.execute()
        self.set_aside += len(malformed) + len(self._aside)
        self.recorded, self.duplicates = self.recorded + self._counts[0], self.duplicates + self._counts[1]
        self.held = self.blocked = None
        self.lag_s = max(0.0, time.time() - int(ids[-1].split("-")[0]) / 1000)
        return True

    def _decode(self, records: list) -> tuple[list, list]:
        """(entry id, fields, entry) of each well-formed entry; (entry id, fields, reason) of each
        malformed one, which is acked and set aside with the batch."""
        checked, malformed = [], []
        for entry_id, fields in records:
            try:
                checked.append((entry_id, fields, decode_entry(fields)))
            except ValueError as exc:
                log.warning("recorder set aside %s: %s", entry_id, exc)
                malformed.append((entry_id, fields, str(exc)))
        return checked, malformed

    def _hold(self, entries: list, stream: str, checked: list, exc: Exception) -> None:
        self.held = (entries, stream)
        self.blocked = record_state.blocked_reason(exc, self.folder) if record_state.cannot_write(exc) else (
            f"the recorder cannot record a batch: {type(exc).__name__}: {exc}")
        runs = sorted({entry["run"] for _, _, entry in checked})
        log.warning("recorder holds %d entries (runs %s): %s", len(entries), runs, self.blocked)
        try:
            record_state.mark_blocked(self.redis, self.blocked, runs)
        except redis.RedisError:
            pass

    def _retry_held(self, block_ms: int) -> int:
        """The held batch again, before anything newer; while it still fails, wait a turn."""
        entries, stream = self.held
        if not self.record(entries, stream):
            time.sleep(block_ms / 1000)
            return 0
        return len(entries)

    def _record_batch(self, checked: list, worker: str, careful: bool) -> list[str]:
        """Inside the batch's transaction: the wire texts of the events to publish. Each entry is
        applied in its own savepoint: one that raises is undone and set aside, not the batch;
        an error that says the disk cannot take the write fails the batch (it is held). Loss rows
        and progress, nearly every entry and only INSERTs of checked values, skip the savepoint
        (it cost a fifth of the recorder's CPU) unless ``careful``."""
        decoded = [(entry_id, fields, entry) for entry_id, fields, entry in checked if self._known(entry, worker)]
        firsts = store.assignments.first_times(self.conn, [(e["run"], e["src"], e["n"]) for _, _, e in decoded])
        self._counts = [0, firsts.count(False)]  # recorded, duplicates: counted once the batch commits
        appender, self._lapsed = store.events.BatchAppender(self.conn), {}
        published: list[str] = []
        for (entry_id, fields, entry), first in zip(decoded, firsts):
            if not first:
                continue
            if not careful and _plain(entry):
                published += self._apply(entry, appender)
                self._counts[0] += 1
                continue
            try:
                with appender.savepoint():
                    wires = self._apply(entry, appender)
            except Exception as exc:  # noqa: BLE001 - one bad entry must not stop the record
                if record_state.cannot_write(exc):
                    raise
                log.warning("recorder set aside %s (run %s): %s", entry_id, entry["run"], exc)
                self._lapsed.pop(entry["run"], None)
                self._aside.append((entry_id, fields, f"{type(exc).__name__}: {exc}"))
                continue
            published += wires
            self._counts[0] += 1
        appender.flush()
        return published

    def _known(self, entry: dict, worker: str) -> bool:
        """Only an assignment the control plane made may write into its run, and only from the
        stream of the worker it went to (the assignment's id travels in the entry: anyone may
        copy it; only that worker's Redis user can write that stream)."""
        source = entry["src"].split(":")[0]
        found = self._assignments.get(source)
        if found is None or found["run_id"] != entry["run"]:
            found = store.assignments.assignment(self.conn, source)
            if found is None or found["run_id"] != entry["run"]:
                log.warning("recorder dropped an entry of unknown assignment %r (run %s)", source, entry["run"])
                return False
            self._assignments[source] = found
        if found["worker"] != worker:
            log.warning("recorder dropped an entry for run %s from worker %s: the run's assignment %r is "
                        "%s's", entry["run"], worker, source, found["worker"])
            return False
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
                self.files.chunk(run_id, entry)
            elif kind == ENTRY_REMOVE:
                self.files.remove(run_id, entry["path"])
        except (UploadError, OSError) as exc:
            if record_state.cannot_write(exc):
                raise  # the chunk is not on disk: the batch waits for room (never counted as recorded)
            return self._refused(run_id, str(exc), appender)
        return []

    def _refused(self, run_id: int, text: str, appender) -> list[str]:
        text = self.files.refusal_text(run_id, text)
        return [] if text is None else [_wire(appender.append(run_id, make_event(Event.LOG, level="warning", text=text)))]

    def _event(self, run_id: int, entry: dict, appender) -> list[str]:
        name, data = entry.get("event"), entry.get("data") or {}
        if name == Event.RUN:
            self._lapsed.pop(run_id, None)  # its state changes: ask the record again
            current = self._current(run_id, entry["src"])
            if current is None:
                return []  # a state from an assignment the run has left (it was resumed elsewhere since)
            if current:
                return [_wire(appender.append(run_id, _late_report(current, data, entry)))]
        if name in SAMPLE_EVENTS and not self.files.arrived(run_id, data.get("path")):
            return []  # its image was refused on arrival (the run's log says why): no sample without it
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
            row = store.run_standing(self.conn, run_id)
            self._lapsed[run_id] = bool(row) and row[1] == "interrupted" and row[2] == Reason.WORKER_LAPSED.value
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
            self._attempts[assignment] = store.assignments.attempt_number(self.conn, assignment)
        return self._attempts[assignment]

    def _current(self, run_id: int, source: str) -> str | None:
        """For a state reported by ``source``: None when the run has left that assignment (resumed
        elsewhere since); the final state it has ended in, when it has ended by its worker's own
        report (a later report, e.g. a worker that restarts and finds the assignment still in its
        taken list, goes to the timeline, not into the state); "" when the report is the state."""
        row = store.run_standing(self.conn, run_id)
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


def _plain(entry: dict) -> bool:
    return entry["k"] == ENTRY_METRICS or entry["k"] == ENTRY_EVENT and entry["event"] == Event.PROGRESS


def _record_folder(conn) -> Path:
    """The folder of the record's database file (where a full disk is reported)."""
    for row in conn.execute("PRAGMA database_list"):
        if row[1] == "main" and row[2]:
            return Path(row[2]).parent
    return Path.cwd()


def _wire(appended: tuple[dict, str | None]) -> str:
    numbered, data_json = appended
    return encode_event(numbered, data_json)


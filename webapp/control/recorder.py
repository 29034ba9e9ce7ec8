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
from webapp.control.sample_check import check_sample
from webapp.eventlog import (ENTRY_EVENT, ENTRY_FILE, ENTRY_METRICS, ENTRY_REMOVE, NUDGE_FIELD, ChunkWriter,
                             UploadError, confined, decode_entry, encode_event, join_events)
from webapp.protocol import SAMPLE_EVENTS, Event, Reason, make_event
from webapp.settings import EVENT_STREAM, EVENTS_CHANNEL, RECORDER_GROUP, upload_max_bytes

log = logging.getLogger(__name__)
BATCH = 1000
# entries recorded per transaction: the recorder runs on the web's event loop (a greenlet under
# gevent) and yields between slices, so that no batch holds the pages and streams of the process for
# long, even when a hostile worker floods the stream (1,000 junk entries a second in
# benchmarks/bench_noisy_neighbour.py blocked the loop > 50 ms 305 times in 30 s with whole batches)
SLICE = 200
REFUSALS_PER_S = 10  # a run's log shows at most this many refused entries a second (then a count)
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
        self._lapsed: dict[int, bool] = {}  # per batch: run -> interrupted by a lapsed heartbeat
        self.nudged = False  # the last batch held a nudge: the queue changed (run_actions.nudge_dispatcher)
        self.chunks = ChunkWriter(upload_max_bytes())
        self._refusals: dict[int, tuple[float, int, int]] = {}  # run -> (since, shown, held back)

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
        nudged = False
        for start in range(0, len(entries), SLICE):
            self.record(entries[start:start + SLICE])
            nudged = nudged or self.nudged
            time.sleep(0)  # under gevent: pages and live streams go on between slices
        self.nudged = nudged
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
            store.append_metrics(self.conn, run_id, [tuple(row) for row in entry.get("rows") or []])
            return []
        try:
            if kind == ENTRY_FILE:
                self._file_chunk(run_id, entry)
            elif kind == ENTRY_REMOVE:
                remove_file(Path(self.run_dir(run_id)), entry["path"])
                store.uploads.forget(self.conn, run_id, entry["path"])
        except (UploadError, OSError) as exc:
            return self._refused(run_id, str(exc), appender)
        return []

    def _refused(self, run_id: int, text: str, appender) -> list[str]:
        """A refused file chunk goes to the run's log, at most REFUSALS_PER_S a second per run: a
        worker flooding the stream with bad chunks must not flood its run's viewers too; the next
        one shown says how many were not."""
        now = time.monotonic()
        since, shown, held = self._refusals.get(run_id, (now, 0, 0))
        if now - since >= 1.0:
            since, shown = now, 0
        if shown >= REFUSALS_PER_S:
            self._refusals[run_id] = (since, shown, held + 1)
            return []
        self._refusals[run_id] = (since, shown + 1, 0)
        log.warning("run %s: %s", run_id, text)
        if held:
            text += f" ({held} more refused before this one, not shown)"
        return [_wire(appender.append(run_id, make_event(Event.LOG, level="warning", text=text)))]

    def _file_chunk(self, run_id: int, entry: dict) -> None:
        """A whole file's size and sha256 are recorded as its last chunk lands (hashed as the chunks
        came); a sample image is checked first (its header only) and refused if larger than the run allows."""
        folder = Path(self.run_dir(run_id))
        done = self.chunks.write(folder, entry)
        if done is None:
            return
        if done["path"].startswith("samples/"):
            run = store.get_run(self.conn, run_id)
            check_sample(confined(folder, done["path"]), done["path"], store.run_config(run) if run else {})
        store.uploads.record(self.conn, run_id, done["path"], done["size"], done["sha256"])

    def _arrived(self, run_id: int, relative) -> bool:
        try:
            return isinstance(relative, str) and confined(Path(self.run_dir(run_id)), relative).is_file()
        except UploadError:
            return False

    def _event(self, run_id: int, entry: dict, appender) -> list[str]:
        name, data = entry.get("event"), entry.get("data") or {}
        if name == Event.RUN:
            self._lapsed.pop(run_id, None)  # its state changes: ask the record again
            if self._stale(run_id, entry["src"]):
                return []  # a state from an assignment the run has left (it was resumed elsewhere since)
        if name in SAMPLE_EVENTS and not self._arrived(run_id, data.get("path")):
            return []  # its image was refused on arrival (the run's log says why): no sample without it
        if name == Event.FINISHED and data.get("output") and not os.path.isabs(data["output"]):
            data = {**data, "output": str(confined(Path(self.run_dir(run_id)), data["output"]))}
        event = {"event": name, "data": data, "time": entry.get("time") or time.time()}
        corrected = []
        if name != Event.RUN and self._is_lapsed(run_id, appender):
            corrected = self._back_in_contact(run_id, name, data, event["time"], appender)
        return corrected + [_wire(appender.append(run_id, event))]

    def _is_lapsed(self, run_id: int, appender) -> bool:
        """Whether the record has the run interrupted by a lapsed heartbeat: asked once per run and
        batch (nothing else writes the run while the batch's transaction holds the database)."""
        if run_id not in self._lapsed:
            appender.flush()
            row = self.conn.execute("SELECT state, reason_code FROM runs WHERE id = ?", (run_id,)).fetchone()
            self._lapsed[run_id] = bool(row) and row[0] == "interrupted" and row[1] == Reason.WORKER_LAPSED.value
        return self._lapsed[run_id]

    def _back_in_contact(self, run_id: int, name: str, data: dict, at: float, appender) -> list[str]:
        """A run marked interrupted because its worker's heartbeat lapsed, whose worker turns out to
        be training still (its events arrive, from the same assignment): the record is corrected,
        and the timeline says what happened. The evidence came late; the record must not lie."""
        self._lapsed[run_id] = False
        run = store.get_run(self.conn, run_id)
        lost_at = (run.get("progress") or {}).get("global_step")
        back_at = data.get("global_step", lost_at) if name == Event.PROGRESS else lost_at
        text = (f"lost contact with worker {run.get('worker')} at step {lost_at}; back at step {back_at}: "
                "the run went on meanwhile")
        back = make_event(Event.RUN, state="running", reason=None)
        note = make_event(Event.STATUS, text=text, back_in_contact=True)
        back["time"] = note["time"] = at
        return [_wire(appender.append(run_id, back)), _wire(appender.append(run_id, note))]

    def _stale(self, run_id: int, source: str) -> bool:
        row = self.conn.execute("SELECT assignment FROM runs WHERE id = ?", (run_id,)).fetchone()
        return row is None or row[0] != source.split(":")[0]


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

"""The worker's side of the event log: number each entry, XADD it to the event stream, and spool
to the worker's own folder while Redis is away (replayed in order when it returns).

The worker never opens the record: what it sends is recorded by the control plane's recorder,
once per (run, assignment, n). While the spool holds anything, new entries go behind it, so the
order the trainer said things in is the order they are recorded in.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections import deque
from pathlib import Path

import redis

from webapp.eventlog import (ENTRY_EVENT, ENTRY_FILE, ENTRY_METRICS, ENTRY_REMOVE, encode_entry,
                             file_chunks)
from webapp.protocol import SAMPLE_EVENTS, Event

log = logging.getLogger(__name__)
DRAIN_BATCH = 200
FILE_BACKLOG = 64          # chunks of files (16 MiB) waiting in the stream before an upload waits


class Spool:
    """Entries Redis did not take, in a JSON-lines file (and in memory); ``done`` counts the
    lines already sent, so a worker that dies mid-outage replays the rest when it starts again."""

    def __init__(self, path: Path):
        self.path, self.done_path = path, path.with_name(path.name + ".done")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.entries: deque = deque()
        self._load()

    def _load(self) -> None:
        try:
            lines = self.path.read_text().splitlines()
            done = int(self.done_path.read_text() or 0) if self.done_path.exists() else 0
        except (OSError, ValueError):
            return
        for line in lines[done:]:
            try:
                self.entries.append(json.loads(line))
            except ValueError:  # the last line of a worker killed mid-write
                break
        self.sent_lines = done

    def __len__(self) -> int:
        return len(self.entries)

    def append(self, fields: dict) -> None:
        if not self.entries:
            self._reset()
        with open(self.path, "a") as fh:
            fh.write(json.dumps(fields) + "\n")
        self.entries.append(fields)

    def sent(self, count: int) -> None:
        for _ in range(count):
            self.entries.popleft()
        if not self.entries:
            self._reset()
            return
        self.sent_lines = getattr(self, "sent_lines", 0) + count
        tmp = self.done_path.with_name(self.done_path.name + ".tmp")
        tmp.write_text(str(self.sent_lines))
        os.replace(tmp, self.done_path)

    def _reset(self) -> None:
        self.sent_lines = 0
        for path in (self.path, self.done_path):
            try:
                path.unlink()
            except FileNotFoundError:
                pass


class StreamSink:
    """What the supervisor's bridge emits to (``emit``, ``metrics``), plus the run folder's files."""

    def __init__(self, redis_client: redis.Redis, spool_dir: Path, stream: str):
        """stream: the worker's own event stream (settings.worker_stream)."""
        self.redis, self.stream = redis_client, stream
        self.spool = Spool(Path(spool_dir) / "entries.jsonl")
        self.lock = threading.RLock()
        self.counters: dict[str, int] = {}
        self.runs: dict[int, tuple[str, Path]] = {}   # run id -> (assignment, local run folder)
        self.connected = True
        self.sent = 0
        self._held: list[dict] | None = None  # entries waiting for the end of a together() block

    def bind(self, run_id: int, source: str, run_dir: Path) -> None:
        with self.lock:
            self.runs[run_id] = (source, Path(run_dir))

    # -- what the bridge calls --------------------------------------------------------------

    def emit(self, run_id: int, event: dict) -> dict:
        name, data = event["event"], dict(event.get("data") or {})
        run_dir = self.runs[run_id][1]
        with self.lock:
            if name in SAMPLE_EVENTS and data.get("path"):
                # the image first: the recorder has it on disk before the event shows it
                self.send_file(run_id, run_dir / data["path"], data["path"])
            if name == Event.FINISHED and data.get("output"):
                data["output"] = self._relative(run_dir, data["output"])
            self._add(run_id, ENTRY_EVENT, event=name, data=data, time=event.get("time"))
        return event

    def metrics(self, run_id: int, rows: list[tuple]) -> None:
        if rows:
            self._add(run_id, ENTRY_METRICS, rows=[list(row) for row in rows])

    # -- files ----------------------------------------------------------------------------------

    def send_file(self, run_id: int, path: Path, relative: str, mode: str = "whole", offset: int = 0,
                  wait_for_room=None) -> int:
        """Chunks of ``path`` into the stream; returns the offset reached. ``wait_for_room``: called
        between chunks (an upload of a large output must not fill Redis' memory)."""
        try:
            for body in file_chunks(path, relative, mode, offset):
                if wait_for_room is not None:
                    wait_for_room()
                self._add(run_id, ENTRY_FILE, **body)
                offset = body["offset"] + body["length"]
        except FileNotFoundError:
            log.warning("run %s: %s vanished before it was sent", run_id, relative)
        return offset

    def remove(self, run_id: int, relative: str) -> None:
        self._add(run_id, ENTRY_REMOVE, path=relative)

    def file_backlog(self) -> int:
        """How many entries wait in the stream (the recorder deletes what it has recorded)."""
        return self.redis.xlen(self.stream)

    # -- sending ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def together(self):
        """Entries added inside go out in one round trip at the end, in order (the bridge's loss
        rows and the progress they belong to): the recorder then reads them in one batch, where
        two XADDs cost it two turns."""
        with self.lock:
            outer, self._held = self._held, self._held if self._held is not None else []
            try:
                yield self
            finally:
                held, self._held = self._held, outer
                if outer is None and held:
                    self._send(held)

    def _add(self, run_id: int, kind: str, **body) -> None:
        with self.lock:
            source = self.runs[run_id][0]
            number = self.counters[source] = self.counters.get(source, 0) + 1
            fields = encode_entry(kind, run_id, source, number, **body)
            if self._held is not None:
                self._held.append(fields)
                return
            self._send([fields])

    def _send(self, entries: list[dict]) -> None:
        if not len(self.spool) and self._xadd(entries):
            return
        for fields in entries:  # a pipeline that failed half-way is spooled whole: recorded once anyway
            self.spool.append(fields)

    def _xadd(self, entries: list[dict]) -> bool:
        try:
            if len(entries) == 1:
                self.redis.xadd(self.stream, entries[0])
            else:
                pipe = self.redis.pipeline(transaction=False)
                for fields in entries:
                    pipe.xadd(self.stream, fields)
                pipe.execute()
        except (redis.RedisError, OSError) as exc:
            if self.connected:
                log.warning("Redis is away (%s): spooling events to %s", exc, self.spool.path)
            self.connected = False
            return False
        self.connected = True
        self.sent += len(entries)
        return True

    def drain(self) -> int:
        """Send what the spool holds, in order, a batch at a time; returns what is left. A batch
        that fails half-way is sent again whole: the recorder records each entry once."""
        while True:
            with self.lock:
                batch = list(self.spool.entries)[:DRAIN_BATCH]
                if not batch:
                    return 0
                try:
                    pipe = self.redis.pipeline(transaction=False)
                    for fields in batch:
                        pipe.xadd(self.stream, fields)
                    pipe.execute()
                except (redis.RedisError, OSError):
                    self.connected = False
                    return len(self.spool)
                self.spool.sent(len(batch))
                self.sent += len(batch)
                if not len(self.spool):
                    self.connected = True
                    log.info("Redis is back: the spool is drained")

    @staticmethod
    def _relative(run_dir: Path, output: str) -> str:
        """The output's place in the run folder: the control plane has its own copy of the folder."""
        path = Path(output)
        try:
            return path.resolve().relative_to(run_dir.resolve()).as_posix()
        except ValueError:
            return str(output)  # outside the run folder: stays on this host, named as it is

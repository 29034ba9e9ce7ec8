"""The one seam every event passes: append numbered to the record, then publish on Redis.

Two sides, one wire format:

- the control plane appends directly (``EventSink``: the events the web makes itself, such as
  queued, canceled, "stop requested"), and its recorder (``webapp.control.recorder``) appends what
  workers send;
- a worker never touches the record: its ``StreamSink`` (``webapp.worker.stream_sink``) numbers
  each entry (event, losses, a file's chunk) by (assignment, n) and XADDs it to its own stream,
  spooling to its own folder while Redis is away. The recorder inserts each entry once by
  (run, assignment, n), commits, XACKs, then publishes for the SSE fan-out.

``encode_event`` / ``decode_event`` are the numbered events' format on the pub/sub channel each web
process's SSE broker reads; ``encode_entry`` / ``decode_entry`` are the stream entries'. Neither the
trainer nor the web's templates know which side of it they are on.
"""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import os
from pathlib import Path

import redis

from webapp.entries import MalformedEntry, check as check_entry
from webapp.protocol import dumps
from webapp.settings import EVENTS_CHANNEL

log = logging.getLogger(__name__)

# what a stream entry carries ("k")
ENTRY_EVENT = "event"        # event: {event, data, time}
ENTRY_METRICS = "metrics"    # rows: [[step, loss, lr, time], ...]
ENTRY_FILE = "file"          # one chunk of a file in the run folder (see file_chunks)
ENTRY_REMOVE = "remove"      # a file or folder the worker removed (a pruned rolling backup)
ENTRY_KINDS = (ENTRY_EVENT, ENTRY_METRICS, ENTRY_FILE, ENTRY_REMOVE)
CHUNK_BYTES = 256 * 1024     # a file travels in entries of this much (base64 in JSON)
FIELD = "e"                  # the one field of a stream entry
NUDGE_FIELD = "nudge"        # an entry with this field instead: "look at the queue now" (no run, not recorded)
EVENTS_PER_MESSAGE = 250     # events joined into one pub/sub message (join_events)
_EVENT_KEYS = {"seq", "run_id", "event", "data", "time"}


def encode_event(event: dict, data_json: str | None = None) -> str:
    """The wire text of a numbered event. ``data_json``: its data as encoded already for SQLite
    (the recorder's batches), spliced in rather than encoded a second time."""
    if not isinstance(event.get("seq"), int):
        raise ValueError(f"a published event needs an int seq: {event!r}")
    if any(c in str(event["event"]) for c in "\r\n\0"):  # it becomes an SSE ``event:`` line
        raise ValueError(f"an event name must not contain CR, LF or NUL: {event['event']!r}")
    at = event.get("time")
    if data_json is None or set(event) != _EVENT_KEYS or not isinstance(at, float) or not math.isfinite(at):
        return dumps(event)
    return (f'{{"seq":{event["seq"]},"run_id":{int(event["run_id"])},"event":{dumps(str(event["event"]))},'
            f'"data":{data_json},"time":{at!r}}}')


def decode_event(text: str) -> dict:
    event = json.loads(text)
    if not isinstance(event, dict) or not isinstance(event.get("seq"), int):
        raise ValueError(f"not a numbered event: {text[:200]!r}")
    return event


def join_events(wires: list[str], per_message: int = EVENTS_PER_MESSAGE) -> list[str]:
    """The pub/sub messages for many encoded events (the recorder's batch): one line each, since
    the compact JSON of ``dumps`` never holds a raw newline. One PUBLISH per line cost the recorder
    more than recording them did."""
    return ["\n".join(wires[i:i + per_message]) for i in range(0, len(wires), per_message)]


def split_events(message: str) -> list[str]:
    """The encoded events of one pub/sub message, for ``decode_event`` each."""
    return message.split("\n")


def publish_event(redis_client: redis.Redis, event: dict) -> int:
    """Publish one numbered event (already appended to SQLite). Returns how many processes got it."""
    return redis_client.publish(EVENTS_CHANNEL, encode_event(event))


# -- stream entries: worker -> recorder -------------------------------------------------------

def encode_entry(kind: str, run_id: int, source: str, number: int, **body) -> dict:
    """The fields of one XADD. ``source`` is the assignment the worker runs (the control plane
    made it), ``number`` counts that assignment's entries from 1: (run, source, number) is the key
    the recorder inserts by, so an entry read twice is recorded once."""
    if kind not in ENTRY_KINDS:
        raise ValueError(f"unknown entry kind {kind!r}")
    return {FIELD: dumps({"k": kind, "run": int(run_id), "src": str(source), "n": int(number), **body})}


def decode_entry(fields: dict) -> dict:
    """The entry, checked against its kind's schema (``webapp.entries``), or MalformedEntry (a
    ValueError) naming what is wrong: the recorder sets such an entry aside and goes on."""
    try:
        entry = json.loads(fields[FIELD])
    except (KeyError, TypeError, ValueError, RecursionError):
        raise MalformedEntry(f"not a stream entry: {str(fields)[:200]}") from None
    return check_entry(entry)


def file_chunks(path, relative: str, mode: str = "whole", offset: int = 0, digest: str | None = None):
    """The bodies of ENTRY_FILE entries for ``path`` from ``offset``: base64 data and its offset.
    mode "whole": the file's size and sha256 (``digest`` when known already) ride on every chunk; the
    receiver hashes the chunks as they come, writes a temporary file, checks the sum at the last
    chunk and renames it into place (a partial upload never shows). mode "append" (the trainer's
    log, as it grows): each chunk is written at its offset."""
    path = Path(path)
    size = path.stat().st_size
    if mode == "whole" and digest is None:
        digest = sha256_of(path, size)
    with open(path, "rb") as fh:
        fh.seek(offset)
        first = True
        while True:
            data = fh.read(CHUNK_BYTES if mode == "append" else min(CHUNK_BYTES, max(0, size - offset)))
            end = offset + len(data)
            last = (len(data) < CHUNK_BYTES) if mode == "append" else end >= size
            if data or first:
                yield {"path": relative, "mode": mode, "offset": offset, "size": size, "sha256": digest,
                       "last": last, "length": len(data), "data": base64.b64encode(data).decode("ascii")}
            first, offset = False, end
            if last or not data:
                return


def sha256_of(path, limit: int | None = None) -> str:
    digest = hashlib.sha256()
    _hash_file(digest, path, math.inf if limit is None else limit)
    return digest.hexdigest()


# -- the receiving side of ENTRY_FILE chunks: the recorder (uploads), a worker (a carried backup) --

class UploadError(ValueError):
    pass


def confined(folder: Path, relative: str) -> Path:
    if Path(relative).is_absolute() or ".." in Path(relative).parts:  # refused without touching the disk
        raise UploadError(f"refused a file outside the run folder: {relative!r}")
    path = (folder / relative).resolve()
    if folder.resolve() not in path.parents:
        raise UploadError(f"refused a file outside the run folder: {relative!r}")
    return path


class ChunkWriter:
    """Writes ENTRY_FILE chunks into a folder, refusing what would cost more than the file: each
    chunk starts where the bytes received so far end (no gap, so no sparse file), no file grows
    past ``max_bytes``, and a whole file's sha256 is computed as its chunks arrive (the hash state
    is kept per partial file; after a restart the partial's bytes are hashed once to rebuild it)."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._hashing: dict[Path, tuple[int, object]] = {}  # partial file -> (bytes hashed, sha256 state)

    def write(self, folder: Path, entry: dict) -> dict | None:
        """Returns {path, size, sha256} when a whole file is complete and in place; UploadError
        for a chunk that is refused (the partial file is dropped)."""
        target = confined(folder, str(entry.get("path")))
        offset, data = entry.get("offset"), _chunk_data(entry)
        if not isinstance(offset, int) or offset < 0:
            raise UploadError(f"refused a chunk of {entry['path']} at offset {offset!r}")
        target.parent.mkdir(parents=True, exist_ok=True)
        if entry.get("mode") == "append":
            self._append(target, entry["path"], offset, data)
            return None
        return self._whole(target, entry, offset, data)

    def _append(self, target: Path, relative: str, offset: int, data: bytes) -> None:
        have = target.stat().st_size if target.exists() else 0
        self._check(relative, offset > have, offset, have, offset + len(data))
        with open(target, "r+b" if target.exists() else "wb") as fh:
            fh.seek(offset)  # at or before the end: a chunk sent again overwrites itself
            fh.write(data)

    def _whole(self, target: Path, entry: dict, offset: int, data: bytes) -> dict | None:
        size, relative = entry.get("size"), entry["path"]
        partial = target.with_name(f".{target.name}.upload")
        have = partial.stat().st_size if offset and partial.exists() else 0
        if not isinstance(size, int) or offset + len(data) > size:
            self._drop(partial)
            raise UploadError(f"refused a chunk of {relative}: it goes past the size the file was announced with")
        try:
            self._check(relative, offset != have, offset, have, size)
        except UploadError:
            self._drop(partial)
            raise
        hashed, digest = self._hashing.get(partial, (None, None))
        if hashed != offset:  # a new upload, or this process restarted mid-way: hash what is there once
            digest = hashlib.sha256()
            if offset:
                _hash_file(digest, partial, offset)
        digest.update(data)
        with open(partial, "r+b" if offset else "wb") as fh:
            fh.seek(offset)
            fh.write(data)
        self._hashing[partial] = (offset + len(data), digest)
        if not entry.get("last"):
            return None
        self._hashing.pop(partial, None)
        if offset + len(data) != size or digest.hexdigest() != entry.get("sha256"):
            partial.unlink(missing_ok=True)
            raise UploadError(f"the upload of {relative} did not match its sha256 and size: dropped")
        os.replace(partial, target)
        return {"path": relative, "size": size, "sha256": digest.hexdigest()}

    def _check(self, relative: str, gap: bool, offset: int, have: int, end: int) -> None:
        if gap:
            raise UploadError(f"refused a chunk of {relative} at offset {offset}: {have} bytes had "
                              "arrived (chunks must follow each other)")
        if end > self.max_bytes:
            raise UploadError(f"refused {relative}: {end} bytes is more than OTWEB_UPLOAD_MAX_MB allows "
                              f"({self.max_bytes / 1e6:.0f} MB)")

    def _drop(self, partial: Path) -> None:
        self._hashing.pop(partial, None)
        partial.unlink(missing_ok=True)


def _chunk_data(entry: dict) -> bytes:
    try:
        return base64.b64decode(entry.get("data") or "", validate=True)
    except (ValueError, TypeError):
        raise UploadError(f"refused a chunk of {entry.get('path')!r}: its data is not base64") from None


def _hash_file(digest, path, limit: float) -> None:
    with open(path, "rb") as fh:
        while limit > 0 and (block := fh.read(int(min(1 << 20, limit)))):
            digest.update(block)
            limit -= len(block)


class EventSink:
    """The control plane's direct path: append to SQLite, then publish."""

    def __init__(self, conn, redis_client):
        self.conn, self.redis = conn, redis_client

    def emit(self, run_id: int, event: dict) -> dict:
        from webapp import store  # the worker imports this module too, and never opens the record
        numbered = store.append_event(self.conn, run_id, event)
        try:
            publish_event(self.redis, numbered)
        except redis.RedisError as exc:
            # the record has it; browsers catch up from SQLite when they reconnect
            log.warning("could not publish event %s: %s", numbered["seq"], exc)
        return numbered

    def metrics(self, run_id: int, rows: list[tuple]) -> None:
        from webapp import store
        store.append_metrics(self.conn, run_id, rows)

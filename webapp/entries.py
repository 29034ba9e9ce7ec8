"""The schema of a worker's stream entries, checked before an entry touches the record.

A worker may be compromised or simply buggy; the recorder must never raise on what one sends (one
entry that raised on every batch once stopped the whole record). ``check`` returns the entry or
raises ``MalformedEntry`` naming what is wrong; the recorder sets such an entry aside (a
dead-letter stream) and goes on. Plain Python over the decoded JSON: the worker imports this module
too (beside ``eventlog``), without Flask or SQLite.

Fields a reader of the record uses are typed; other fields an event carries pass as they are (they
are JSON already), so a newer worker's extra field does not cost its entries.
"""
from __future__ import annotations

import base64
import binascii
import re

from webapp.protocol import Event, RunState

CHUNK_LIMIT = 256 * 1024          # eventlog.CHUNK_BYTES: no honest chunk is larger
SOURCE = re.compile(r"[A-Za-z0-9_.:-]{1,200}")
SHA256 = re.compile(r"[0-9a-f]{64}")
FILE_MODES = ("whole", "append")


class MalformedEntry(ValueError):
    """An entry that does not fit its schema; the message says why."""


def _int64(value) -> bool:
    # SQLite stores integers in 64 bits: a larger one raises where it is bound, outside any entry
    return type(value) is int and -2**63 <= value < 2**63


def _number(value) -> bool:
    return type(value) is float or _int64(value)  # type(): a bool is no number here


def _count(value) -> bool:
    return _int64(value) and value >= 0


def _text(value) -> bool:
    return isinstance(value, str)


def _flag(value) -> bool:
    return isinstance(value, bool)


def _optional(test):
    return lambda value: value is None or test(value)


def _artifact(value) -> bool:
    return isinstance(value, dict) and _text(value.get("kind")) and _text(value.get("path")) and all(
        _optional(_number)(value.get(key)) for key in ("global_step", "epoch"))


def _kept(value) -> bool:
    return isinstance(value, dict) and _optional(_text)(value.get("name"))


def _state(value) -> bool:
    return value in {state.value for state in RunState}


# per event: field -> test; a field marked required must be there, the others may be missing
_PROGRESS = {key: _optional(_number) for key in ("global_step", "max_step", "epoch", "max_epoch", "epoch_step",
                                                 "epoch_length", "loss", "smooth_loss", "lr",
                                                 "speed", "eta_s")}
_SAMPLE = {"path": _text, "prompt": _optional(_text), "global_step": _optional(_number), "epoch": _optional(_number)}
EVENT_FIELDS: dict[str, dict] = {
    Event.PROGRESS: _PROGRESS,
    Event.STATUS: {"text": _text},
    Event.SAMPLE_DEFAULT: _SAMPLE,
    Event.SAMPLE_CUSTOM: _SAMPLE,
    Event.SAMPLE_PROGRESS: {"step": _number, "max_step": _number},
    Event.LOG: {"text": _optional(_text), "level": _optional(_text), "artifact": _optional(_artifact),
                "kept": _optional(_kept), "skipped_files": _optional(_count)},
    Event.ERROR: {"message": _optional(_text), "traceback": _optional(_text)},
    Event.FINISHED: {"stopped": _optional(_flag), "output": _optional(_text)},
    Event.RUN: {"state": _state, "reason": _optional(_text), "reason_code": _optional(_text),
                "pid": _optional(_count)},
}
REQUIRED = {Event.STATUS: ("text",), Event.SAMPLE_DEFAULT: ("path",), Event.SAMPLE_CUSTOM: ("path",),
            Event.RUN: ("state",)}


def check(entry) -> dict:
    """``entry``: a decoded stream entry. Returns it, or raises MalformedEntry."""
    if not isinstance(entry, dict):
        raise MalformedEntry("an entry is a JSON object")
    if not _count(entry.get("run")) or not _count(entry.get("n")):
        raise MalformedEntry("an entry needs a run and a number n (integers)")
    if not isinstance(entry.get("src"), str) or not SOURCE.fullmatch(entry["src"]):
        raise MalformedEntry("an entry needs its source: the assignment's id (a short name)")
    kind = entry.get("k")
    checker = _KINDS.get(kind) if isinstance(kind, str) else None
    if checker is None:
        raise MalformedEntry(f"unknown entry kind {str(kind)[:40]!r}")
    checker(entry)
    return entry


def _event(entry: dict) -> None:
    name, data = entry.get("event"), entry.get("data")
    fields = EVENT_FIELDS.get(name) if isinstance(name, str) else None
    if fields is None:
        raise MalformedEntry(f"unknown event {str(name)[:40]!r}")
    if data is None:
        data = entry["data"] = {}
    if not isinstance(data, dict):
        raise MalformedEntry(f"a {name} event's data is an object")
    if not _optional(_number)(entry.get("time")):
        raise MalformedEntry("an event's time is a number")
    for key in REQUIRED.get(name, ()):
        if key not in data:
            raise MalformedEntry(f"a {name} event needs {key}")
    for key, value in data.items():  # the data's keys, not the schema's: a progress event has few
        test = fields.get(key)
        if test is not None and not test(value):
            raise MalformedEntry(f"a {name} event's {key} has the wrong type: {str(value)[:60]!r}")


def _metrics(entry: dict) -> None:
    rows = entry.get("rows")
    if not isinstance(rows, list):
        raise MalformedEntry("metrics rows are a list")
    for row in rows:
        if not (isinstance(row, list) and len(row) == 4 and _count(row[0]) and _optional(_number)(row[1])
                and _optional(_number)(row[2]) and _number(row[3])):
            raise MalformedEntry(f"a metrics row is [step, loss, lr, time]: {str(row)[:60]!r}")


def _file(entry: dict) -> None:
    if not isinstance(entry.get("path"), str) or not entry["path"] or "\0" in entry["path"]:
        raise MalformedEntry("a file chunk needs its path")
    if entry.get("mode") not in FILE_MODES:
        raise MalformedEntry(f"a file chunk's mode is one of {', '.join(FILE_MODES)}")
    offset, size, length = entry.get("offset"), entry.get("size"), entry.get("length")
    if not (_count(offset) and _count(size) and _count(length) and length <= CHUNK_LIMIT):
        raise MalformedEntry("a file chunk needs offset, size and length (whole numbers; a chunk of 256 KiB at most)")
    if entry["mode"] == "whole" and (offset + length > size or not isinstance(entry.get("sha256"), str)
                                     or not SHA256.fullmatch(entry["sha256"])):
        raise MalformedEntry("a whole file's chunk lies within its size and carries the file's sha256")
    if not _flag(entry.get("last")) or not isinstance(entry.get("data"), str):
        raise MalformedEntry("a file chunk needs last (true or false) and its data (base64)")
    try:
        data = base64.b64decode(entry["data"], validate=True)
    except (binascii.Error, ValueError):
        raise MalformedEntry("a file chunk's data is not base64") from None
    if len(data) != length:
        raise MalformedEntry(f"a file chunk's data holds {len(data)} bytes, not its length {length}")


def _remove(entry: dict) -> None:
    if not isinstance(entry.get("path"), str) or not entry["path"] or "\0" in entry["path"]:
        raise MalformedEntry("a remove entry needs the path (a string)")


_KINDS = {"event": _event, "metrics": _metrics, "file": _file, "remove": _remove}

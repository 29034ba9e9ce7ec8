"""What a worker still owes the web: one small JSON file per run folder whose files are not all
sent (``<worker dir>/owed/<run>-<assignment>.json``), written atomically while the run's files are
uploaded and removed once everything is sent. A worker that exits before then (Ctrl-C, a restart,
a crash) finds the entry at its next start and sends the rest (issue 33, "nothing lost"): what
``sent`` says went already (size, mtime) is not sent again.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass
class Owed:
    run_id: int
    assignment: str
    run_dir: str
    since: float = field(default_factory=time.time)
    sent: dict[str, list] = field(default_factory=dict)   # relative path -> [size, mtime_ns] sent
    kept_here: list[str] = field(default_factory=list)     # larger than the upload limit: stay here
    log_offset: int = 0                                     # the trainer's log, sent up to here

    @property
    def name(self) -> str:
        return f"{self.run_id}-{self.assignment}.json"


class OwedJournal:
    def __init__(self, folder: Path, max_age_days: float):
        self.folder, self.max_age_s = Path(folder), max_age_days * 86400

    def write(self, owed: Owed) -> None:
        """A temporary file renamed into place: a worker killed mid-write leaves the last whole entry."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / owed.name
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(asdict(owed)))
        os.replace(tmp, path)

    def remove(self, owed: Owed) -> None:
        (self.folder / owed.name).unlink(missing_ok=True)

    def pending(self, now: float | None = None) -> list[Owed]:
        """The entries still owed, oldest first. Dropped, each with a log line: one that cannot be
        read, one older than the age limit, one whose run folder is gone (nothing left to send)."""
        now = time.time() if now is None else now
        found = []
        for path in sorted(self.folder.glob("*.json")) if self.folder.is_dir() else []:
            owed = _read(path)
            why = ("it cannot be read" if owed is None else
                   f"it is older than {self.max_age_s / 86400:g} days" if now - owed.since > self.max_age_s else
                   f"its run folder {owed.run_dir} is gone" if not Path(owed.run_dir).is_dir() else None)
            if why:
                log.warning("dropped %s from the files owed to the web: %s", path.name, why)
                path.unlink(missing_ok=True)
                continue
            found.append(owed)
        return sorted(found, key=lambda owed: owed.since)


def _read(path: Path) -> Owed | None:
    try:
        data = json.loads(path.read_text())
        return Owed(run_id=int(data["run_id"]), assignment=str(data["assignment"]), run_dir=str(data["run_dir"]),
                    since=float(data["since"]), sent={str(k): list(v) for k, v in data.get("sent", {}).items()},
                    kept_here=[str(k) for k in data.get("kept_here", [])], log_offset=int(data.get("log_offset", 0)))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None

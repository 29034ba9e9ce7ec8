"""A run folder's files, mirrored to the control plane through the event stream while the run
trains: the config as it ran, the trainer's log as it grows, saves, outputs and backups when they
appear (each file whole, checksummed; a pruned rolling backup is removed there too). Samples are
not here: each goes with its event (``StreamSink.emit``).

Files are written atomically by the trainer (a temporary name, then a rename), so a file whose
(size, mtime) changed is whole. One larger than ``max_bytes`` stays on this host: the run's log
says where.
"""
from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path

from webapp.protocol import BACKUP_COMPLETE_FILE, Event, make_event
from webapp.settings import LOG_NAME
from webapp.worker.owed import Owed, OwedJournal
from webapp.worker.stream_sink import FILE_BACKLOG

log = logging.getLogger(__name__)
SCAN_EVERY_S = 2.0
SKIP_TOP = ("samples",)       # sent with their events
BACKLOG_WAIT_S = 0.05
# at the run's end, how long the folder's last files may wait for room in the stream (a recorder
# that cannot write, e.g. the web's disk is full) before the run's end is reported without them;
# they follow it (waited without limit, the run stayed "running" for minutes after it ended: issue 33)
FINISH_WAIT_S = 30.0


class NoRoom(Exception):
    """The stream had no room for the next chunk by the deadline."""


class FolderSync:
    def __init__(self, sink, run_id: int, run_dir: Path, max_bytes: int, finish_wait_s: float = FINISH_WAIT_S,
                 journal: OwedJournal | None = None, assignment: str = ""):
        """journal: where what the folder still owes the web is kept while it does (owed.py), so
        that a worker that exits before it is all sent sends the rest at its next start."""
        self.sink, self.run_id, self.run_dir, self.max_bytes = sink, run_id, Path(run_dir), max_bytes
        self.finish_wait_s, self.deadline = finish_wait_s, None
        self.room = 0  # chunks the stream had room for when last asked
        self.sent: dict[str, tuple] = {}
        self.kept_here: set[str] = set()
        self.log_offset = 0
        self.stopping = threading.Event()
        self.cancelled = threading.Event()
        self.follower: threading.Thread | None = None
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._loop, name=f"upload-{run_id}", daemon=True)
        self.journal = journal
        self.owed = Owed(run_id, assignment, str(self.run_dir)) if journal else None

    @classmethod
    def resumed(cls, sink, owed: Owed, journal: OwedJournal, max_bytes: int) -> "FolderSync":
        """The rest of what a journal entry owes, sent by a thread of its own (``follow``)."""
        sync = cls(sink, owed.run_id, Path(owed.run_dir), max_bytes, journal=journal)
        sync.owed = owed
        sync.sent = {relative: tuple(stat) for relative, stat in owed.sent.items()}
        sync.kept_here, sync.log_offset = set(owed.kept_here), owed.log_offset
        return sync

    def start(self) -> None:
        self._journal()
        self.thread.start()

    def follow(self) -> None:
        self.follower = threading.Thread(target=self._follow, name=f"upload-rest-{self.run_id}", daemon=True)
        self.follower.start()

    def following(self) -> bool:
        return self.follower is not None and self.follower.is_alive()

    def cancel(self) -> None:
        """The run starts again on this worker: its new upload sends the folder; this one stops."""
        self.cancelled.set()
        if self.journal:
            with self.lock:  # not while it notes a file sent (it stops waiting for room at once)
                self.journal.remove(self.owed)

    def left(self) -> tuple[int, int]:
        """(files, bytes) the folder holds that are not sent yet (its heartbeat says so)."""
        files = size = 0
        for path in self._files():
            relative = path.relative_to(self.run_dir).as_posix()
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            if self.sent.get(relative) != (stat.st_size, stat.st_mtime_ns) and relative not in self.kept_here:
                files, size = files + 1, size + stat.st_size
        return files, size

    def already_there(self, relatives: list[str]) -> None:
        """Files the control plane has already (a backup it sent): not uploaded again unless changed."""
        for relative in relatives:
            stat = (self.run_dir / relative).stat()
            self.sent[relative] = (stat.st_size, stat.st_mtime_ns)

    def finish(self) -> None:
        """Before the run's final state is sent: everything the folder holds goes first, waiting at
        most finish_wait_s for room in the stream; what did not fit by then follows the final state
        (a thread of its own sends it once there is room)."""
        self.deadline = time.monotonic() + self.finish_wait_s
        self.stopping.set()
        self.thread.join(timeout=self.finish_wait_s + 5)
        try:
            self.sync()
        except NoRoom:
            log.warning("run %s: no room in the event stream for %.0f s: its last files follow its end",
                        self.run_id, self.finish_wait_s)
            self.deadline = None
            self.follow()
            return
        self._settled()

    def _follow(self) -> None:
        while not self.cancelled.is_set():
            try:
                self.sync()
                self._settled()
                log.info("run %s: its last files are sent", self.run_id)
                return
            except NoRoom:
                return  # cancelled
            except Exception:  # Redis went away meanwhile: try again
                log.exception("run %s: uploading its last files failed; trying again", self.run_id)
                time.sleep(SCAN_EVERY_S)

    def _settled(self) -> None:
        """Everything is sent (or spooled, which survives the worker): nothing is owed."""
        if self.journal and not self.cancelled.is_set():
            self.journal.remove(self.owed)

    def _journal(self) -> None:
        if not self.journal or self.cancelled.is_set():
            return
        self.owed.sent = {relative: list(stat) for relative, stat in self.sent.items()}
        self.owed.kept_here, self.owed.log_offset = sorted(self.kept_here), self.log_offset
        try:
            self.journal.write(self.owed)
        except OSError as exc:  # a full disk here too: the upload goes on, unremembered
            log.warning("run %s: could not note what it still owes the web: %s", self.run_id, exc)

    def _loop(self) -> None:
        while not self.stopping.wait(SCAN_EVERY_S):
            if not self.sink.connected:
                continue  # Redis is away: files wait for it (events are spooled meanwhile)
            try:
                self.sync()
            except NoRoom:
                return  # the run has ended meanwhile (finish set the deadline): finish sends the rest
            except Exception:  # an upload must never end the run
                log.exception("run %s: uploading its files failed; trying again", self.run_id)

    def sync(self) -> None:
        with self.lock:
            self.room = 0  # what it counted last pass is stale: the run's events fill the stream too
            offset = self.log_offset
            self._sync_log()
            if self.log_offset != offset:
                self._journal()
            current = {}
            for path in self._files():
                relative = path.relative_to(self.run_dir).as_posix()
                stat = path.stat()
                current[relative] = (stat.st_size, stat.st_mtime_ns)
                if self.sent.get(relative) != current[relative] and relative not in self.kept_here:
                    self._send(path, relative, stat.st_size)
                    self.sent[relative] = current[relative]
                    self._journal()  # one sent: a worker killed now does not send it again
            for relative in [r for r in self.sent if r not in current]:
                if relative in self.kept_here:  # pruned here: the run page stops listing it
                    self.kept_here.discard(relative)
                    self.sink.emit(self.run_id, make_event(Event.LOG, level="info", text=(
                        f"{relative}, kept on the worker host, was removed there"), kept={"name": relative,
                                                                                         "removed": True}))
                else:
                    self.sink.remove(self.run_id, relative)
                del self.sent[relative]
                self._journal()

    def _files(self):
        # a folder's completion mark goes after its other files: the web sees a backup as whole
        # (and may send it to another worker) only once all of it is there
        last = lambda p: (str(p.parent), p.name == BACKUP_COMPLETE_FILE, p.name)  # noqa: E731
        for path in sorted(self.run_dir.rglob("*"), key=last):
            parts = path.relative_to(self.run_dir).parts
            if not path.is_file() or parts[0] in SKIP_TOP or parts[-1] == LOG_NAME and len(parts) == 1:
                continue
            if any(part.startswith(".") for part in parts) or path.suffix == ".tmp":
                continue  # written under a temporary name: not whole yet
            yield path

    def _send(self, path: Path, relative: str, size: int) -> None:
        if size > self.max_bytes:
            self.kept_here.add(relative)
            host = socket.gethostname()
            # "kept" is what the run page lists (name, host, path, size) in place of a download
            self.sink.emit(self.run_id, make_event(Event.LOG, level="warning", text=(
                f"{relative} ({size / 1e6:.0f} MB) is kept on the worker host at {host}:{path}: larger than "
                f"OTWEB_UPLOAD_MAX_MB"), kept={"name": relative, "host": host, "path": str(path), "size": size}))
            return
        self.sink.send_file(self.run_id, path, relative, wait_for_room=self._wait_for_room)

    def _sync_log(self) -> None:
        path = self.run_dir / LOG_NAME
        if path.is_file() and path.stat().st_size > self.log_offset:
            self.log_offset = self.sink.send_file(self.run_id, path, LOG_NAME, mode="append",
                                                  offset=self.log_offset)

    def _wait_for_room(self) -> None:
        """Before each chunk: the stream is asked how full it is only once the room it had last time
        is used up (asking before every chunk was a second round trip per chunk over a slow link)."""
        if self.room > 0:
            self.room -= 1
            return
        while self.sink.connected:
            try:
                backlog = self.sink.file_backlog()
            except Exception:
                return  # Redis went away: the chunk is spooled
            if backlog < FILE_BACKLOG:
                self.room = FILE_BACKLOG - backlog - 1
                return
            if self.deadline is not None and time.monotonic() > self.deadline or self.cancelled.is_set():
                raise NoRoom
            time.sleep(BACKLOG_WAIT_S)

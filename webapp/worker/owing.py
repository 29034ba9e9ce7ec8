"""The runs whose folders still send files to the web after their end: those that followed a run's
end in this process, and those a journal entry (owed.py) left from a worker that exited before
they were sent, resumed at start. Each sends in a thread of its own: taking new work never waits."""
from __future__ import annotations

import logging
import threading
import uuid

from webapp.worker.owed import OwedJournal
from webapp.worker.uploads import FolderSync

log = logging.getLogger(__name__)


class Owing:
    def __init__(self, sink, journal: OwedJournal, max_bytes: int):
        self.sink, self.journal, self.max_bytes = sink, journal, max_bytes
        self.lock = threading.Lock()
        self.syncs: dict[int, FolderSync] = {}

    def resume(self) -> None:
        """What each journal entry owes: the files not sent (or changed since), through the same
        stream, under a source of their own (the recorder numbers entries per source: this start's
        must not be taken for the ones an earlier worker sent)."""
        pending = self.journal.pending()
        newest = {owed.run_id: owed for owed in pending}  # oldest first: the newest stays
        for owed in pending:
            if newest[owed.run_id] is not owed:  # the run started again here since: that upload sends the folder
                self.journal.remove(owed)
                continue
            source = f"{owed.assignment}:owed-{uuid.uuid4().hex[:8]}"
            self.sink.bind(owed.run_id, source, owed.run_dir)
            sync = FolderSync.resumed(self.sink, owed, self.journal, self.max_bytes)
            log.info("run %s: %d files (%.0f MB) of its folder were not sent to the web before this worker "
                     "stopped: sending them", owed.run_id, *_in_mb(sync.left()))
            self.keep(sync)
            sync.follow()

    def keep(self, sync: FolderSync) -> None:
        with self.lock:
            self.syncs[sync.run_id] = sync

    def settle(self, run_id: int) -> None:
        """The run starts again here: its new upload sends the folder whole; the old one stops."""
        with self.lock:
            sync = self.syncs.pop(run_id, None)
        if sync is not None and sync.following():
            sync.cancel()

    def backlog(self) -> list[dict]:
        """For the heartbeat: what each run still sending has left ([] when none)."""
        with self.lock:
            syncs = [sync for sync in self.syncs.values() if sync.following()]
        left = []
        for sync in syncs:
            files, size = sync.left()
            if files:
                left.append({"run_id": sync.run_id, "files": files, "bytes": size})
        return left


def _in_mb(left: tuple[int, int]) -> tuple[int, float]:
    return left[0], left[1] / 1e6

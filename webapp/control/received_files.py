"""The files workers upload, as the recorder receives them: each chunk written where it belongs in
this host's copy of the run folder (``eventlog.ChunkWriter``: contiguous, bounded, hashed as it
arrives), a finished file's size and sha256 recorded, a sample image checked from its header, a
removed file removed; and refusals shown in the run's log at most REFUSALS_PER_S a second."""
from __future__ import annotations

import logging
import time
from pathlib import Path

from webapp import store
from webapp.control.sample_check import check_sample
from webapp.eventlog import ChunkWriter, UploadError, confined
from webapp.settings import upload_max_bytes

log = logging.getLogger(__name__)
REFUSALS_PER_S = 10  # a run's log shows at most this many refused entries a second (then a count)


class ReceivedFiles:
    def __init__(self, conn, run_dir):
        """run_dir(run_id): this host's copy of a run's folder."""
        self.conn, self.run_dir = conn, run_dir
        self.chunks = ChunkWriter(upload_max_bytes())
        self._refusals: dict[int, tuple[float, int, int]] = {}  # run -> (since, shown, held back)

    def chunk(self, run_id: int, entry: dict) -> None:
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

    def remove(self, run_id: int, relative: str) -> None:
        """A file or folder the worker removed (a pruned rolling backup), and its empty parents."""
        folder = Path(self.run_dir(run_id))
        target = confined(folder, relative)
        target.unlink(missing_ok=True)
        parent = target.parent
        while parent != folder.resolve() and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent
        store.uploads.forget(self.conn, run_id, relative)

    def arrived(self, run_id: int, relative) -> bool:
        try:
            return isinstance(relative, str) and confined(Path(self.run_dir(run_id)), relative).is_file()
        except UploadError:
            return False

    def refusal_text(self, run_id: int, text: str) -> str | None:
        """The words a refused chunk puts in the run's log, or None while REFUSALS_PER_S were shown
        this second: a worker flooding the stream with bad chunks must not flood its run's viewers
        too; the next one shown says how many were not."""
        now = time.monotonic()
        since, shown, held = self._refusals.get(run_id, (now, 0, 0))
        if now - since >= 1.0:
            since, shown = now, 0
        if shown >= REFUSALS_PER_S:
            self._refusals[run_id] = (since, shown, held + 1)
            return None
        self._refusals[run_id] = (since, shown + 1, 0)
        log.warning("run %s: %s", run_id, text)
        return text + (f" ({held} more refused before this one, not shown)" if held else "")

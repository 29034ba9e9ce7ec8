"""The leader's housekeeping between recorder turns, a bounded amount each time: an ended run's
progress events thinned (``store.compaction``, OTWEB_COMPACT_AFTER_S after its end), one ended run's
folder measured (``store.disk_use``, once it has settled),
some free pages of the record given back to the disk. Never on a request, never long: a turn
looks at a few thousand events at most."""
from __future__ import annotations

import logging
import time
from pathlib import Path

from webapp import store
from webapp.settings import compact_after_s

log = logging.getLogger(__name__)
EVERY_S = 2.0


class Housekeeping:
    def __init__(self, conn, run_dir):
        """run_dir(run_id): this host's copy of a run's folder."""
        self.conn, self.run_dir = conn, run_dir
        self._at = float("-inf")
        self.turns = 0
        self.after_s = compact_after_s()

    def maybe_step(self) -> None:
        if time.monotonic() - self._at < EVERY_S:
            return
        self._at = time.monotonic()
        try:
            self.step()
        except Exception:  # noqa: BLE001 - housekeeping waits for the next turn; the record goes on
            log.exception("housekeeping failed; trying again later")

    def step(self) -> dict:
        done = store.compaction.step(self.conn, after_s=self.after_s)
        # measured as soon as the run has settled (the run page shows it), not after compact_after_s
        run_id = store.disk_use.next_unmeasured(self.conn)
        if run_id is not None:
            done["measured"] = {run_id: store.disk_use.record(self.conn, run_id, Path(self.run_dir(run_id)))}
        self.turns += 1
        return done

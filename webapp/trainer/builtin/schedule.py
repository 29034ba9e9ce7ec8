"""When a periodic action (sampling, backup) is due, with OneTrainer's time units.

Pure: no clock, no torch. The loop asks ``due(global_step, now)`` once after every step.
EPOCH counts in steps (every N epochs = every N * steps_per_epoch steps), so with a whole N
it falls on epoch ends; STEP every N steps; SECOND/MINUTE/HOUR when that much time has passed
since the last time it was due (or since the start); ALWAYS every step; NEVER (or N <= 0) never.
The first ``skip_first`` times it comes due are skipped.
"""
from __future__ import annotations

SECONDS = {"SECOND": 1.0, "MINUTE": 60.0, "HOUR": 3600.0}


class Schedule:
    def __init__(self, every: float, unit: str, steps_per_epoch: int = 1, skip_first: int = 0,
                 start_time: float = 0.0):
        self.unit = unit
        self.skip_first = max(0, int(skip_first))
        self.times_due = 0
        self._last_time = start_time
        self._step_interval = 0
        self._seconds = 0.0
        if unit == "STEP" and every > 0:
            self._step_interval = max(1, round(every))
        elif unit == "EPOCH" and every > 0:
            self._step_interval = max(1, round(every * steps_per_epoch))
        elif unit in SECONDS and every > 0:
            self._seconds = every * SECONDS[unit]

    def due(self, global_step: int, now: float = 0.0) -> bool:
        """``global_step``: steps done so far (1 after the first step); ``now``: seconds."""
        if not self._comes_due(global_step, now):
            return False
        self.times_due += 1
        return self.times_due > self.skip_first

    def _comes_due(self, global_step: int, now: float) -> bool:
        if self.unit == "ALWAYS":
            return True
        if self._step_interval:
            return global_step > 0 and global_step % self._step_interval == 0
        if self._seconds and now - self._last_time >= self._seconds:
            self._last_time = now
            return True
        return False

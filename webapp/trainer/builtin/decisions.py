"""What happens at a step boundary, decided once (by rank 0) so every rank acts alike.

The schedules (sample, backup, save) that came due with the step just done, then the commands
that arrived (stop, sample now, custom samples, backup, save). A plain dict: it is broadcast to
the other ranks as it is.
"""
from __future__ import annotations

import time


def decide(commands, schedules, global_step: int, stepped: bool) -> dict:
    """``stepped``: a step was trained since the loop began (schedules count from there)."""
    sample_schedule, backup_schedule, save_schedule = schedules
    now = time.monotonic()
    due = {"sample": False, "backup": False, "save": False}
    if stepped:
        due = {"sample": sample_schedule.due(global_step, now),
               "backup": backup_schedule.due(global_step, now),
               "save": save_schedule.due(global_step, now)}
    commands.poll()
    return {"due": due, "stop": commands.stop_requested,
            "sample_default": commands.take_sample_default(),
            "custom": commands.take_custom_samples(),
            "backup": commands.take_backup(), "save": commands.take_save()}


def nothing() -> dict:
    """What a rank other than 0 proposes: it has no commands; rank 0's decision replaces it."""
    return {"due": {"sample": False, "backup": False, "save": False}, "stop": False,
            "sample_default": False, "custom": [], "backup": False, "save": False}

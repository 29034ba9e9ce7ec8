"""torch's CPU threads in a trainer process: one rule for `otweb train`, a worker's trainer and every
rank of a multi-GPU run, applied by make_backend before any backend is built (so the benchmark's
bare trainer and the product's trainer run with the same threads).

Why the cores but one: torch's OpenMP threads spin-wait for each other, so when any of them has to
share a core with the worker, the web or Redis, every step waits for it (a benchmark with every core:
0.14 vs 25.8 steps/s with one thread fewer). On a GPU host the step's math runs on the GPU and these
threads only serve CPU-side work (decoding images, the CPU parts of caching and saving); the same
rule keeps N ranks from oversubscribing the cores (torchrun sets one thread a rank for that reason).
"""
from __future__ import annotations

import os

from webapp.settings import TRAINER_THREADS_ENV, trainer_threads


def usable_cpus() -> int:
    """The cores this process may run on (a container's or taskset's limit, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def threads_for(setting: int | None, cpus: int, world_size: int = 1) -> int:
    """setting (OTWEB_TRAINER_THREADS) when given; else the cores but one, shared among the ranks."""
    if setting is not None:
        return setting
    return max(1, (cpus - 1) // max(1, world_size))


def apply_trainer_threads(world_size: int = 1) -> tuple[int, str]:
    """Sets torch's intra-op threads for this process; returns the count torch reports and why."""
    import torch
    setting, cpus = trainer_threads(), usable_cpus()
    torch.set_num_threads(threads_for(setting, cpus, world_size))
    why = (f"{TRAINER_THREADS_ENV}={setting}" if setting is not None else
           f"{TRAINER_THREADS_ENV}=auto: {cpus} cores, one left to the worker and the web"
           + (f", shared by {world_size} ranks" if world_size > 1 else ""))
    return torch.get_num_threads(), why

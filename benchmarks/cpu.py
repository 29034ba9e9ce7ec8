"""CPU accounting for the benchmarks: who used the CPU while a trainer stepped (psutil)."""
from __future__ import annotations

import contextlib
import threading
import time

import psutil


def busy_cpu_s() -> float:
    """CPU seconds the whole machine has been busy (all cores; steal counts: others had the core)."""
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + getattr(t, "irq", 0) + getattr(t, "softirq", 0) + getattr(t, "steal", 0)


class CpuSampler(threading.Thread):
    """Samples CPU seconds of groups of processes (own, user + system) with time.time() every
    `every` s, so that each group's use between two event times can be read off afterwards.
    groups: name -> find_pids() (asked until it names any; those are then followed), or None for
    the whole machine."""

    def __init__(self, groups: dict, every: float = 0.05):
        super().__init__(daemon=True)
        self.groups, self.every, self.halt = groups, every, threading.Event()
        self.procs: dict[str, list] = {name: [] for name in groups}
        self.samples: list[tuple[float, dict]] = []

    def _read(self, name: str) -> float | None:
        if self.groups[name] is None:
            return busy_cpu_s()
        with contextlib.suppress(psutil.Error):
            self.procs[name] = self.procs[name] or [psutil.Process(pid) for pid in self.groups[name]()]
        total = 0.0
        for proc in self.procs[name]:
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
        return total if self.procs[name] else None

    def run(self) -> None:
        while not self.halt.is_set():
            self.samples.append((time.time(), {name: self._read(name) for name in self.groups}))
            self.halt.wait(self.every)

    def stop(self) -> None:
        self.halt.set()
        self.join()

    def used(self, name: str, start: float, end: float) -> float | None:
        """CPU seconds the group used between two times (interpolated between samples)."""
        c0, c1 = self._at(name, start), self._at(name, end)
        return None if c0 is None or c1 is None else c1 - c0

    def _at(self, name: str, when: float) -> float | None:
        for (t0, s0), (t1, s1) in zip(self.samples, self.samples[1:]):
            c0, c1 = s0[name], s1[name]
            if t0 <= when <= t1 and c0 is not None and c1 is not None:
                return c0 + (c1 - c0) * (when - t0) / (t1 - t0) if t1 > t0 else c0
        return None

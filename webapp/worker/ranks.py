"""The trainer processes of one run: one, or one per rank of a multi-GPU built-in run.

Rank 0 reads the commands queue and writes the events queue; the other ranks share the events
queue for their own failure only. They meet over TCP on this host (``init_method``). A rank that
ends with an error or a signal while the others run takes the run down: the rest are ended at
once (terminate, then kill), so no collective waits on a dead peer and no process is left.

A single-rank run may adopt a warm trainer (``warm.WarmTrainer``: torch already imported) as its
rank 0 instead of spawning one; the ranks of a multi-GPU run are always spawned here.
"""
from __future__ import annotations

import os
import signal
import socket
import time

from webapp.settings import LOG_NAME, rank_log_name
from webapp.trainer import process as trainer_process

KILL_AFTER_S = 1.0  # a rank that ignores SIGTERM this long gets SIGKILL


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Ranks:
    def __init__(self, context, count: int, run_id: int, config: dict, run_dir, base_dir,
                 events, commands, warm=None):
        """warm: a started WarmTrainer, adopted as rank 0 of a single-rank run (events and commands
        must then be its queues); ignored, and left to its owner, when the run has several ranks."""
        self.count = count
        self.warm = warm if count == 1 else None
        self._job = (config, run_dir, base_dir)
        init_method = f"tcp://127.0.0.1:{free_port()}" if count > 1 else ""
        self._spawn = lambda rank: context.Process(
            target=trainer_process.main, name=f"otweb-trainer-{run_id}" + (f"-rank{rank}" if rank else ""),
            args=(config, str(run_dir), str(base_dir), events, commands if rank == 0 else None,
                  os.getpid(), rank, count, init_method))
        self.processes = [self.warm.process] if self.warm is not None else [self._spawn(r) for r in range(count)]
        self.failed_rank: int | None = None  # the first rank that died while the others ran

    @property
    def main(self):
        return self.processes[0]

    def start(self) -> None:
        if self.warm is not None:
            try:
                self.warm.hand(*self._job)
                return
            except (OSError, ValueError):  # it died since it was checked: a cold start on its queues
                self.warm.discard()
                self.warm = None
                self.processes = [self._spawn(0)]
        for process in self.processes:
            process.start()

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def running(self) -> bool:
        """Rank 0 runs and no rank has failed (checked on every call: within the event loop's
        tick, so a dead rank ends the run in well under a second)."""
        if self.failed_rank is None and self.count > 1:
            self._check_failures()
        return self.failed_rank is None and self.main.is_alive()

    def _check_failures(self) -> None:
        dead = [(rank, p.exitcode) for rank, p in enumerate(self.processes)
                if p.exitcode is not None and p.exitcode != 0]
        if not dead:
            return
        # a rank killed by a signal is the cause; the others' errors (a closed peer) follow from it
        dead.sort(key=lambda item: (item[1] >= 0, item[0]))
        self.failed_rank = dead[0][0]
        self.end_all()

    def end_all(self) -> None:
        """Terminate every rank still alive, and kill those that linger."""
        alive = [p for p in self.processes if p.is_alive()]
        for process in alive:
            process.terminate()
        deadline = time.monotonic() + KILL_AFTER_S
        for process in alive:
            process.join(timeout=max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(timeout=5)

    def wait_rest(self, timeout: float) -> None:
        """After rank 0 ended: the others end with it; any that do not are ended."""
        deadline = time.monotonic() + timeout
        for process in self.processes[1:]:
            process.join(timeout=max(0.0, deadline - time.monotonic()))
        self.end_all()

    def kill(self) -> None:
        for process in self.processes:
            if process.is_alive():
                process.kill()

    def terminate(self) -> None:
        for process in self.processes:
            if process.is_alive():
                process.terminate()

    def close(self) -> None:
        for process in self.processes:
            process.close()

    def failure(self) -> tuple[int, str] | None:
        """(rank, how it ended) of the failed rank."""
        if self.failed_rank is None:
            return None
        code = self.processes[self.failed_rank].exitcode
        if code is not None and code < 0:
            how = f"was killed by {signal.Signals(-code).name}"
        else:
            how = f"exited with code {code}"
        return self.failed_rank, how

    @staticmethod
    def log_name(rank: int) -> str:
        return rank_log_name(rank) if rank else LOG_NAME

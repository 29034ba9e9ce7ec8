"""A trainer process started before its run, so a start skips importing torch and the models'
libraries (seconds on a small box).

The worker keeps one ready while it waits for work (``trainer.process.warm_main``); a single-rank
run adopts it as its rank 0 (``Ranks``), a multi-GPU run starts its ranks fresh and leaves it for
a later run. Off with OTWEB_WARM_TRAINER=0 (it holds a few hundred MB of RAM while idle).
"""
from __future__ import annotations

import multiprocessing

from webapp.trainer import process as trainer_process
from webapp.settings import mark_import_notices_shown, warm_trainer_enabled


class WarmTrainer:
    def __init__(self, parent_pid: int):
        context = multiprocessing.get_context("spawn")
        self.events, self.commands = context.Queue(), context.Queue()
        receive, self._send = context.Pipe(duplex=False)
        self.process = context.Process(target=trainer_process.warm_main, name="otweb-trainer-warm",
                                       args=(receive, self.events, self.commands, parent_pid))
        self.process.start()
        receive.close()
        mark_import_notices_shown()  # the next warm trainer keeps the same notices out of the terminal

    @staticmethod
    def enabled() -> bool:
        return warm_trainer_enabled()

    def alive(self) -> bool:
        return self.process.is_alive()

    def hand(self, config: dict, run_dir, base_dir) -> None:
        """The run it is to train; raises OSError or ValueError if it is gone."""
        self._send.send((config, str(run_dir), str(base_dir)))
        self._send.close()

    def discard(self) -> None:
        """Let it exit (it is idle: nothing to save); killed if it does not within a second."""
        try:
            self._send.send(None)
            self._send.close()
        except (OSError, ValueError):
            pass
        self.process.join(timeout=1)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=1)
        if not self.process.is_alive():
            self.process.close()

"""Which backend hosts a run. Imports are lazy: choosing must not load torch."""
from __future__ import annotations

from pathlib import Path

from webapp.protocol import PLAYGROUND_MARKER
from webapp.config.builtin.backend_choice import BUILTIN, ONETRAINER, choose_backend, onetrainer_dir


def make_backend(config: dict, callbacks, commands, run_dir: Path, base_dir: Path, rendezvous=None):
    """``rendezvous``: this process's rank of a multi-GPU built-in run (OneTrainer starts its own).
    Sets torch's CPU threads first (every path builds its backend here) and says how many, in the
    run's first event."""
    from webapp.trainer.threads import apply_trainer_threads
    threads, why = apply_trainer_threads(rendezvous.world_size if rendezvous is not None else 1)
    callbacks.log(f"torch CPU threads: {threads} ({why})", "info", torch_threads=threads)
    if PLAYGROUND_MARKER in config:
        from webapp.trainer.playground_backend import PlaygroundBackend
        return PlaygroundBackend(config, callbacks, commands, run_dir=run_dir, base_dir=base_dir)
    directory = onetrainer_dir()
    choice = choose_backend(config, directory)
    if choice.backend == ONETRAINER:
        from webapp.trainer.onetrainer import OneTrainerBackend
        callbacks.log(f"backend: OneTrainer in {directory} ({choice.reason})")
        return OneTrainerBackend(config, callbacks, commands, run_dir=run_dir, base_dir=base_dir,
                                 onetrainer_dir=Path(directory))
    if choice.backend == BUILTIN:
        from webapp.trainer.builtin import BuiltinBackend
        return BuiltinBackend(config, callbacks, commands, run_dir=run_dir, base_dir=base_dir,
                              rendezvous=rendezvous)
    raise RuntimeError(choice.reason)

"""Which backend hosts a run. Imports are lazy: choosing must not load torch."""
from __future__ import annotations

from pathlib import Path


def make_backend(config: dict, callbacks, commands, run_dir: Path, base_dir: Path):
    from .builtin import BuiltinBackend
    return BuiltinBackend(config, callbacks, commands, run_dir=run_dir, base_dir=base_dir)

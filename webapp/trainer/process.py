"""The trainer process: spawned by the worker, hosts one backend, talks only through two queues.

It is the only process that imports torch and the model libraries (through the backend).
A multi-GPU built-in run is N of these, one per rank (``rank``, ``world_size``, ``init_method``
say where the ranks meet); rank 0 reports and reads the commands, the others only report their
own failure, and log to ``trainer-rank<N>.log``.
"""
from __future__ import annotations

import contextlib
import errno
import importlib
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

from webapp.settings import LOG_NAME, import_notices_shown, rank_log_name
from webapp.trainer.callbacks import QueueCallbacks, RankCallbacks
from webapp.trainer.commands import TrainCommands


# what a trainer imports before it can load a model: ~2-5 s of a demo run's start on 2 CPU cores
PRELOAD = ("torch", "diffusers", "transformers", "peft", "webapp.trainer.backend_factory",
           "webapp.trainer.builtin.backend")


def warm_main(receive, events_queue, commands_queue, parent_pid: int) -> None:
    """A trainer process started before its run (worker/warm.py): it imports torch and the model
    libraries while the worker is idle, then waits on a pipe for the run it is handed (or None:
    exit). Always a single-rank run: the ranks of a multi-GPU run start as ``main``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent(parent_pid)
    with _import_notices(shown=import_notices_shown()):
        for name in PRELOAD:
            try:
                importlib.import_module(name)
            except ImportError:  # a missing extra shows up where the run needs it, in its log
                pass
    try:
        job = receive.recv()
    except (EOFError, OSError):
        job = None
    if job is None:
        os._exit(0)
    config, run_dir, base_dir = job
    main(config, run_dir, base_dir, events_queue, commands_queue, parent_pid, watching=True)


def main(config: dict, run_dir: str, base_dir: str, events_queue, commands_queue, parent_pid: int,
         rank: int = 0, world_size: int = 1, init_method: str = "", watching: bool = False) -> None:
    """watching: a warm trainer watches its parent already (a second watcher only wakes as often)."""
    # Ctrl-C in a terminal reaches the whole process group; the worker decides how to stop us
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    run_path = Path(run_dir)
    _log_to_file(run_path / (rank_log_name(rank) if rank else LOG_NAME))
    if not watching:
        _exit_with_parent(parent_pid)
    callbacks = RankCallbacks(events_queue, rank) if rank else QueueCallbacks(events_queue)
    commands = TrainCommands(commands_queue if rank == 0 else None)
    rendezvous = None
    if world_size > 1:
        from webapp.trainer.builtin.distributed import Rendezvous
        rendezvous = Rendezvous(rank, world_size, init_method)
    exit_code = 0
    try:
        from webapp.trainer.backend_factory import make_backend
        backend = make_backend(config, callbacks, commands, run_dir=run_path, base_dir=Path(base_dir),
                               rendezvous=rendezvous)
        try:
            backend.start()
            backend.train()
        finally:
            backend.end()
    except BaseException as exc:  # noqa: BLE001 - everything is reported, then the process ends
        trace = traceback.format_exc()
        try:
            print(trace, file=sys.stderr, flush=True)
        except OSError:
            pass  # the log's disk may be the full one: the event below still says what happened
        callbacks.error(message=error_message(exc, run_path), traceback=trace)
        exit_code = 1
    # make sure every event reached the pipe before the process goes (a held progress too)
    callbacks.flush()
    events_queue.close()
    events_queue.join_thread()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exit_code)


FULL_DISK_BYTES = 1 << 20  # less than this free where the run writes: a failed write is the full disk


def error_message(exc: BaseException, run_dir: Path) -> str:
    """What the run page says. A full disk names the place and what is left there: OSError's own
    text rarely names the file being written."""
    if _disk_full(exc) or _write_failed_on_a_full_disk(exc, run_dir):
        where = Path(exc.filename) if isinstance(exc, OSError) and exc.filename else run_dir
        try:
            free = shutil.disk_usage(where if where.exists() else run_dir).free
        except OSError:
            free = 0
        return (f"no space left on the disk holding {where} ({free / 2**20:.1f} MiB free): the run stopped; "
                "its newest complete backup is kept. Free some space, then resume it.")
    return f"{type(exc).__name__}: {exc}"


def _disk_full(exc: BaseException | None) -> bool:
    """ENOSPC, also as libraries report it (safetensors: "No space left on device (os error 28)")."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return True
        if "No space left on device" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _write_failed_on_a_full_disk(exc: BaseException, run_dir: Path) -> bool:
    """torch.save reports a full disk without ENOSPC ("[enforce fail at inline_container.cc] ...
    unexpected pos ..."): a failed write while the run folder's disk has (almost) nothing left is
    the full disk, whatever the message."""
    a_write = isinstance(exc, OSError) or isinstance(exc, RuntimeError) and "inline_container" in str(exc)
    if not a_write:
        return False
    try:
        return shutil.disk_usage(run_dir).free < FULL_DISK_BYTES
    except OSError:
        return False


@contextlib.contextmanager
def _import_notices(shown: bool):
    """A warm trainer imports before it has a run (and a log file): what the libraries print on import
    (transformers' torchvision fallback, bitsandbytes' build) reaches the worker's terminal. The first
    one's is shown; the next ones' (one per run) go nowhere, as the same words again."""
    if not shown:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)
    os.dup2(quiet, 2)
    os.close(quiet)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)


def _log_to_file(path: Path) -> None:
    """stdout and stderr (ours and native libraries') go to the run's log file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)


def _exit_with_parent(parent_pid: int) -> None:
    """If the worker dies (even by SIGKILL), the trainer must not live on as an orphan."""
    def watch():
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(3)
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()

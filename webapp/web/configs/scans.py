"""Dataset scans for the editor (and a queued run's dataset fingerprint), off the request path.

Counting a concept's images walks its folder: on a big or slow share that is seconds of blocking
file I/O, and under gevent one blocked request stalls every page and live stream of the process.
So a scan runs in a real OS thread (gevent's thread pool under gunicorn, a plain thread pool
otherwise), bounded by datasets.MAX_SCAN files, MAX_DEPTH levels and MAX_SCAN_S seconds, and its
answer is cached by folder and modification time. A request only looks in the cache: the editor
shows "scanning…" and fetches the figures with htmx when they are ready.
"""
from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from webapp.config.datasets import FolderStats, concept_folder, folder_stats

POOL_THREADS = 2
FRESH_S = 30.0          # a cached answer newer than this is used without looking at the folder again
MAX_ENTRIES = 512


def _mtime(folder) -> int | None:
    try:
        return os.stat(folder).st_mtime_ns
    except (OSError, TypeError):
        return None


class Scanner:
    def __init__(self, threads: int = POOL_THREADS):
        self.threads = threads
        self._lock = _real_lock()
        self._cache: dict[tuple, tuple[float, int | None, FolderStats]] = {}
        self._pending: dict[tuple, bool] = {}
        self._executor = None

    @staticmethod
    def key(concept: dict) -> tuple:
        text = concept.get("text") if isinstance(concept.get("text"), dict) else {}
        return (str(concept.get("path") or ""), concept.get("include_subdirectories") is True,
                str(text.get("prompt_source") or "sample"), str(text.get("prompt_path") or ""))

    def cached(self, concept: dict, base_dir, roots) -> FolderStats | None:
        """The cached figures (a scan starts when they are older than FRESH_S); None while the first
        scan of this folder runs."""
        key = (self.key(concept), str(base_dir), tuple(map(str, roots)))
        with self._lock:
            entry = self._cache.get(key)
            if entry is not None and time.monotonic() - entry[0] < FRESH_S:
                return entry[2]
            start = key not in self._pending
            if start:
                self._pending[key] = True
        if start:  # outside the lock: a full gevent pool makes spawn wait, and this lock is a real one
            try:
                self._submit(self._scan, key, dict(concept), base_dir, roots, entry)
            except BaseException:
                with self._lock:
                    self._pending.pop(key, None)
                raise
        # an older answer meanwhile (checked again in the background); none: "scanning…"
        return entry[2] if entry is not None else None

    def wait(self, concept: dict, base_dir, roots, timeout: float = 10.0) -> FolderStats | None:
        """For a route that needs the answer (a thumbnail): waits without blocking the event loop."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.cached(concept, base_dir, roots)
            if found is not None:
                return found
            time.sleep(0.05)  # gevent's sleep under gunicorn (monkey-patched): other requests go on
        return None

    def _scan(self, key, concept, base_dir, roots, previous) -> None:
        try:
            folder = concept_folder(concept, base_dir, roots)
            mtime = _mtime(folder) if folder is not None else None
            if previous is not None and previous[1] is not None and previous[1] == mtime:
                stats = previous[2]  # unchanged folder: the answer stands
            else:
                stats = folder_stats(concept, base_dir, roots)
            with self._lock:
                if len(self._cache) >= MAX_ENTRIES:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[key] = (time.monotonic(), mtime, stats)
        finally:
            with self._lock:
                self._pending.pop(key, None)

    def call(self, function, *args):
        """``function(*args)`` in one of gevent's real threads, waited for without blocking the
        event loop (its greenlet sleeps meanwhile); without gevent, here (a server thread blocks
        only itself)."""
        pool = gevent_pool()
        if pool is None:
            return function(*args)
        return pool.spawn(function, *args).get()

    def _submit(self, function, *args):
        pool = gevent_pool()
        if pool is not None:
            return pool.spawn(function, *args)
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="otweb-scan")
        return self._executor.submit(function, *args)


def gevent_pool():
    """gevent's pool of real threads when gevent patched this process (gunicorn -k gevent)."""
    try:
        from gevent import get_hub
        from gevent.monkey import is_module_patched
    except ImportError:
        return None
    return get_hub().threadpool if is_module_patched("threading") else None


def _real_lock():
    """A lock that works between a greenlet and a real thread (gevent's own would not)."""
    try:
        from gevent.monkey import get_original
        return get_original("threading", "Lock")()
    except ImportError:
        return threading.Lock()


def scanner(app) -> Scanner:
    found = app.extensions.get("otweb_scanner")
    if found is None:
        found = app.extensions["otweb_scanner"] = Scanner()
    return found

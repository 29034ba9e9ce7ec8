"""A run's dataset sent to the worker that takes it, when its concept folders are on this (the web's)
host: inside the web's read roots (its workspace, so its library ``datasets/``, and each
OTWEB_DATA_ROOTS folder), as validation resolves them. Through Redis, the one channel a worker
shares with the web, into the worker's own keys (settings.dataset_key; its ACL user reaches no other).

By content: the web writes the manifest (each file's relative path, size and sha256:
config/dataset_manifest.py) and records it as what the run trains on; the worker answers with the
sha256s it lacks (``want``: none when its own folder at the same path holds the same manifest, or
its cache holds every file); only those travel, in 256 KiB chunks, each file checked by sha256 as
it arrives (worker/dataset_receive.py). Flow control: at most WINDOW_CHUNKS chunks wait in Redis
(the worker pops them) and while Redis' append-only buffer holds less than AOF_BUFFER_MAX, so a
delivery adds ~20 MB to Redis' memory however large the dataset (bench_dataset_delivery.py).

Each delivery runs in a thread of its own (a greenlet under gevent); reading and hashing files run
in gevent's pool of real threads, never on the web's event loop. Whatever goes wrong is written to
the ``error`` key, which the worker turns into the run's failure reason."""
from __future__ import annotations

import json
import logging
import threading
import time
from contextlib import closing
from pathlib import Path

import redis

from webapp import store
from webapp.config.dataset_manifest import HashCache, concept_manifests
from webapp.config.datasets import concept_folder
from webapp.eventlog import file_chunks
from webapp.settings import dataset_key

log = logging.getLogger(__name__)
WINDOW_CHUNKS = 16        # chunks waiting in Redis at most (~350 KB of JSON each)
# Redis keeps what it has not yet written to its append-only file in a buffer (a 1 GB delivery at
# ~20 MB/s left 14.7 MB there, more than the window): the web pushes only while it holds less
AOF_BUFFER_MAX = 8 * 1024 * 1024
READ_BATCH = 2            # chunks per trip to the thread pool and per push: a 2.8 MB send blocked the loop > 50 ms under load
KEY_TTL_S = 3600          # a worker that never reads them does not leave them in Redis for ever
WANT_WAIT_S = 600.0       # the worker hashes its own copy (if any) before it answers
STALL_S = 120.0           # the worker took no chunk for this long: it is gone
POLL_S = 0.02
AOF_CHECK_S = 0.05


class DeliveryFailed(RuntimeError):
    pass


class DatasetDelivery:
    def __init__(self, redis_client: redis.Redis, database, workspace: Path):
        self.redis, self.database, self.workspace = redis_client, database, Path(workspace)
        self.hashes = HashCache(self.workspace / "cache" / "dataset-hashes.json")
        self.sent = {"files": 0, "bytes": 0, "deliveries": 0}
        self.peak_window = 0
        self._aof_checked, self._aof_bytes = float("-inf"), 0

    def offer(self, worker: str, assignment_id: str, run_id: int, config: dict) -> dict | None:
        """When some concept folder of the run is on this host: start sending it, and return what the
        assignment says about it (the worker waits for the manifest). None: nothing to send."""
        concepts = [c for c in config.get("concepts") or [] if isinstance(c, dict) and c.get("enabled") is not False]
        if not any(concept_folder(c, self.workspace) is not None for c in concepts):
            return None
        thread = threading.Thread(target=self._send, args=(worker, assignment_id, run_id, config),
                                  name=f"dataset-{assignment_id}", daemon=True)
        thread.start()
        return {"manifest": dataset_key(worker, assignment_id, "manifest")}

    def _send(self, worker: str, assignment_id: str, run_id: int, config: dict) -> None:
        key = lambda part: dataset_key(worker, assignment_id, part)  # noqa: E731
        try:
            manifests = off_loop(concept_manifests, config, self.workspace, self.hashes)
            with closing(store.connect(self.database)) as conn:
                store.dataset_manifests.record_run(conn, run_id, manifests)
            self.redis.set(key("manifest"), json.dumps({"concepts": [
                {k: entry[k] for k in ("concept", "path", "fingerprint", "files")} for entry in manifests]},
                separators=(",", ":")), ex=KEY_TTL_S)
            want = self._wait_want(key("want"))
            by_sha = {sha: Path(entry["folder"]) / rel for entry in manifests
                      for rel, (_size, sha) in entry["files"].items()}
            for sha in want:
                if sha not in by_sha:
                    raise DeliveryFailed(f"the worker asked for a file that is not in the dataset ({sha[:12]})")
                self._push_file(key("chunks"), by_sha[sha], sha)
            self.sent["deliveries"] += 1
        except (DeliveryFailed, OSError, ValueError, redis.RedisError) as exc:
            log.warning("dataset for run %s (worker %s) not sent: %s", run_id, worker, exc)
            try:
                self.redis.set(key("error"), f"the web could not send the dataset: {exc}", ex=KEY_TTL_S)
            except redis.RedisError:
                pass  # the worker gives up when no chunk comes

    def _wait_want(self, want_key: str) -> list[str]:
        deadline = time.monotonic() + WANT_WAIT_S
        while time.monotonic() < deadline:
            raw = self.redis.get(want_key)
            if raw is not None:
                want = json.loads(raw)
                if not isinstance(want, list) or not all(isinstance(s, str) for s in want):
                    raise DeliveryFailed("the worker's list of the files it lacks is malformed")
                return want
            time.sleep(0.1)  # gevent's sleep under gunicorn: pages go on
        raise DeliveryFailed(f"the worker did not say which files it lacks within {WANT_WAIT_S:.0f} s")

    def _push_file(self, chunks_key: str, path: Path, sha256: str) -> None:
        """The file's chunks, at most WINDOW_CHUNKS waiting in Redis; read in a real thread."""
        reader = file_chunks(path, sha256, digest=sha256)
        while batch := off_loop(_encoded, reader, READ_BATCH):
            stalled_since = time.monotonic()
            while (waiting := self.redis.llen(chunks_key)) + len(batch) > WINDOW_CHUNKS or self._aof_full():
                if time.monotonic() - stalled_since > STALL_S:
                    raise DeliveryFailed(f"the worker took no part of the dataset for {STALL_S:.0f} s")
                time.sleep(POLL_S)
            self.peak_window = max(self.peak_window, waiting + len(batch))
            pipe = self.redis.pipeline(transaction=False)
            pipe.rpush(chunks_key, *batch)
            pipe.expire(chunks_key, KEY_TTL_S)
            pipe.execute()
        self.sent["files"] += 1
        self.sent["bytes"] += path.stat().st_size


    def _aof_full(self) -> bool:
        """Whether Redis' append-only buffer is over AOF_BUFFER_MAX (read at most every AOF_CHECK_S)."""
        now = time.monotonic()
        if now - self._aof_checked >= AOF_CHECK_S:
            self._aof_checked = now
            try:
                self._aof_bytes = int(self.redis.info("memory").get("mem_aof_buffer") or 0)
            except redis.ResponseError:  # a Redis user without INFO: the window alone bounds it
                self._aof_bytes = 0
        return self._aof_bytes > AOF_BUFFER_MAX


def _encoded(reader, count: int) -> list[str]:
    out = []
    for chunk in reader:
        out.append(json.dumps(chunk, separators=(",", ":")))
        if len(out) >= count:
            break
    return out


def off_loop(function, *args):
    """``function(*args)`` in one of gevent's real threads when gevent patched this process (the
    calling greenlet waits; the event loop goes on); otherwise here (a plain thread already)."""
    try:
        from gevent import get_hub
        from gevent.monkey import is_module_patched
    except ImportError:
        return function(*args)
    if not is_module_patched("threading"):
        return function(*args)
    return get_hub().threadpool.spawn(function, *args).get()

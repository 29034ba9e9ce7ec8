"""The dataset of a run whose concept folders are on the web's host, received before the trainer
starts (the web's side: webapp/control/dataset_delivery.py). The worker reads the manifest, uses its
own folder where the same path holds the same content, answers with the sha256s neither that nor its
cache (worker/dataset_cache.py) holds, takes their chunks (each file checked by sha256 as it
arrives), and gives the trainer a config whose concept paths are the run's materialised copies.

Never a hang: a manifest that does not come, a silence in the chunks, the web's error, a corrupted
file: each is a DeliveryError, the run's failure reason."""
from __future__ import annotations

import json
import time

import redis

from webapp.config import paths
from webapp.config.dataset_manifest import HashCache, folder_manifest
from webapp.eventlog import UploadError
from webapp.settings import dataset_key
from webapp.worker.dataset_cache import DatasetCache

MANIFEST_WAIT_S = 300.0    # the web hashes the dataset first (once; after that from its cache)
CHUNK_WAIT_S = 120.0       # no chunk for this long: the web stopped sending
BLOCK_S = 2                # one BLPOP's wait (the client's socket timeout is longer)
PROGRESS_EVERY_S = 1.0
POP_BATCH = 8              # chunks taken per round trip after the first (Redis buffers the reply)


class DeliveryError(RuntimeError):
    pass


class DatasetReceiver:
    def __init__(self, client: redis.Redis, worker: str, cache: DatasetCache, data_dir, roots, status):
        """status(text): a status event of the run (its stages show it)."""
        self.redis, self.worker, self.cache, self.data_dir, self.roots = client, worker, cache, data_dir, roots
        self.status = status
        self.hashes = HashCache(cache.folder / "local-hashes.json")

    def receive(self, assignment: dict, config: dict) -> tuple[dict, dict]:
        """The config the trainer gets (concept paths on this host) and what happened: files, sent,
        bytes_sent, local (concepts used from this worker's own folder). Raises DeliveryError."""
        key = lambda part: dataset_key(self.worker, assignment["id"], part)  # noqa: E731
        try:
            manifest = self._manifest(key)
            concepts = config.get("concepts") or []
            local, needed = {}, {}
            for entry in manifest["concepts"]:
                own = self._own_copy(entry, concepts[entry["concept"]])
                if own is not None:
                    local[entry["concept"]] = own
                else:
                    needed.update({sha: size for size, sha in entry["files"].values()})
            missing = self.cache.missing(needed)
            self.cache.hold(assignment["run_id"], needed)
            self.redis.set(key("want"), json.dumps(missing), ex=3600)  # the web reads it, then it expires
            sent = self._take(key, {sha: needed[sha] for sha in missing})
        except (UploadError, OSError, ValueError, KeyError, TypeError, IndexError, redis.RedisError) as exc:
            raise DeliveryError(f"the dataset could not be received: {exc}") from exc
        finally:
            self._forget(key)
        concepts = [dict(c) if isinstance(c, dict) else c for c in concepts]
        try:
            for entry in manifest["concepts"]:
                folder = local.get(entry["concept"]) or self.cache.materialise(
                    assignment["run_id"], entry["concept"], entry["files"])
                concepts[entry["concept"]]["path"] = str(folder)
            self.cache.evict()
        except (UploadError, OSError) as exc:  # a full disk, a name that would leave the folder
            raise DeliveryError(f"the dataset could not be placed for the trainer: {exc}") from exc
        files = sum(len(e["files"]) for e in manifest["concepts"])
        outcome = {"files": files, "sent": len(missing), "bytes_sent": sent, "local": sorted(local)}
        # by content: two files with the same bytes (a caption used twice) travel once
        self.status(f"dataset ready: {files} files, {len(missing)} of {len(needed)} distinct sent "
                    f"({sent / 1e6:.1f} MB)" + (f", {len(local)} folder(s) of this worker's own used" if local else ""))
        return {**config, "concepts": concepts}, outcome

    def _manifest(self, key) -> dict:
        deadline = time.monotonic() + MANIFEST_WAIT_S
        while time.monotonic() < deadline:
            raw, error = self.redis.get(key("manifest")), self.redis.get(key("error"))
            if error:
                raise DeliveryError(error)
            if raw:
                manifest = json.loads(raw)
                if not isinstance(manifest.get("concepts"), list):
                    raise ValueError("a malformed manifest")
                return manifest
            time.sleep(0.1)
        raise DeliveryError(f"the web sent no manifest of the dataset within {MANIFEST_WAIT_S:.0f} s")

    def _own_copy(self, entry: dict, concept: dict):
        """This host's folder at the concept's path, when it holds exactly the manifest's files."""
        folder = paths.readable(entry["path"], self.data_dir, self.roots)
        if folder is None or not folder.is_dir():
            return None
        mine = folder_manifest(folder, concept.get("include_subdirectories") is True, self.hashes, self.roots)
        self.hashes.save()
        return folder if mine["fingerprint"] == entry["fingerprint"] else None

    def _take(self, key, wanted: dict) -> int:
        """Chunks until every wanted file is in the cache; returns the bytes received."""
        total_bytes, done, received, shown = sum(wanted.values()), 0, 0, 0.0
        heard = time.monotonic()
        while done < len(wanted):
            popped = self.redis.blpop([key("chunks")], timeout=BLOCK_S)
            if popped is None:
                if error := self.redis.get(key("error")):
                    raise DeliveryError(error)
                if time.monotonic() - heard > CHUNK_WAIT_S:
                    raise DeliveryError(f"no part of the dataset arrived for {CHUNK_WAIT_S:.0f} s "
                                        f"({done} of {len(wanted)} files had)")
                continue
            heard = time.monotonic()
            # the rest of what waits, in the same trip (the web keeps at most a window there)
            for raw in [popped[1]] + (self.redis.lpop(key("chunks"), POP_BATCH) or []):
                finished, length = self._write(json.loads(raw), wanted)
                received, done = received + length, done + finished
                if finished and (time.monotonic() - shown >= PROGRESS_EVERY_S or done == len(wanted)):
                    shown = time.monotonic()
                    self.status(f"sending dataset: {done} / {len(wanted)} files, "
                                f"{received / 1e6:.1f} MB of {total_bytes / 1e6:.1f} MB")
        return received

    def _write(self, chunk: dict, wanted: dict) -> tuple[bool, int]:
        sha = chunk.get("path")
        if sha not in wanted:
            raise DeliveryError(f"a chunk of a file this worker did not ask for ({str(sha)[:12]})")
        try:
            return self.cache.receive(chunk, sha, wanted[sha]), chunk.get("length") or 0
        except UploadError as exc:
            raise DeliveryError(f"a file of the dataset arrived corrupted and was refused: {exc}") from None

    def _forget(self, key) -> None:
        try:
            self.redis.delete(key("manifest"), key("chunks"), key("error"))
        except redis.RedisError:
            pass

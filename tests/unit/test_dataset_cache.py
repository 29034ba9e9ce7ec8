"""A worker's cache of the dataset files sent to it (issue 28, delivery): by sha256, each file
checked as it arrives, a size cap with least-recently-used eviction that never evicts a file a
run in progress holds, and a run's folder materialised from it."""
from __future__ import annotations

import hashlib
import os

import pytest

from webapp.eventlog import UploadError, file_chunks
from webapp.worker.dataset_cache import DatasetCache


def _put(cache: DatasetCache, tmp_path, content: bytes) -> str:
    sha = hashlib.sha256(content).hexdigest()
    source = tmp_path / f"src-{sha[:8]}"
    source.write_bytes(content)
    done = [cache.receive(chunk, sha, len(content)) for chunk in file_chunks(source, sha, digest=sha)]
    assert done[-1] is True and cache.blob(sha).read_bytes() == content
    return sha


def test_a_corrupted_chunk_is_refused_and_nothing_is_cached(tmp_path):
    cache = DatasetCache(tmp_path / "cache", 10**9)
    content = os.urandom(600_000)  # three chunks
    sha = hashlib.sha256(content).hexdigest()
    source = tmp_path / "src"
    source.write_bytes(content)
    chunks = list(file_chunks(source, sha, digest=sha))
    chunks[1]["data"] = chunks[1]["data"][::-1]                     # spoilt on the way
    with pytest.raises(UploadError):
        for chunk in chunks:
            cache.receive(chunk, sha, len(content))
    assert cache.missing([sha]) == [sha] and not any(cache.incoming.iterdir())
    with pytest.raises(UploadError):                                # a name that is not a sha256
        cache.receive(chunks[0], "../../etc/passwd", len(content))


def test_least_recently_used_goes_first_and_a_file_in_use_never(tmp_path):
    cache = DatasetCache(tmp_path / "cache", cap_bytes=2500)
    old, used, middle, new = (_put(cache, tmp_path, bytes([i]) * 1000) for i in range(4))
    for age, sha in enumerate((old, used, middle, new)):
        os.utime(cache.blob(sha), (1000 + age, 1000 + age))
    cache.hold(7, [old])                                            # a run in progress uses the oldest
    cache.materialise(8, 0, {"a.png": [1000, used]})                # used just now
    removed = cache.evict()
    assert removed == [middle, new]                                 # oldest unused first, down to the cap
    assert not cache.missing([old, used]) and cache.size() <= 2500
    cache.release(7)
    cache.cap_bytes = 0
    assert set(cache.evict()) == {old, used}


def test_a_runs_folder_is_copied_from_the_cache_and_removed_at_its_end(tmp_path):
    cache = DatasetCache(tmp_path / "cache", 10**9)
    image, caption = _put(cache, tmp_path, b"png bytes"), _put(cache, tmp_path, b"a caption")
    folder = cache.materialise(3, 1, {"sub/a.png": [9, image], "sub/a.txt": [9, caption]})
    assert (folder / "sub" / "a.txt").read_text() == "a caption"
    assert os.stat(folder / "sub" / "a.png").st_nlink == 1             # the trainer refuses a hard-linked file
    with pytest.raises(UploadError):
        cache.materialise(3, 2, {"../escape.png": [9, image]})
    cache.release(3)
    assert not (cache.runs / "3").exists() and not cache.missing([image, caption])

"""A dataset's content manifest (issue 28, versions): each file's size and sha256, hashed once per
(path, size, mtime); a content fingerprint that changes with any file; what changed since a run."""
from __future__ import annotations

import os

from webapp import store
from webapp.config.dataset_manifest import HashCache, changes, concept_manifests, describe, folder_manifest


def _dataset(folder, count=5):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"img{i}.png").write_bytes(bytes([i]) * (100 + i))
        (folder / f"img{i}.txt").write_text(f"a caption {i}")
    return folder


def test_a_rescan_of_an_unchanged_dataset_hashes_nothing_and_a_change_is_a_new_fingerprint(tmp_path):
    folder = _dataset(tmp_path / "ds")
    cache = HashCache(tmp_path / "hashes.json")
    first = folder_manifest(folder, False, cache)
    assert first["count"] == 10 and cache.hashed == 10
    assert first["files"]["img1.png"][0] == 101
    again = folder_manifest(folder, False, cache)
    assert cache.hashed == 10 and again["fingerprint"] == first["fingerprint"]   # nothing re-hashed
    cache.save()
    reloaded = HashCache(tmp_path / "hashes.json")                                # kept across restarts
    folder_manifest(folder, False, reloaded)
    assert reloaded.hashed == 0
    (folder / "img2.txt").write_text("another caption")
    changed = folder_manifest(folder, False, cache)
    assert cache.hashed == 11 and changed["fingerprint"] != first["fingerprint"]


def test_a_touched_but_equal_file_keeps_the_fingerprint(tmp_path):
    folder = _dataset(tmp_path / "ds")
    cache = HashCache()
    first = folder_manifest(folder, False, cache)
    os.utime(folder / "img0.png", ns=(1, 1))
    assert folder_manifest(folder, False, cache)["fingerprint"] == first["fingerprint"] and cache.hashed == 11


def test_what_changed_since_a_run_counts_files_added_removed_and_captions_changed(tmp_path):
    folder = _dataset(tmp_path / "ds")
    cache = HashCache()
    before = folder_manifest(folder, False, cache)["files"]
    for i in range(3):
        (folder / f"new{i}.png").write_bytes(b"new" * (i + 1))
    (folder / "img4.png").unlink()
    for i in range(2):
        (folder / f"img{i}.txt").write_text("fixed")
    (folder / "img3.png").write_bytes(b"retouched")
    change = changes(before, folder_manifest(folder, False, cache)["files"])
    assert change == {"added": 3, "removed": 1, "captions_changed": 2, "files_changed": 1}
    assert describe(change) == "3 files added, 1 removed, 2 captions changed, 1 file changed"
    assert describe(changes(before, before)) == "unchanged"


def test_a_run_records_its_manifest_once_by_fingerprint(app, workspace):
    _dataset(workspace / "datasets" / "mine")
    config = {"concepts": [{"path": "datasets/mine"}, {"path": "/nowhere", "enabled": True},
                           {"path": "datasets/mine", "enabled": False}]}
    manifests = concept_manifests(config, workspace, HashCache())
    assert [m["concept"] for m in manifests] == [0]                 # readable here, enabled
    conn = store.connect(app.config["DATABASE"])
    run_a, run_b = store.create_run(conn, "a", config), store.create_run(conn, "b", config)
    store.dataset_manifests.record_run(conn, run_a, manifests)
    store.dataset_manifests.record_run(conn, run_b, manifests)
    (recorded,) = store.dataset_manifests.of_run(conn, run_a)
    assert recorded["fingerprint"] == manifests[0]["fingerprint"] and recorded["files"] == manifests[0]["files"]
    assert conn.execute("SELECT COUNT(*) FROM dataset_manifests").fetchone()[0] == 1
    conn.close()


def test_the_run_and_model_version_pages_say_what_changed_since_the_run(app, client, workspace):
    folder = _dataset(workspace / "datasets" / "mine", count=3)
    config = {"concepts": [{"path": "datasets/mine"}], "base_model_name": "m"}
    conn = store.connect(app.config["DATABASE"])
    run_id = store.create_run(conn, "mine", config)
    store.dataset_manifests.record_run(conn, run_id, concept_manifests(config, workspace, HashCache()))
    with conn:
        version_id = store.model_versions.register(conn, run_id, {"kind": "output", "path": "out.safetensors"}, {}, 1.0)
    conn.close()
    assert "since this run: unchanged" in client.get(f"/runs/{run_id}").get_data(as_text=True)
    (folder / "extra.png").write_bytes(b"new")
    (folder / "img1.txt").write_text("fixed caption")
    said = "since this run: 1 file added, 1 caption changed"
    assert said in client.get(f"/runs/{run_id}").get_data(as_text=True)
    assert said in client.get(f"/models/{version_id}").get_data(as_text=True)

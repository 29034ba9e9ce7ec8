"""Issue 28, upload: chunked and resumable uploads into a library dataset, with hostile input:
archives whose entries escape or link, bombs (by ratio and by size), broken images, quotas."""
from __future__ import annotations

import os

import pytest

from support import dataset_files as df
from support.apps import make_app


@pytest.fixture
def small_app(workspace, config_dir, redis_url, redis_server):
    """Quotas small enough to pass in a test: 200 kB a dataset, 300 kB all of them."""
    redis_server.flushall()
    return make_app(workspace, config_dir, redis_url, DATASET_MAX_BYTES=200_000, DATASETS_TOTAL_MAX_BYTES=300_000)


def created(client, name="faces"):
    assert client.post("/api/datasets", json={"name": name}).status_code == 201
    return name


def dataset_files(workspace, name="faces") -> list[str]:
    folder = workspace / "datasets" / name
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_upload_stores_images_and_captions_lists_broken_and_skipped(client, workspace):
    created(client)
    state = df.upload(client, "faces", {"a.png": df.image_bytes(), "a.txt": b"a cat", "sub/b.jpg": df.image_bytes(fmt="JPEG"),
                                        "c.png": df.broken_image(), "notes.exe": b"MZ"})
    assert state["complete"] and state["stored"] == 3
    assert [b["path"] for b in state["broken"]] == ["c.png"]
    assert [s["path"] for s in state["skipped"]] == ["notes.exe"]
    assert dataset_files(workspace) == ["a.png", "a.txt", "sub/b.jpg"]
    listed = client.get("/api/datasets/faces").get_json()
    assert listed["stats"]["images"] == 2 and listed["stats"]["captioned"] == 1


def test_archives_of_each_kind_are_unpacked(client, workspace):
    created(client)
    entries = {"x/one.png": df.image_bytes(), "x/one.txt": b"one", "bad.png": df.broken_image(), "read.me": b"?"}
    state = df.upload(client, "faces", {"a.zip": df.zip_bytes(entries), "b.tar.gz": df.tar_bytes({"two.png": df.image_bytes()}),
                                        "c.tar": df.tar_bytes({"three.webp": df.image_bytes(fmt="WEBP")}, compression="")})
    assert state["stored"] == 4 and [b["path"] for b in state["broken"]] == ["bad.png"]
    assert dataset_files(workspace) == ["three.webp", "two.png", "x/one.png", "x/one.txt"]


@pytest.mark.parametrize("archive", [
    df.zip_bytes({"../escaped.png": b"x"}),
    df.zip_bytes({"/etc/absolute.png": b"x"}),
    df.zip_bytes({"ok.png": df.image_bytes()}, symlinks={"link.png": "/etc/passwd"}),
    df.tar_bytes({"a/../../escaped.png": b"x"}),
    df.tar_bytes({"ok.png": df.image_bytes()}, symlinks={"link.png": "/etc/passwd"}),
], ids=["zip-dotdot", "zip-absolute", "zip-symlink", "tar-dotdot", "tar-symlink"])
def test_an_archive_with_an_escaping_entry_is_refused_whole(client, workspace, archive):
    created(client)
    state = df.upload(client, "faces", {"pack.zip" if archive[:2] == b"PK" else "pack.tar.gz": archive})
    assert state["stored"] == 0 and len(state["refused"]) == 1, state
    assert "nothing was extracted" in state["refused"][0]["why"]
    assert dataset_files(workspace) == []
    assert not (workspace / "datasets" / "escaped.png").exists() and not (workspace / "escaped.png").exists()


def test_a_bomb_by_ratio_is_refused_before_extraction(client, workspace):
    created(client)
    bomb = df.zip_bytes({"zeros.png": bytes(20_000_000)})  # 20 MB of zeros in about 20 kB
    assert len(bomb) < 100_000
    state = df.upload(client, "faces", {"bomb.zip": bomb})
    assert "compression bomb" in state["refused"][0]["why"]
    assert dataset_files(workspace) == [] and not list((workspace / ".dataset-uploads").rglob("zeros.png"))


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_a_bomb_by_size_is_refused_with_413(workspace, config_dir, redis_url, redis_server, kind):
    redis_server.flushall()
    app = make_app(workspace, config_dir, redis_url, DATASET_MAX_BYTES=100_000, ARCHIVE_MAX_RATIO=1e9)
    client = app.test_client()
    created(client)
    entries = {"big.png": bytes(1_000_000)}
    archive = df.zip_bytes(entries) if kind == "zip" else df.tar_bytes(entries)
    listed = [{"path": f"a.{kind}", "size": len(archive)}]
    state = client.post("/api/datasets/faces/uploads", json={"files": listed}).get_json()
    assert client.put(f"/api/datasets/faces/uploads/{state['id']}/0/0", data=archive).status_code == 200
    answer = df.completed(client, "faces", state["id"])["files"][0]
    assert answer["result"]["status"] == 413 and "room for 0.1 MB" in answer["result"]["refused"]
    assert dataset_files(workspace) == []


def test_quotas_answer_413_and_507_with_the_figures(small_app, workspace):
    client = small_app.test_client()
    created(client, "one")
    created(client, "two")
    too_big = client.post("/api/datasets/one/uploads", json={"files": [{"path": "a.png", "size": 250_000}]})
    assert too_big.status_code == 413
    assert "0.2 MB" in too_big.get_json()["detail"] and "OTWEB_MAX_DATASET_MB" in too_big.get_json()["detail"]
    first = client.post("/api/datasets/one/uploads", json={"files": [{"path": "a.png", "size": 180_000}]})
    assert first.status_code == 201  # not sent yet, but counted against the total while it arrives
    over_total = client.post("/api/datasets/two/uploads", json={"files": [{"path": "b.png", "size": 150_000}]})
    assert over_total.status_code == 507 and "OTWEB_MAX_DATASETS_MB" in over_total.get_json()["detail"]


def test_a_chunk_resent_is_a_no_op_and_a_gap_is_409_with_what_arrived(client, workspace):
    created(client)
    data = df.image_bytes(64, 64)
    state = client.post("/api/datasets/faces/uploads", json={"files": [{"path": "a.png", "size": len(data)}]}).get_json()
    base = f"/api/datasets/faces/uploads/{state['id']}/0"
    assert client.put(f"{base}/0", data=data[:5000]).get_json()["received"] == 5000
    assert client.put(f"{base}/0", data=data[:5000]).get_json()["received"] == 5000  # the answer was lost: sent again
    gap = client.put(f"{base}/9000", data=data[9000:])
    assert gap.status_code == 409 and gap.get_json()["detail"]["received"] == 5000
    resumed = client.get(f"/api/datasets/faces/uploads/{state['id']}").get_json()
    assert resumed["received"] == 5000 and not resumed["complete"]
    assert client.put(f"{base}/5000", data=data[5000:]).get_json()["received"] == len(data)
    assert client.put(f"{base}/5000", data=data[5000:]).get_json()["received"] == len(data)  # while it is checked, too
    assert df.completed(client, "faces", state["id"])["stored"] == 1
    assert (workspace / "datasets" / "faces" / "a.png").read_bytes() == data


@pytest.mark.parametrize("name", ["../a.png", "/abs.png", "sub/../../a.png", ".hidden/a.png", "a\0.png"])
def test_names_stay_inside_the_dataset(client, name):
    created(client)
    answer = client.post("/api/datasets/faces/uploads", json={"files": [{"path": name, "size": 3}]})
    assert answer.status_code == 400 and answer.get_json()["error"] == "invalid file name"


def test_a_chunk_past_the_declared_size_is_refused(client, workspace):
    created(client)
    state = client.post("/api/datasets/faces/uploads", json={"files": [{"path": "a.png", "size": 10}]}).get_json()
    answer = client.put(f"/api/datasets/faces/uploads/{state['id']}/0/0", data=b"x" * 20)
    assert answer.status_code == 400 and dataset_files(workspace) == []


def test_a_read_only_dataset_takes_no_upload(workspace, config_dir, redis_url, redis_server, tmp_path):
    redis_server.flushall()
    root = tmp_path / "share"
    df.write_dataset(root / "shared", 2)
    client = make_app(workspace, config_dir, redis_url, DATA_ROOTS=[root]).test_client()
    listed = client.get("/api/datasets").get_json()["datasets"]
    assert [(d["key"], d["writable"], d["stats"]["images"]) for d in listed] == [("1~shared", False, 2)]
    answer = client.post("/api/datasets/1~shared/uploads", json={"files": [{"path": "a.png", "size": 3}]})
    assert answer.status_code == 403
    assert sorted(os.listdir(root / "shared")) == ["img0000.png", "img0000.txt", "img0001.png", "img0001.txt"]

"""Issue 28, library and "browse and fix": create, rename, delete (refused while a run uses the
dataset), the figures, captions edited inline (409 when changed since loaded), bulk changes with a
preview and an undo, the grid's filters, pages and thumbnails, roles."""
from __future__ import annotations

import re

import pytest

from support import dataset_files as df
from support.accounts import login
from webapp import store
from webapp.web.datasets.grid import PAGE_SIZE


@pytest.fixture
def faces(client, workspace):
    """A library dataset of 6 captioned images."""
    assert client.post("/api/datasets", json={"name": "faces"}).status_code == 201
    df.write_dataset(workspace / "datasets" / "faces", 6)
    return workspace / "datasets" / "faces"


def images(client, **query) -> list[dict]:
    return client.get("/api/datasets/faces/images", query_string=query).get_json()["images"]


def test_create_rename_delete_and_their_refusals(client, workspace):
    assert client.post("/api/datasets", json={"name": "../up"}).status_code == 400
    assert client.post("/api/datasets", json={"name": "faces"}).status_code == 201
    assert client.post("/api/datasets", json={"name": "faces"}).status_code == 409
    assert client.post("/api/datasets/faces/rename", json={"name": "people"}).status_code == 200
    assert (workspace / "datasets" / "people").is_dir() and not (workspace / "datasets" / "faces").exists()
    assert client.get("/api/datasets/faces").status_code == 404
    assert client.delete("/api/datasets/people").status_code == 204
    assert client.get("/api/datasets").get_json()["datasets"] == []


def test_delete_and_rename_are_refused_while_a_queued_run_uses_it(app, client, faces, config_dir):
    (config_dir / "uses.json").write_text('{"concepts": [{"path": "datasets/faces"}]}')
    conn = store.connect(app.config["DATABASE"])
    run_id = store.create_run(conn, "uses", {"concepts": [{"path": str(faces)}]})
    conn.commit()
    described = client.get("/api/datasets/faces").get_json()
    assert described["used_by"]["configs"] == ["uses"] and described["used_by"]["runs"][0]["id"] == run_id
    refused = client.delete("/api/datasets/faces")
    assert refused.status_code == 409 and f"#{run_id} (queued)" in refused.get_json()["detail"]
    assert client.post("/api/datasets/faces/rename", json={"name": "other"}).status_code == 409
    assert faces.is_dir()
    conn.execute("UPDATE runs SET state = 'finished' WHERE id = ?", (run_id,))
    conn.commit()
    assert client.delete("/api/datasets/faces").status_code == 204


def test_the_figures(client, faces):
    (faces / "img0000.txt").unlink()
    (faces / "big.png").write_bytes(df.image_bytes(600, 520))
    (faces / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    stats = client.get("/api/datasets/faces").get_json()["stats"]
    assert (stats["images"], stats["captioned"], stats["unreadable"]) == (8, 5, 1)
    assert stats["histogram"]["< 512"] == 6 and stats["histogram"]["512-767"] == 1
    assert stats["bytes"] > 600 * 520 * 3 and stats["newest_change"] > 0


def test_the_library_page_counts_in_the_background(client, faces):
    from support.polling import wait_for
    assert "faces" in client.get("/datasets").get_data(as_text=True)  # the figures as last counted: never a wait
    listed = wait_for(lambda: "6 (100%)" in (text := client.get("/datasets/list").get_data(as_text=True)) and text,
                      30, "the figures")
    assert "6 (100%)" in listed and 'data-count="6"' in listed  # six captioned, six in one histogram bar


def test_a_caption_saved_over_a_newer_one_is_refused_with_409(client, faces):
    first = images(client)[0]
    saved = client.put("/api/datasets/faces/caption", json={"image": first["path"], "caption": "fixed", "token": first["token"]})
    assert saved.status_code == 200 and (faces / "img0000.txt").read_text() == "fixed"
    stale = client.put("/api/datasets/faces/caption", json={"image": first["path"], "caption": "mine", "token": first["token"]})
    assert stale.status_code == 409 and (faces / "img0000.txt").read_text() == "fixed"
    assert images(client)[0]["caption"] == "fixed"
    assert client.put("/api/datasets/faces/caption", json={"image": "nope.png", "caption": "x"}).status_code == 404


def test_the_caption_form_keeps_the_text_typed_on_a_conflict(client, faces):
    first = images(client)[0]
    (faces / "img0000.txt").write_text("changed elsewhere")
    answer = client.post("/datasets/faces/caption", data={"image": first["path"], "caption": "typed here", "token": first["token"]},
                         headers={"HX-Request": "true"})
    assert answer.status_code == 409
    assert "typed here" in answer.get_data(as_text=True) and "changed since it was loaded" in answer.get_data(as_text=True)


def test_bulk_trigger_word_preview_apply_and_undo(client, faces):
    (faces / "img0005.txt").unlink()
    preview = client.post("/api/datasets/faces/bulk", json={"op": "trigger", "word": "ohwx", "preview": True}).get_json()
    assert preview == {"changes": 6, "selected": 6}
    assert (faces / "img0001.txt").read_text() == "a photo, number 1"  # a preview writes nothing
    assert client.post("/api/datasets/faces/bulk", json={"op": "trigger", "word": "ohwx"}).get_json()["changed"] == 6
    assert (faces / "img0001.txt").read_text() == "ohwx, a photo, number 1"
    assert (faces / "img0005.txt").read_text() == "ohwx"
    (faces / "img0002.txt").write_text("edited after")
    undone = client.post("/api/datasets/faces/undo").get_json()
    assert undone == {"restored": 5, "changed_since": ["img0002.txt"]}
    assert (faces / "img0001.txt").read_text() == "a photo, number 1" and not (faces / "img0005.txt").exists()
    assert (faces / "img0002.txt").read_text() == "edited after"
    assert client.post("/api/datasets/faces/undo").status_code == 409  # nothing left to undo


def test_bulk_replace_and_remove_tag_over_the_filtered_set(client, faces):
    changed = client.post("/api/datasets/faces/bulk?text=number 1", json={"op": "replace", "find": "photo", "replace": "drawing"})
    assert changed.get_json() == {"changed": 1, "selected": 1}
    assert (faces / "img0001.txt").read_text() == "a drawing, number 1"
    assert client.post("/api/datasets/faces/bulk", json={"op": "trigger", "word": "ohwx", "where": "end"}).get_json()["changed"] == 6
    assert (faces / "img0003.txt").read_text() == "a photo, number 3, ohwx"
    tags = client.get("/api/datasets/faces/tags").get_json()["tags"]
    assert {"tag": "ohwx", "count": 6} in tags
    assert client.post("/api/datasets/faces/bulk", json={"op": "remove_tag", "tag": "OHWX"}).get_json()["changed"] == 6
    assert (faces / "img0003.txt").read_text() == "a photo, number 3"
    assert client.post("/api/datasets/faces/bulk", json={"op": "explode"}).status_code == 400


def test_filters(client, faces):
    (faces / "img0001.txt").unlink()
    (faces / "copy.png").write_bytes((faces / "img0002.png").read_bytes())
    (faces / "big.png").write_bytes(df.image_bytes(64, 64))
    (faces / "broken.png").write_bytes(df.broken_image())
    names = lambda **query: [image["path"] for image in images(client, **query)]  # noqa: E731
    assert names(text="NUMBER 3") == ["img0003.png"]
    assert names(missing="1") == ["big.png", "broken.png", "copy.png", "img0001.png"]
    assert "big.png" not in names(smaller="40") and "img0000.png" in names(smaller="40")
    assert names(duplicates="1") == ["copy.png", "img0002.png"]
    assert names(unreadable="1") == ["broken.png"]
    assert client.get("/api/datasets/faces/images?smaller=huge").status_code == 400


def test_the_page_weight_does_not_grow_with_the_dataset(client, workspace):
    weights = []
    for name, count in (("small", PAGE_SIZE + 2), ("large", 8 * PAGE_SIZE)):
        client.post("/api/datasets", json={"name": name})
        df.write_dataset(workspace / "datasets" / name, count, size=8)
        page = client.get(f"/datasets/{name}").get_data(as_text=True)
        assert len(re.findall(r'class="dataset-image', page)) == PAGE_SIZE
        weights.append(len(page))
    assert abs(weights[1] - weights[0]) < 0.02 * weights[0]


def test_thumbnails_are_made_once_and_kept(client, faces, workspace):
    first = client.get("/datasets/faces/thumbnail/img0000.png")
    assert first.status_code == 200 and first.mimetype == "image/jpeg"
    kept = list((workspace / "workspace-cache" / "dataset-thumbnails").rglob("*.jpg"))
    assert len(kept) == 1
    stamp = kept[0].stat().st_mtime_ns
    assert client.get("/datasets/faces/thumbnail/img0000.png").data == first.data
    assert kept[0].stat().st_mtime_ns == stamp
    assert client.get("/datasets/faces/thumbnail/../../otweb.sqlite3").status_code == 404


def test_viewers_see_operators_change(auth_app, workspace):
    df.write_dataset(workspace / "datasets" / "faces", 2)
    viewer = auth_app.test_client()
    csrf = login(viewer, "vera")
    assert viewer.get("/datasets").status_code == 200 and "faces" in viewer.get("/datasets").get_data(as_text=True)
    assert viewer.post("/api/datasets", json={"name": "mine"}, headers={"X-CSRF-Token": csrf}).status_code == 403
    assert viewer.post("/api/datasets/faces/bulk", json={"op": "trigger", "word": "x"},
                       headers={"X-CSRF-Token": csrf}).status_code == 403
    operator = auth_app.test_client()
    csrf = login(operator, "otto")
    assert operator.post("/api/datasets", json={"name": "mine"}, headers={"X-CSRF-Token": csrf}).status_code == 201
    assert 'href="/datasets"' in operator.get("/").get_data(as_text=True)  # the nav menu's entry

"""The samples API and pages on records alone (no trainer): listing, metadata, images through ids
only (ETag, cache headers, thumbnails), path traversal, field errors, 409 with nothing to sample."""
from __future__ import annotations

import pytest
from PIL import Image

from webapp import store
from webapp.protocol import make_event


@pytest.fixture
def records(app, workspace):
    """A run with two prompts sampled at steps 2 and 4, and one custom sample."""
    conn = store.connect(app.config["DATABASE"])
    store.init_schema(conn)
    run_id = store.create_run(conn, "demo", {"base_model_name": "models/x", "training_method": "LORA"})
    run_dir = app.config["SETTINGS"].run_dir(run_id)
    ids = []
    for step, prompt, kind, color in ((2, "a red circle", "sample_default", "red"),
                                      (2, "a blue square", "sample_default", "blue"),
                                      (4, "a red circle", "sample_default", "orange"),
                                      (4, "a blue square", "sample_default", "navy"),
                                      (5, "a green star", "sample_custom", "green")):
        path = run_dir / "samples" / kind.removeprefix("sample_") / f"{step}-{len(ids)}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 64), color).save(path)
        event = store.append_event(conn, run_id, make_event(
            kind, path=path.relative_to(run_dir).as_posix(), prompt=prompt, seed=1, steps=4, cfg_scale=3.0,
            width=64, height=64, noise_scheduler="DDIM", bytes=path.stat().st_size, global_step=step, epoch=0))
        ids.append(event["data"]["sample_id"])
    return run_id, ids, conn


def test_list_latest_and_metadata(client, records):
    run_id, ids, _ = records
    listed = client.get(f"/api/samples/list?run={run_id}").json
    assert [s["id"] for s in listed["samples"]] == ids[::-1]  # newest first
    assert [s["id"] for s in client.get(f"/api/samples/list?run={run_id}&prompt=RED").json["samples"]] == [ids[2], ids[0]]
    assert [s["kind"] for s in client.get(f"/api/samples/list?run={run_id}&kind=custom").json["samples"]] == ["custom"]
    assert [s["id"] for s in client.get("/api/samples/latest?count=2").json["samples"]] == [ids[4], ids[3]]
    meta = client.get(f"/api/samples/{ids[0]}").json
    assert meta["run_id"] == run_id and meta["global_step"] == 2 and meta["kind"] == "default"
    assert meta["prompt"] == "a red circle" and meta["settings"]["seed"] == 1
    assert meta["size"]["width"] == 64 and meta["size"]["bytes"] > 0 and meta["created_at"] > 0
    assert client.get(meta["image_url"]).status_code == 200


def test_bad_parameters_name_the_field(client, records):
    for url, field in (("/api/samples/list", "run"), ("/api/samples/list?run=x", "run"),
                       ("/api/samples/list?run=1&kind=odd", "kind"), ("/api/samples/latest?count=0", "count"),
                       ("/api/samples/latest?count=abc", "count"), (f"/api/samples/{records[1][0]}/thumbnail?size=7", "size")):
        answer = client.get(url)
        assert answer.status_code == 400, url
        assert answer.json["detail"][0]["field"] == field
    assert client.get("/api/samples/list?run=999").status_code == 404
    answer = client.post("/api/samples/custom", json={"prompt": "x", "noise_scheduler": "WARP"})
    assert answer.status_code == 400 and answer.json["detail"][0]["field"] == "noise_scheduler"
    answer = client.post("/api/samples/custom", json={"prompt": "x", "lora_scale": 9})
    assert answer.status_code == 400 and answer.json["detail"][0]["field"] == "lora_scale"


def test_requests_with_nothing_running_are_409(client, records):
    assert client.post("/api/samples/default", json={}).status_code == 409
    assert client.post("/api/samples/custom", json={"prompt": "a cat"}).status_code == 409
    answer = client.post("/api/samples/custom", json={"prompt": "a cat", "playground": True})
    assert answer.status_code == 409 and answer.json["error"] == "no playground is open"
    assert client.post("/api/playground/close").status_code == 409


def test_image_etag_cache_and_thumbnail(client, records, app):
    _, ids, _ = records
    image = client.get(f"/api/samples/{ids[0]}/image")
    assert image.status_code == 200 and image.data[:8] == b"\x89PNG\r\n\x1a\n"
    assert "max-age=86400" in image.headers["Cache-Control"] and image.headers["ETag"]
    assert client.get(f"/api/samples/{ids[0]}/image", headers={"If-None-Match": image.headers["ETag"]}).status_code == 304
    thumb = client.get(f"/api/samples/{ids[0]}/thumbnail?size=256")
    assert thumb.status_code == 200 and thumb.headers["ETag"]
    from io import BytesIO
    assert Image.open(BytesIO(thumb.data)).size == (256, 256)
    assert (app.config["SETTINGS"].run_dir(records[0]) / "samples" / ".thumbs" / f"{ids[0]}-256.png").is_file()


def test_traversal_and_guessed_ids_read_nothing(client, records, workspace):
    run_id, ids, conn = records
    secret = workspace / "otweb-secret.png"
    Image.new("RGB", (8, 8)).save(secret)
    outside = workspace.parent / "outside.png"
    Image.new("RGB", (8, 8)).save(outside)
    for bad in ("../../otweb-secret.png", str(outside), "samples/../../../outside.png", "samples/default"):
        conn.execute("UPDATE samples SET path = ? WHERE id = ?", (bad, ids[0]))
        for suffix in ("image", "thumbnail"):
            answer = client.get(f"/api/samples/{ids[0]}/{suffix}")
            assert answer.status_code == 404 and b"PNG" not in answer.data, bad
    for url in ("/api/samples/99999/image", "/api/samples/0/image", "/api/samples/-1/image",
                "/api/samples/..%2F..%2Fotweb.sqlite3/image", "/api/samples/../otweb.sqlite3",
                f"/api/samples/{ids[1]}/image/../../../otweb.sqlite3", "/api/samples/1e3/image"):
        answer = client.get(url)
        assert answer.status_code == 404, url
        assert b"SQLite" not in answer.data and b"PNG" not in answer.data
    assert not list((workspace.parent).glob("*.thumbs*"))


def test_gallery_grid_large_view_and_compare(client, records):
    run_id, ids, _ = records
    page = client.get(f"/runs/{run_id}/samples").get_data(as_text=True)
    assert "step 2" in page and "step 4" in page and "a blue square" in page
    assert page.count('class="grid-cell"') == 5
    grid = client.get(f"/runs/{run_id}/samples/grid?prompt=blue").get_data(as_text=True)
    assert "a blue square" in grid and "a red circle" not in grid
    large = client.get(f"/samples/{ids[0]}").get_data(as_text=True)
    assert "a red circle" in large and "Scheduler" in large and f'value="{ids[2]}"' in large
    compare = client.get(f"/samples/compare?a={ids[0]}&b={ids[2]}").get_data(as_text=True)
    assert compare.count('class="sample-large"') == 2
    assert client.get(f"/samples/compare?a={ids[0]}&b=x").status_code == 400
    assert client.get(f"/samples/compare?a={ids[0]}&b=99999").status_code == 404
    assert client.get("/runs/99999/samples").status_code == 404


def test_playground_lists_only_recorded_loras(client, records, app, workspace):
    run_id, _, conn = records
    assert "No trained LoRA yet" in client.get("/playground").get_data(as_text=True)
    output = app.config["SETTINGS"].run_dir(run_id) / "lora.safetensors"
    output.write_bytes(b"x")
    conn.execute("UPDATE runs SET state = 'completed', output_path = ? WHERE id = ?", (str(output), run_id))
    fine_tune = store.create_run(conn, "ft", {"base_model_name": "models/x", "training_method": "FINE_TUNE"})
    model = app.config["SETTINGS"].run_dir(fine_tune) / "model.safetensors"
    model.parent.mkdir(parents=True, exist_ok=True)
    model.write_bytes(b"x")
    conn.execute("UPDATE runs SET state = 'completed', output_path = ? WHERE id = ?", (str(model), fine_tune))
    sources = client.get("/api/playground").json["sources"]  # a fine-tune is no LoRA to open
    assert [s["key"] for s in sources] == [f"{run_id}:0"] and "path" not in sources[0]
    answer = client.post("/api/playground/open", json={"source": "/etc/passwd"})
    assert answer.status_code == 400 and answer.json["detail"][0]["field"] == "source"
    answer = client.post("/api/playground/open", json={"source": f"{run_id}:0", "idle_s": 30})
    assert answer.status_code == 202
    session = client.get("/api/playground").json["session"]
    assert session["state"] == "queued"
    assert client.post("/api/playground/open", json={"source": f"{run_id}:0"}).status_code == 409
    assert client.post("/api/samples/custom", json={"prompt": "x", "playground": True}).status_code == 409
    assert client.post("/api/playground/close").status_code == 202  # canceled while queued
    assert client.get("/api/playground").json["session"] is None


def test_config_sample_settings(demo_config, demo_workspace):
    from webapp.config.builtin.train_settings import ConfigError, TrainSettings
    settings = TrainSettings.from_config({**demo_config, "sample_before_training": True}, demo_workspace[0])
    assert settings.sample_before_training and settings.samples_to_tensorboard
    assert settings.samples[0].noise_scheduler == "DDIM"
    bad = {**demo_config, "samples": [demo_config["samples"][0], {**demo_config["samples"][1], "noise_scheduler": "WARP"}]}
    with pytest.raises(ConfigError) as caught:
        TrainSettings.from_config(bad, demo_workspace[0])
    assert caught.value.errors[0]["field"] == "samples[1].noise_scheduler"

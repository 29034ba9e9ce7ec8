"""Model versions: registered from the recorded events (as any worker host's events are), found
once for runs recorded before them, listed, filtered, tagged, downloaded with their sha256 and
deleted with their file, by role; a version whose file is gone says so."""
from __future__ import annotations

import hashlib
import json

import pytest

from support.accounts import login
from support.model_runs import CONFIG, record_run as _record_run
from webapp import store
from webapp.protocol import Event, make_event


def test_versions_are_registered_from_events_with_their_lineage(app, client):
    run_id, paths = _record_run(app)
    versions = client.get("/api/models").get_json()["versions"]
    assert [(v["kind"], v["path"], v["global_step"], v["loss"]) for v in versions] == [
        ("output", "models/lora-a.safetensors", 12, 0.3), ("backup", "backups/t-step6", 6, 0.4),
        ("save", "saves/lora-step4.safetensors", 4, 0.5)]
    assert all(v["model"] == "lora-a" and v["run_id"] == run_id and v["exists"] and v["started_by"] == "otto"
               and v["base_model"] == "models/tiny-sd15" and v["method"] == "LORA" for v in versions)
    assert versions[1]["backup"] and not versions[0]["backup"]
    save = versions[2]
    assert save["samples"][0]["prompt"] == "a square" and save["samples"][0]["global_step"] == 4
    detail = client.get(f"/api/models/{save['id']}").get_json()["version"]
    assert detail["sha256"] == hashlib.sha256(paths["save"].read_bytes()).hexdigest()
    assert detail["size"] == paths["save"].stat().st_size and detail["config"]["learning_rate"] == 0.001
    download = client.get(save["download_url"])
    assert download.status_code == 200 and download.data == paths["save"].read_bytes()
    assert download.headers["X-Checksum-SHA256"] == detail["sha256"]
    backup = client.get(versions[1]["download_url"])
    assert backup.mimetype == "application/zip"
    assert hashlib.sha256(backup.data).hexdigest() == backup.headers["X-Checksum-SHA256"]


def test_filters_order_tags_pick_and_note(app, client):
    _record_run(app, "lora-a")
    _record_run(app, "lora-b", config={**CONFIG, "training_method": "FINE_TUNE"})
    assert {v["model"] for v in client.get("/api/models?method=FINE_TUNE").get_json()["versions"]} == {"lora-b"}
    best = client.get("/api/models?model=lora-a&order=loss&limit=1").get_json()["versions"]
    assert [v["loss"] for v in best] == [0.3]
    first, second = [v["id"] for v in client.get("/api/models?model=lora-a&kind=output").get_json()["versions"]
                     + client.get("/api/models?model=lora-a&kind=save").get_json()["versions"]]
    assert client.post(f"/api/models/{first}/tags", json={"tag": "candidate"}).get_json()["tags"] == ["candidate"]
    assert client.post(f"/api/models/{second}/tags", json={"tag": "shipped", "pick": True}).get_json()["picked"]
    assert client.post(f"/api/models/{first}/tags", json={"tag": "shipped", "pick": True}).get_json()["picked"]
    picked = client.get("/api/models?model=lora-a&picked=1").get_json()["versions"]
    assert [v["id"] for v in picked] == [first]  # one pick per model
    assert [v["id"] for v in client.get("/api/models?tag=candidate").get_json()["versions"]] == [first]
    assert client.post(f"/api/models/{first}/tags", json={"tag": "candidate", "remove": True}).get_json()["tags"] == ["shipped"]
    assert client.post(f"/api/models/{first}/note", json={"note": "sharp edges"}).get_json()["note"] == "sharp edges"
    for body in ({"tag": ""}, {"tag": "x" * 41}, {"tag": 5}):
        answer = client.post(f"/api/models/{first}/tags", json=body)
        assert answer.status_code == 400 and answer.get_json()["detail"][0]["field"] == "tag"
    assert client.get("/api/models?order=bogus").status_code == 400
    assert client.get("/api/models/999999").status_code == 404


def test_a_gone_file_is_shown_as_gone_and_delete_removes_the_file(app, client):
    _, paths = _record_run(app)
    versions = {v["kind"]: v for v in client.get("/api/models").get_json()["versions"]}
    paths["output"].unlink()
    gone = client.get(f"/api/models/{versions['output']['id']}").get_json()["version"]
    assert gone["exists"] is False
    answer = client.get(versions["output"]["download_url"])
    assert answer.status_code == 410 and answer.get_json()["error"] == "file gone"
    page = client.get("/models").get_data(as_text=True)
    assert 'data-testid="gone"' in page and versions["output"]["download_url"] not in page
    assert client.delete(f"/api/models/{versions['backup']['id']}").get_json()["file_removed"] is True
    assert not paths["backup"].exists()
    assert client.get(f"/api/models/{versions['backup']['id']}").status_code == 404


def test_a_path_outside_the_run_folder_is_never_served(app, client):
    run_id, _ = _record_run(app, files=False)
    outside = app.config["WORKSPACE"] / "secret.safetensors"
    outside.write_bytes(b"secret")
    conn = store.connect(app.config["SETTINGS"].database)
    store.append_event(conn, run_id, make_event(Event.LOG, text="x", artifact={"kind": "save", "path": "../../secret.safetensors"}))
    conn.close()
    sneaky = next(v for v in client.get("/api/models").get_json()["versions"] if "secret" in v["path"])
    assert sneaky["exists"] is False and client.get(sneaky["download_url"]).status_code == 410


def test_versions_of_runs_recorded_before_are_found_once(app, client):
    run_id, _ = _record_run(app)
    conn = store.connect(app.config["SETTINGS"].database)
    conn.execute("DELETE FROM model_versions")  # as a workspace from before model versions
    conn.execute("DELETE FROM settings WHERE key = ?", (store.model_versions.BACKFILL_KEY,))
    # that version's trainer logged saves as text only
    conn.execute("UPDATE events SET data = ? WHERE name = 'log' AND data LIKE '%saves/%'",
                 (json.dumps({"text": "saved: saves/lora-step4.safetensors", "level": "info"}),))
    store.init_schema(conn)
    found = [(v["kind"], v["global_step"], v["loss"]) for v in store.model_versions.list_versions(conn)]
    assert found == [("output", 12, 0.3), ("backup", 6, 0.4), ("save", 4, 0.5)]
    store.model_versions.delete_version(conn, store.model_versions.list_versions(conn)[0]["id"])
    store.init_schema(conn)  # once: a deleted version does not come back
    assert len(store.model_versions.list_versions(conn)) == 2
    conn.close()


def test_deleting_a_run_deletes_its_versions(app, client):
    run_id, _ = _record_run(app)
    conn = store.connect(app.config["SETTINGS"].database)
    assert store.delete_run_rows(conn, run_id)
    assert store.model_versions.list_versions(conn) == []
    conn.close()


@pytest.mark.parametrize("who, download, tag, delete", [("vera", 200, 403, 403), ("otto", 200, 200, 403),
                                                       ("ada", 200, 200, 200)])
def test_roles(auth_app, who, download, tag, delete):
    _record_run(auth_app)
    client = auth_app.test_client()
    token = login(client, who)
    version = client.get("/api/models").get_json()["versions"][0]
    assert client.get(version["download_url"]).status_code == download
    headers = {"X-CSRF-Token": token}
    assert client.post(f"/api/models/{version['id']}/tags", json={"tag": "a"}, headers=headers).status_code == tag
    assert client.delete(f"/api/models/{version['id']}", headers=headers).status_code == delete


def test_models_pages(app, client):
    _record_run(app, "lora-a")
    _record_run(app, "lora-b", config={**CONFIG, "learning_rate": 0.01})
    page = client.get("/models").get_data(as_text=True)
    assert 'data-model="lora-a"' in page and 'data-model="lora-b"' in page and "backup" in page
    ids = [v["id"] for v in client.get("/api/models?kind=output").get_json()["versions"]]
    fragment = client.get("/models?model=lora-a", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "<html" not in fragment and 'data-model="lora-a"' in fragment and 'data-model="lora-b"' not in fragment
    detail = client.get(f"/models/{ids[0]}").get_data(as_text=True)
    assert 'data-testid="sha256"' in detail and "Lineage" in detail
    compare = client.get(f"/models/compare?v={ids[0]}&v={ids[1]}").get_data(as_text=True)
    assert "learning_rate" in compare and "0.01" in compare
    assert client.get(f"/models/compare?v={ids[0]}").status_code == 400
    card = client.post(f"/models/{ids[0]}/tags", data={"tag": "candidate", "pick": "1"}, headers={"HX-Request": "true"})
    assert card.status_code == 200 and "★ pick" in card.get_data(as_text=True)
    refused = client.post(f"/models/{ids[0]}/tags", data={"tag": ""}, headers={"HX-Request": "true"})
    assert refused.status_code == 400 and refused.headers["HX-Retarget"] == "#flash"
    backup = client.get("/api/models?kind=backup").get_json()["versions"][0]["id"]
    refused = client.post(f"/models/{backup}/playground", headers={"HX-Request": "true"})
    assert refused.status_code == 409 and "not playable" in refused.get_data(as_text=True)
    assert client.post(f"/models/{ids[0]}/delete", data={}).status_code == 400
    assert client.post(f"/models/{ids[0]}/delete", data={"confirm": str(ids[0])}).status_code == 302

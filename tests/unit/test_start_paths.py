"""One config path: every way of starting a run stores the same config.json for the same input,
and an editor save validates the config once."""
from __future__ import annotations

import json

from test_config_api import DEMO, demo_workspace, editor_form

from webapp import store
from webapp.config import checks


def stored_config(app, run_id: int) -> dict:
    conn = store.connect(app.config["DATABASE"])
    try:
        return json.loads(store.get_run(conn, run_id)["config_json"])
    finally:
        conn.close()


def newest_run_id(app) -> int:
    conn = store.connect(app.config["DATABASE"])
    try:
        return conn.execute("SELECT MAX(id) FROM runs").fetchone()[0]
    finally:
        conn.close()


def test_every_way_of_starting_stores_the_same_config(app, client, config_dir, workspace):
    demo_workspace(workspace)
    (config_dir / "mine.json").write_text(json.dumps(DEMO))  # a partial config, as users write them
    started = {}

    answer = client.post("/api/training/start", json={"config_name": "mine"})
    assert answer.status_code == 202, answer.json
    started["api by name"] = answer.json["run_id"]
    answer = client.post("/api/training/start", json={"config": DEMO, "config_name": "mine"})
    started["api inline"] = answer.json["run_id"]
    answer = client.post("/api/queue", json={"items": [{"config_name": "mine"}]})
    assert answer.status_code in (200, 201, 202), answer.json
    started["api queue"] = newest_run_id(app)
    assert client.post("/runs/start", data={"config_name": "mine"}).status_code == 200
    started["dashboard"] = newest_run_id(app)
    assert client.post("/queue/add", data={"config_name": "mine", "count": "1"}).status_code == 200
    started["queue page"] = newest_run_id(app)
    form = editor_form(client, "mine")
    answer = client.post("/configs/mine/edit", data={**form, "action": "start"})
    assert answer.status_code == 200 and "queued with this config" in answer.get_data(as_text=True)
    started["editor"] = newest_run_id(app)

    assert len(set(started.values())) == len(started)
    configs = {way: stored_config(app, run_id) for way, run_id in started.items()}
    reference = configs["api by name"]
    assert reference["learning_rate"] == DEMO["learning_rate"] and isinstance(reference["concepts"], list)
    assert reference["samples"] is not None  # inline: the run does not depend on a file that may change
    for way, config in configs.items():
        assert config == reference, f"{way} stored another config"

    # resume: the same run, the same stored config
    conn = store.connect(app.config["DATABASE"])
    conn.execute("UPDATE runs SET state = 'failed' WHERE id = ?", (started["api by name"],))
    conn.close()
    assert client.post(f"/api/runs/{started['api by name']}/resume").status_code == 202
    assert stored_config(app, started["api by name"]) == reference


def test_an_editor_save_validates_once(client, config_dir, workspace, monkeypatch):
    demo_workspace(workspace)
    (config_dir / "mine.json").write_text(json.dumps(DEMO))
    form = editor_form(client, "mine")
    calls = []
    real = checks.validate

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    for module in ("webapp.web.configs.pages", "webapp.web.runs.actions"):
        monkeypatch.setattr(f"{module}.validate", counting)
    saved = client.post("/configs/mine/edit", data={**form, "learning_rate": "0.0005", "action": "save"},
                        headers={"HX-Request": "true"})
    assert saved.status_code == 200 and "Saved." in saved.get_data(as_text=True)
    assert len(calls) == 1
    calls.clear()
    form = editor_form(client, "mine")
    calls.clear()
    started = client.post("/configs/mine/edit", data={**form, "action": "start"}, headers={"HX-Request": "true"})
    assert "queued with this config" in started.get_data(as_text=True)
    assert len(calls) == 1

"""The JSON API's answers to what a caller gets wrong, and the queue it writes (no worker here)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from webapp import store
from webapp.config.train_config import TRAIN_CONFIG


def write_config(config_dir, workspace, name="tiny", **fields):
    (workspace / "model").mkdir(exist_ok=True)
    (workspace / "images").mkdir(exist_ok=True)
    config = {"__version": 11, "training_method": "LORA", "model_type": "STABLE_DIFFUSION_15",
              "base_model_name": "model", "concepts": [{"path": "images", "enabled": True}],
              "resolution": "64", "learning_rate": 1e-4, "unknown_key_kept": {"x": 1}, **fields}
    (config_dir / f"{name}.json").write_text(json.dumps(config))
    return config


def test_health(client):
    answer = client.get("/api/health")
    assert answer.status_code == 200
    assert answer.json["redis"] and answer.json["database"]


def test_status_with_no_runs(client):
    assert client.get("/api/training/status").json == {"run": None, "queued": 0}
    assert client.get("/api/training/progress").status_code == 404


def test_start_queues_a_run_and_keeps_the_config(client, app, config_dir, workspace):
    config = write_config(config_dir, workspace)
    answer = client.post("/api/training/start", json={"config_name": "tiny"})
    assert answer.status_code == 202
    run_id = answer.json["run_id"]
    with app.app_context():
        run = store.get_run(store.connect(app.config["DATABASE"]), run_id)
    assert run["state"] == "queued"
    stored = json.loads(run["config_json"])
    # stored whole (over OneTrainer's defaults, as every way of starting stores it), the user's
    # values and unknown keys kept as given
    assert set(TRAIN_CONFIG.defaults) <= set(stored)
    assert {key: stored[key] for key in config if key != "concepts"} == \
        {key: value for key, value in config.items() if key != "concepts"}
    assert stored["concepts"][0]["path"] == "images" and stored["unknown_key_kept"] == {"x": 1}
    status = client.get("/api/training/status").json
    assert status["run"]["id"] == run_id and status["queued"] == 1


@pytest.mark.parametrize("body, status, error", [
    ({"config_name": "nope"}, 404, "unknown config"),
    ({"config_name": "../etc/passwd"}, 400, "invalid config name"),
    ({"config_name": 3}, 400, "invalid field"),
    ({}, 400, "missing field"),
    ({"config": [1, 2]}, 400, "invalid config"),
    ({"config": {"base_model_name": "missing", "concepts": [{"path": "x"}], "training_method": "LORA"}},
     400, "invalid config"),
    ({"config": {"base_model_name": "m", "training_method": "LORA", "learning_rate": "fast",
                 "concepts": [{"path": "x"}]}}, 400, "invalid config"),
])
def test_start_refuses_bad_input(client, body, status, error):
    answer = client.post("/api/training/start", json=body)
    assert answer.status_code == status
    assert answer.json["error"] == error and answer.json["detail"]


def test_invalid_field_is_named(client):
    answer = client.post("/api/training/start", json={"config": {
        "base_model_name": "m", "training_method": "LORA", "learning_rate": "fast", "concepts": [{"path": "x"}]}})
    assert {"field": "learning_rate", "message": "must be a number"} in answer.json["detail"]


def test_malformed_json(client):
    answer = client.post("/api/training/start", data="{nope", content_type="application/json")
    assert answer.status_code == 400 and answer.json["error"] == "malformed JSON"


@pytest.mark.parametrize("path", ["/api/training/stop", "/api/training/save", "/api/training/backup",
                                  "/api/training/sample"])
def test_commands_need_a_running_run(client, path):
    answer = client.post(path, json={})
    assert answer.status_code == 409 and answer.json["error"] == "no run is training"


def test_custom_sample_validates_fields(client):
    answer = client.post("/api/samples/custom", json={"prompt": "", "steps": 3})
    assert answer.status_code == 400 and answer.json["detail"][0]["field"] == "prompt"
    answer = client.post("/api/samples/custom", json={"prompt": "a cat", "steps": "many", "width": 65})
    fields = {item["field"] for item in answer.json["detail"]}
    assert answer.status_code == 400 and fields == {"steps", "width"}
    answer = client.post("/api/samples/custom", json={"prompt": "a cat"})
    assert answer.status_code == 409


def test_unknown_sample_is_404(client):
    assert client.get("/api/samples/999").status_code == 404
    assert client.get("/api/samples/999/image").json["error"] == "unknown sample"


def test_unknown_api_route_answers_json(client):
    answer = client.get("/api/nothing-here")
    assert answer.status_code == 404 and answer.json["error"] == "Not Found"


NO_TORCH_SCRIPT = """
import json, sys
from webapp import create_app
app = create_app({"TESTING": True, "WORKSPACE": sys.argv[1], "CONFIG_DIR": sys.argv[2], "REDIS_URL": sys.argv[3]})
client = app.test_client()
run_id = client.post("/api/training/start", json={"config_name": "tiny"}).json["run_id"]
values = {"run_id": run_id, "name": "tiny", "sample_id": 1}
codes = {}
for rule in app.url_map.iter_rules():  # every page, partial and API answer a GET can reach
    if "GET" not in rule.methods or rule.endpoint in ("events.html_events", "events.json_events", "static"):
        continue
    if set(rule.arguments) - set(values):
        continue
    path = rule.build({k: values[k] for k in rule.arguments})[1]
    codes[path] = client.get(path).status_code
heavy = sorted({"torch", "diffusers", "transformers", "peft"} & set(sys.modules))
print(json.dumps({"codes": codes, "heavy": heavy}))
"""


def test_web_side_never_imports_torch(config_dir, workspace, redis_url):
    # a fresh interpreter: this test process may have imported torch for other tests
    write_config(config_dir, workspace)
    result = subprocess.run([sys.executable, "-c", NO_TORCH_SCRIPT, str(workspace), str(config_dir), redis_url],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(answer["codes"]) > 30 and answer["codes"]["/"] == 200
    assert not {path: code for path, code in answer["codes"].items() if code >= 500}, answer["codes"]
    assert answer["heavy"] == [], f"the web side imported {answer['heavy']}"


def test_resume_needs_an_ended_run(client, config_dir, workspace):
    assert client.post("/api/runs/42/resume").status_code == 404
    write_config(config_dir, workspace)
    run_id = client.post("/api/training/start", json={"config_name": "tiny"}).json["run_id"]
    answer = client.post(f"/api/runs/{run_id}/resume")
    assert answer.status_code == 409 and "queued" in answer.json["detail"]

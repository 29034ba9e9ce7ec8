"""Issue 16, point 1: every path a config names is confined. Reads only inside the roots
(workspace, config folder, OTWEB_DATA_ROOTS); writes only in the run's folder or the workspace
cache; checked at validation, in the worker, in the OneTrainer adapter; the same answer for a path
outside whether it exists or not."""
from __future__ import annotations

import json
import os

import pytest

from webapp import ROOT
from webapp.config import paths
from webapp.protocol import RunState
from webapp.settings import Settings

FULLWIDTH_UP = "\uff0e\uff0e/"  # "．．/": NFKC makes it "../"
HOSTILE_WRITES = [
    ("output_model_destination", "/tmp/otweb-hostile.safetensors"),
    ("output_model_destination", "../../../escape.safetensors"),
    ("output_model_destination", "models/../../../escape.safetensors"),
    ("output_model_destination", FULLWIDTH_UP * 4 + "escape.safetensors"),
    ("output_model_destination", str(ROOT / "webapp" / "__init__.py")),  # the app's own code
    ("save_filename_prefix", "../../x"),
    ("save_filename_prefix", "\uff0e\uff0e\uff0fx"),
    ("cache_dir", "/tmp/otweb-cache"),
    ("cache_dir", "../cache"),
    ("cache_dir", "models"),  # inside the workspace but not its cache folder
    ("workspace_dir", "/tmp/ot-workspace"),
    ("debug_dir", "../../debug"),
]
HOSTILE_READS = [
    ("base_model_name", "/usr/share"),
    ("base_model_name", "../../../usr/share"),
    ("concept_file_name", "/etc/passwd.json"),
    ("sample_definition_file_name", FULLWIDTH_UP * 6 + "etc/x.json"),
    ("concepts[0].path", "/usr/share"),
    ("concepts[0].text.prompt_path", "/etc/hostname"),
    ("vae.model_name", "/opt/models/vae"),
]


def as_config(field: str, value) -> dict:
    if field.startswith("concepts[0]."):
        part = field.split(".", 1)[1]
        concept = {"path": "datasets/shapes", "text": {"prompt_source": "concept", "prompt_path": value}} \
            if part == "text.prompt_path" else {"path": value}
        return {"concepts": [concept]}
    if field == "vae.model_name":
        return {"vae": {"model_name": value}}
    return {field: value}


@pytest.mark.parametrize("field, value", HOSTILE_WRITES + HOSTILE_READS)
def test_each_hostile_path_is_refused_by_the_one_rule(workspace, field, value):
    roots = paths.read_roots(workspace, extra=[])
    problems = paths.config_problems(as_config(field, value), workspace, roots)
    assert [p["field"] for p in problems] == [field], problems


def test_relative_paths_inside_are_fine_and_data_roots_add_folders(workspace, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    config = {"output_model_destination": "models/out.safetensors", "cache_dir": "workspace-cache/run",
              "save_filename_prefix": "lora-", "workspace_dir": "workspace/run", "base_model_name": "org/model",
              "concepts": [{"path": "datasets/shapes"}, {"path": str(data)}]}
    assert paths.config_problems(config, workspace, paths.read_roots(workspace, extra=[data])) == []
    refused = paths.config_problems(config, workspace, paths.read_roots(workspace, extra=[]))
    assert [p["field"] for p in refused] == ["concepts[1].path"]


def test_symlinks_are_resolved_before_the_check(workspace, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (workspace / "datasets").mkdir()
    os.symlink(outside, workspace / "datasets" / "link")
    run_dir = workspace / "runs" / "7"
    run_dir.mkdir(parents=True)
    os.symlink(outside, run_dir / "models")
    roots = paths.read_roots(workspace, extra=[])
    config = {"concepts": [{"path": "datasets/link"}], "output_model_destination": "models/x.safetensors"}
    problems = paths.config_problems(config, workspace, roots, run_dir)
    assert {p["field"] for p in problems} == {"concepts[0].path", "output_model_destination"}


def test_validation_refuses_with_a_field_error(client):
    for field, value in HOSTILE_WRITES + HOSTILE_READS:
        answer = client.post("/api/config/validate", json=as_config(field, value))
        errors = answer.get_json()["detail"]
        assert answer.status_code == 400 and field in {e["field"] for e in errors}, (field, errors)


def test_a_start_with_a_path_outside_is_refused_and_nothing_is_queued(client, app):
    config = {"output_model_destination": "/tmp/otweb-hostile.safetensors", "concepts": [{"path": "d"}]}
    answer = client.post("/api/training/start", json={"config": config})
    assert answer.status_code == 400
    assert "output_model_destination" in {e["field"] for e in answer.get_json()["detail"]}
    assert client.get("/api/queue").get_json()["queue"] == []


def test_outside_reads_answer_the_same_whether_the_path_exists_or_not(client, config_dir, tmp_path):
    """A viewer learns nothing about the host: not a file's contents, not whether it exists."""
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps([{"path": "TOPSECRET-VALUE"}]))
    (config_dir / "leak.json").write_text(json.dumps({"concept_file_name": str(secret), "concepts": None}))
    for url in ("/api/config/load/leak", "/configs/leak/export", "/configs/leak/edit"):
        assert "TOPSECRET" not in client.get(url).get_data(as_text=True), url
    answers = []
    for path in (str(secret), str(tmp_path / "no-such-file.json")):
        errors = client.post("/api/config/validate", json={"concept_file_name": path}).get_json()["detail"]
        answers.append([e["message"].replace(path, "<path>") for e in errors if e["field"] == "concept_file_name"])
    assert answers[0] == answers[1] and answers[0]
    pages = []
    for path in ("/usr/share", "/no/such/folder/anywhere"):
        page = client.get("/configs/leak/concepts/stats", query_string={"path": path, "sub": "1"})
        text = page.get_data(as_text=True)
        for _ in range(200):
            if "scanning" not in text:
                break
            text = client.get("/configs/leak/concepts/stats", query_string={"path": path, "sub": "1"}).get_data(as_text=True)
        pages.append(text.replace(path, "<path>"))
        assert "outside the folders" in text
    assert pages[0] == pages[1]


def test_the_worker_refuses_what_the_web_never_checked(workspace, config_dir, redis_url):
    """An assignment written around the web (straight into Redis): the worker checks again before
    the trainer starts, and reports the run failed naming the field."""
    import json

    import redis

    from webapp.eventlog import decode_entry
    from webapp.settings import worker_stream
    settings = Settings.from_env(workspace=workspace, config_dir=config_dir, redis_url=redis_url,
                                 worker_name="paths-test")
    from webapp.worker.loop import Worker
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.delete(worker_stream("paths-test"))
    worker = Worker(settings)
    assignment = {"id": "hostile1", "run_id": 424242, "config_name": "hostile",
                  "config": {"output_model_destination": "/tmp/otweb-hostile.safetensors",
                             "concepts": [{"path": "datasets/shapes"}]}}
    assert worker.run_one(assignment) == RunState.FAILED
    assert not (settings.worker_run_dir(424242) / "config.json").exists()  # no trainer was started for it
    entries = [decode_entry(fields) for _, fields in client.xrange(worker_stream("paths-test"))]
    failed = [e for e in entries if e.get("event") == "run" and e["data"]["state"] == "failed"]
    assert failed and "output_model_destination" in failed[0]["data"]["reason"], json.dumps(entries)[:500]


def test_unicode_forms_are_judged_as_the_filesystem_sees_them(workspace, tmp_path):
    """A root named in NFC; the same name in NFD is another folder on Linux: outside. And a name
    that only NFKC turns into '..' is refused too, whichever form a later tool would open."""
    root = tmp_path / "caf\u00e9"
    (root / "images").mkdir(parents=True)
    roots = paths.read_roots(workspace, extra=[root])
    inside = {"concepts": [{"path": str(root / "images")}]}
    decomposed = {"concepts": [{"path": str(tmp_path / "cafe\u0301" / "images")}]}
    widened = {"concepts": [{"path": str(root / "images") + "/" + FULLWIDTH_UP * 3 + "etc"}]}
    assert paths.config_problems(inside, workspace, roots) == []
    assert [p["field"] for p in paths.config_problems(decomposed, workspace, roots)] == ["concepts[0].path"]
    assert [p["field"] for p in paths.config_problems(widened, workspace, roots)] == ["concepts[0].path"]

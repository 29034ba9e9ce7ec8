"""The config JSON API and the config pages (library and editor), through the Flask test client on
the real app (real Redis, SQLite, files). Hostile input gets a 4xx with field errors, never a 500."""
from __future__ import annotations

import html
import io
import json
import time
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from webapp import store
from webapp.config.library import PRESETS_DIR

DEMO = json.loads((PRESETS_DIR / "demo.json").read_text())  # the demo preset, as shipped
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


def put(client, name, config, version=None):
    headers = {"If-Match": f'"{version}"'} if version else {}
    return client.put(f"/api/config/{name}", json=config, headers=headers)


def demo_workspace(workspace: Path) -> None:
    """The folders the demo preset names, enough for a run to be queued (no worker here)."""
    (workspace / DEMO["base_model_name"]).mkdir(parents=True)
    shapes = workspace / DEMO["concepts"][0]["path"]
    shapes.mkdir(parents=True)
    for index in range(3):
        (shapes / f"s{index}.png").write_bytes(PNG)
    (shapes / "s0.txt").write_text("a shape")


def field_error(html: str, path: str) -> str:
    element_id = "f-" + re.sub(r"[^A-Za-z0-9_-]", "-", path) + "-error"
    match = re.search(rf'id="{re.escape(element_id)}"[^>]*>([^<]*)<', html)
    assert match, f"no error element for {path}"
    return match.group(1).strip()


# --- the JSON API ---

def test_list_load_schema_defaults(client):
    names = [entry["name"] for entry in client.get("/api/config/list").json["configs"]]
    assert "presets/demo" in names
    answer = client.get("/api/config/load/presets/demo")
    assert answer.status_code == 200 and answer.json["read_only"] and answer.json["errors"] == []
    assert answer.headers["ETag"] == f'"{answer.json["version"]}"'
    assert answer.json["config"]["__version"] == 11 and answer.json["config"]["lora_rank"] == DEMO["lora_rank"]
    assert client.get("/api/config/schema").json["properties"]["epochs"]["type"] == "integer"
    assert client.get("/api/config/defaults").json["learning_rate"] == 3e-06


@pytest.mark.parametrize("name, status", [("nope", 404), ("..%2Fetc%2Fpasswd", 400), ("presets/nope", 404),
                                          ("a%00b", 400)])
def test_load_refuses(client, name, status):
    answer = client.get(f"/api/config/load/{name}")
    assert answer.status_code == status and answer.json["error"]


def test_validate_answers_field_errors(client):
    ok = client.post("/api/config/validate", json={"learning_rate": 0.001, "model_type": "FLUX_DEV_1"})
    assert ok.status_code == 200 and ok.json["valid"]
    assert any(w["field"] == "model_type" and w["blocking"] for w in ok.json["warnings"])
    bad = client.post("/api/config/validate", json={"learning_rate": -1, "epochs": "many"})
    assert bad.status_code == 400 and bad.json["error"] == "invalid config"
    assert {e["field"] for e in bad.json["detail"]} == {"learning_rate", "epochs"}


@pytest.mark.parametrize("body, error", [
    (b"{oops", "malformed JSON"), (b"", "missing body"), (b"[1]", "invalid config"),
    (b'{"epochs": Infinity}', "malformed JSON"), (b"[" * 50 + b"]" * 50, "malformed JSON"),
])
def test_validate_refuses_what_is_no_config(client, body, error):
    answer = client.post("/api/config/validate", data=body, content_type="application/json")
    assert answer.status_code == 400 and answer.json["error"] == error
    assert all({"field", "message"} <= set(item) for item in answer.json["detail"])


def test_a_huge_body_is_refused(client, config_dir):
    answer = client.put("/api/config/huge", data=b'{"x": "' + b"a" * (5 * 2**20) + b'"}',
                        content_type="application/json")
    assert answer.status_code == 413 and not list(config_dir.iterdir())


def test_put_creates_updates_and_checks_the_version(client, config_dir):
    created = put(client, "mine", {"learning_rate": 0.001, "unknown": [1]})
    assert created.status_code == 201
    saved = json.loads((config_dir / "mine.json").read_text())
    assert saved["unknown"] == [1] and saved["epochs"] == 100  # whole, with the user's keys
    version = created.json["version"]
    updated = put(client, "mine", {"learning_rate": 0.002}, version)
    assert updated.status_code == 200 and updated.headers["ETag"] == f'"{updated.json["version"]}"'
    stale = put(client, "mine", {"learning_rate": 0.003}, version)
    assert stale.status_code == 409 and "changed" in stale.json["detail"]
    assert json.loads((config_dir / "mine.json").read_text())["learning_rate"] == 0.002


@pytest.mark.parametrize("name, config, status", [
    ("presets/demo", {}, 403), ("bad..name", {}, 400), ("ok", {"learning_rate": "x"}, 400), ("ok", [1], 400),
])
def test_put_refuses(client, config_dir, name, config, status):
    assert put(client, name, config).status_code == status
    assert not list(config_dir.glob("*.json"))


def test_delete(client, config_dir):
    version = put(client, "gone", {}).json["version"]
    assert client.delete("/api/config/gone", headers={"If-Match": '"stale"'}).status_code == 409
    assert client.delete("/api/config/gone", headers={"If-Match": f'"{version}"'}).status_code == 204
    assert client.delete("/api/config/gone").status_code == 404
    assert client.delete("/api/config/presets/demo").status_code == 403
    assert (PRESETS_DIR / "demo.json").exists()


def test_current_is_the_latest_runs_config_and_presets_start_by_name(client, workspace):
    assert client.get("/api/config/current").status_code == 404
    demo_workspace(workspace)
    started = client.post("/api/training/start", json={"config_name": "presets/demo"})
    assert started.status_code == 202, started.json
    current = client.get("/api/config/current").json
    assert current["config_name"] == "presets/demo" and current["config"]["lora_rank"] == DEMO["lora_rank"]


hostile = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70) | st.floats(allow_nan=False)
    | st.text(max_size=40) | st.just("\x00") | st.just("../" * 20) | st.just("x" * 12_000),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=12)
hostile_configs = st.dictionaries(st.sampled_from(["learning_rate", "epochs", "concepts", "samples", "unet",
                                                   "optimizer", "resolution", "model_type", "junk", "__version"]),
                                  hostile, max_size=5) | hostile
hostile_names = st.text(max_size=30) | st.sampled_from(["..", "../x", "presets/demo", "a/../../b", "x%00y", "%2e%2e"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=hostile_names, config=hostile_configs)
def test_hostile_saves_get_a_4xx_with_field_errors_and_write_nothing_outside(app, tmp_path, name, config):
    client = app.test_client()
    try:
        body = json.dumps(config).encode()
    except ValueError:
        body = b"{"
    answers = [client.post("/api/config/validate", data=body, content_type="application/json"),
               client.put("/api/config/" + name.replace("?", "%3F").replace("#", "%23"), data=body,
                          content_type="application/json")]
    for answer in answers:
        assert answer.status_code < 500, answer.data
        if answer.status_code == 400 and answer.json["error"] == "invalid config":
            assert all(isinstance(e["field"], str) and e["message"] for e in answer.json["detail"])
    outside = [p for p in tmp_path.rglob("*") if p.is_file() and "configs" not in p.parts
               and "workspace" not in p.parts]
    assert outside == []


# --- the pages ---

def test_library_page_lists_configs_and_presets(client):
    put(client, "mine", {})
    page = client.get("/configs/").get_data(as_text=True)
    assert 'data-config="mine"' in page and 'data-config="presets/demo"' in page and "Traceback" not in page


def test_import_a_partial_preset_and_export_it_packed(client, config_dir, workspace):
    (workspace / "concepts.json").write_text(json.dumps([{"path": "imgs", "name": "mine"}]))
    preset = {"learning_rate": 0.0003, "resolution": "768", "concept_file_name": "concepts.json", "extra": True}
    answer = client.post("/configs/import", data={"file": (io.BytesIO(json.dumps(preset).encode()), "My preset!.json")},
                         content_type="multipart/form-data")
    assert answer.status_code == 303 and answer.headers["Location"].endswith("/configs/My%20preset-/edit")
    exported = client.get("/configs/My preset-/export")
    assert "attachment" in exported.headers["Content-Disposition"]
    packed = exported.json
    assert {key: packed[key] for key in preset} == preset and packed["concepts"][0]["path"] == "imgs"
    again = client.post("/configs/import", data={"file": (io.BytesIO(b"{}"), "My preset!.json")},
                        content_type="multipart/form-data")
    assert again.status_code == 409 and "exists already" in again.get_data(as_text=True)


@pytest.mark.parametrize("data, message", [(b"{nope", "is not a config"), (b'{"epochs": 0}', "has errors")])
def test_import_refuses_bad_files_in_the_page(client, config_dir, data, message):
    answer = client.post("/configs/import", data={"file": (io.BytesIO(data), "x.json")},
                         content_type="multipart/form-data")
    assert answer.status_code == 400 and message in answer.get_data(as_text=True)
    assert not list(config_dir.glob("*.json"))


def test_duplicate_rename_delete_from_the_library_page(client, config_dir):
    assert client.post("/configs/presets/demo/duplicate").status_code == 303
    assert (config_dir / "demo copy.json").exists()
    assert client.post("/configs/demo copy/rename", data={"new_name": "my demo"}).status_code == 303
    assert client.post("/configs/my demo/rename", data={"new_name": "../../x"}).status_code == 303
    assert sorted(p.name for p in config_dir.glob("*.json")) == ["x.json"]  # sanitised, still inside
    assert client.post("/configs/presets/demo/delete").status_code == 403
    assert client.post("/configs/x/delete").status_code == 303 and not list(config_dir.glob("*.json"))


def test_the_editor_shows_every_tab_and_the_presets_warnings(client):
    page = client.get("/configs/presets/sdxl_1.0_LoRA/edit").get_data(as_text=True)
    for tab in ("general", "model", "data", "concepts", "training", "sampling", "backup", "lora"):
        assert f'id="panel-{tab}"' in page
    assert 'data-action="save"' not in page and 'data-action="save-as"' in page  # presets: save as only
    assert "not supported by the built-in trainer" not in page  # SDXL LoRA: the built-in trainer trains it
    assert re.search(r'<select id="f-training_method" name="training_method"[ >]', page)


def test_a_field_is_checked_as_it_is_typed(client):
    answer = client.post("/configs/check", data={"learning_rate": "-1"},
                         headers={"HX-Request": "true", "HX-Trigger-Name": "learning_rate"})
    assert answer.status_code == 200 and field_error(answer.get_data(as_text=True), "learning_rate") \
        == "must be greater than 0"
    fixed = client.post("/configs/check", data={"concepts[0].balancing": "2"},
                        headers={"HX-Request": "true", "HX-Trigger-Name": "concepts[0].balancing"})
    assert field_error(fixed.get_data(as_text=True), "concepts[0].balancing") == ""


def editor_form(client, name: str) -> dict:
    return form_values(client.get(f"/configs/{name}/edit").get_data(as_text=True))


def form_values(html: str) -> dict:
    """The editor's form as a browser would post it (every input with its value)."""
    form = {}
    for tag in re.findall(r"<(?:input|select)\b[^>]*>", html):
        name_match = re.search(r'name="([^"]+)"', tag)
        if not name_match:
            continue
        value = re.search(r'value="([^"]*)"', tag)
        if 'type="checkbox"' in tag or 'type="radio"' in tag:
            if "checked" in tag:
                form[name_match.group(1)] = value.group(1) if value else "on"
        elif tag.startswith("<select"):
            field = name_match.group(1)
            select = html[html.index(tag):html.index("</select>", html.index(tag))]
            form[field] = re.search(r'<option value="([^"]*)"[^>]*\bselected\b', select).group(1)
        else:
            form[name_match.group(1)] = _unescape(value.group(1)) if value else ""
    return form


def _unescape(text: str) -> str:
    import html
    return html.unescape(text)


def test_save_without_javascript(client, config_dir):
    client.post("/configs/presets/demo/duplicate", data={"new_name": "edit me"})
    form = editor_form(client, "edit me")
    bad = client.post("/configs/edit me/edit", data={**form, "learning_rate": "fast", "action": "save"})
    page = bad.get_data(as_text=True)
    assert bad.status_code == 400 and field_error(page, "learning_rate") == "must be a number"
    assert 'value="fast"' in page  # what was typed stays in the field
    good = client.post("/configs/edit me/edit", data={**form, "learning_rate": "0.0005", "action": "save"})
    assert good.status_code == 303
    saved = json.loads((config_dir / "edit me.json").read_text())
    assert saved["learning_rate"] == 0.0005 and saved["epochs"] == DEMO["epochs"] and saved["seed"] == DEMO["seed"]
    stale = client.post("/configs/edit me/edit", data={**form, "action": "save"})  # form's version is old
    assert stale.status_code == 409 and "changed or deleted by someone else" in stale.get_data(as_text=True)


def test_save_with_htmx_answers_the_form(client, config_dir):
    client.post("/configs/presets/demo/duplicate", data={"new_name": "hx"})
    form = editor_form(client, "hx")
    answer = client.post("/configs/hx/edit", data={**form, "epochs": "7", "action": "save", "tab": "training"},
                         headers={"HX-Request": "true"})
    page = answer.get_data(as_text=True)
    # "Saved, but a run cannot start": the preset's image folder is not in this workspace
    assert answer.status_code == 200 and page.lstrip().startswith("<form") and "Saved" in page
    assert 'id="tab-training" checked' in page
    assert json.loads((config_dir / "hx.json").read_text())["epochs"] == 7


def test_preset_save_is_refused_and_save_as_makes_a_copy(client, config_dir):
    form = editor_form(client, "presets/demo")
    refused = client.post("/configs/presets/demo/edit", data={**form, "action": "save"})
    assert refused.status_code == 403 and "read-only" in refused.get_data(as_text=True)
    copy = client.post("/configs/presets/demo/edit",
                       data={**form, "epochs": "3", "action": "save_as", "save_as_name": "from demo"})
    assert copy.status_code == 303 and json.loads((config_dir / "from demo.json").read_text())["epochs"] == 3


def scanned(client, page: str, timeout: float = 20.0) -> str:
    """The editor page with each concept's "scanning…" placeholder replaced by its figures, as
    htmx does it: ask the placeholder's URL again until the scan has answered."""
    deadline = time.monotonic() + timeout
    for url in re.findall(r'hx-get="([^"]*/concepts/stats[^"]*)"', page):
        url = html.unescape(url)
        while (part := client.get(url).get_data(as_text=True)) and "scanning…" in part:
            assert time.monotonic() < deadline, "the scan never answered"
            time.sleep(0.05)
        page += part
    return page


def test_concepts_and_samples_editors(client, config_dir, workspace):
    demo_workspace(workspace)
    client.post("/configs/presets/demo/duplicate", data={"new_name": "lists"})
    form = editor_form(client, "lists")
    page = scanned(client, client.get("/configs/lists/edit").get_data(as_text=True))
    assert "3 images, 1 with captions" in page
    thumbnails = re.findall(r'src="(/configs/lists/concepts/0/thumbnails/\d)"', page)
    assert len(thumbnails) == 3 and client.get(thumbnails[0]).data == PNG
    assert client.get("/configs/lists/concepts/0/thumbnails/3").status_code == 404
    assert client.get("/configs/lists/concepts/5/thumbnails/0").status_code == 404
    added = client.post("/configs/lists/edit", data={**form, "action": "add_concept", "new_concept_path": "nowhere"})
    assert "no image folder at" in scanned(client, added.get_data(as_text=True))
    added = client.post("/configs/lists/edit", data={**form, "action": "add_concept", "new_concept_path": "/nowhere"})
    assert "is outside the folders this server may read" in scanned(client, added.get_data(as_text=True))
    form = {**form, "action": "remove_sample:0", "samples[1].prompt": "edited prompt"}
    removed = client.post("/configs/lists/edit", data=form).get_data(as_text=True)
    assert DEMO["samples"][0]["prompt"] not in removed and "edited prompt" in removed and "not saved yet" in removed
    saved = client.post("/configs/lists/edit", data={**form_values(removed), "action": "save"})
    assert saved.status_code == 303, saved.get_data(as_text=True)
    config = json.loads((config_dir / "lists.json").read_text())
    assert [s["prompt"] for s in config["samples"]] == ["edited prompt"]
    assert config["samples"][0]["noise_scheduler"] == "DDIM"  # settings the form does not show kept


def test_start_a_run_from_the_editor_with_the_config_as_edited(client, app, workspace):
    demo_workspace(workspace)
    form = editor_form(client, "presets/demo")
    answer = client.post("/configs/presets/demo/edit", data={**form, "epochs": "3", "action": "start"},
                         headers={"HX-Request": "true"})
    match = re.search(r"Run #(\d+) queued", answer.get_data(as_text=True))
    assert answer.status_code == 200 and match
    with app.app_context():
        run = store.get_run(store.connect(app.config["DATABASE"]), int(match.group(1)))
    assert run["config_name"] == "presets/demo" and json.loads(run["config_json"])["epochs"] == 3


def test_starting_what_the_trainer_cannot_run_says_why(client):
    form = editor_form(client, "presets/sdxl_1.0_LoRA")
    answer = client.post("/configs/presets/sdxl_1.0_LoRA/edit", data={**form, "action": "start"})
    page = answer.get_data(as_text=True)
    assert answer.status_code == 400 and "model_type" in page and "Traceback" not in page


def test_new_config_starts_from_a_preset(client, config_dir):
    page = client.get("/configs/").get_data(as_text=True)
    assert 'data-testid="new-config"' in page and '<option value="presets/demo">' in page
    answer = client.post("/configs/new", data={"start_from": "presets/demo", "new_name": "my first"})
    assert answer.status_code == 303 and answer.headers["Location"].endswith("/configs/my%20first/edit")
    assert (config_dir / "my first.json").exists()
    refused = client.post("/configs/new", data={"new_name": "no start"})
    assert refused.status_code == 400 and "pick a config to start from" in refused.get_data(as_text=True)
    unknown = client.post("/configs/new", data={"start_from": "nope", "new_name": "x"})
    assert unknown.status_code == 404 and not (config_dir / "x.json").exists()


def test_the_concept_editor_picks_a_dataset_from_the_library(client, config_dir, workspace):
    """Issue 28: a select with each library dataset's counts, a strip of its first images, and an
    "Add as a concept" that puts its folder in a new concept; typing a folder still works."""
    from support.dataset_files import write_dataset
    demo_workspace(workspace)
    write_dataset(workspace / "datasets" / "faces", 5)
    from support.polling import wait_for
    client.post("/configs/presets/demo/duplicate", data={"new_name": "picks"})
    # the figures are counted in the background: "counting…" until then, never a wait
    page = wait_for(lambda: (text := client.get("/configs/picks/edit").get_data(as_text=True))
                    and "faces: 5 images, 5 captioned" in text and text, 30, "the library's figures")
    assert len(re.findall(r'src="/datasets/faces/thumbnail/img000\d.png"', page)) == 4
    folder = str(workspace / "datasets" / "faces")
    form = editor_form(client, "picks")
    added = client.post("/configs/picks/edit", data={**form, "action": f"add_dataset:{folder}"}).get_data(as_text=True)
    assert f"Concept {folder} added" in added
    typed = client.post("/configs/picks/edit", data={**form, "action": "add_concept", "new_concept_path": "datasets/faces"})
    assert "Concept datasets/faces added" in typed.get_data(as_text=True)

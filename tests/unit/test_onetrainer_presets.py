"""Every one of OneTrainer's own training_presets/*.json, from the real checkout, through the config
API: load, validate (naming the backend and why), save, load again, unchanged."""
from __future__ import annotations

import json

import pytest

from webapp.config.loading import normalise
from webapp.config.onetrainer_rules import onetrainer_warnings, output_formats

from support.onetrainer_env import checkout

PRESETS = sorted((checkout() / "training_presets").rglob("*.json"))


def canonical(config: dict) -> str:
    return json.dumps(config, sort_keys=True, ensure_ascii=False)


def test_there_are_presets_to_check():
    assert len(PRESETS) >= 50, f"only {len(PRESETS)} presets under {checkout()}/training_presets"


@pytest.fixture
def with_onetrainer(monkeypatch):
    monkeypatch.setenv("ONETRAINER_DIR", str(checkout()))


def test_every_preset_round_trips_unchanged_and_names_its_backend(client, config_dir, with_onetrainer):
    for index, path in enumerate(PRESETS):
        raw = json.loads(path.read_text(encoding="utf-8"))
        raw["x_kept_for_later"] = {"from": path.name}  # an unknown key survives
        expected = canonical(normalise(raw)[0])
        report = client.post("/api/config/validate", json=raw)
        assert report.status_code == 200, (path.name, report.json)
        backend = report.json["backend"]
        assert backend["name"] in ("builtin", "onetrainer") and backend["reason"], (path.name, backend)
        name = f"preset-{index}"
        saved = client.put(f"/api/config/{name}", json=raw)
        assert saved.status_code == 201, (path.name, saved.json)
        first_bytes = (config_dir / f"{name}.json").read_bytes()
        loaded = client.get(f"/api/config/load/{name}").json
        assert canonical(loaded["config"]) == expected, path.name
        assert loaded["config"]["x_kept_for_later"] == {"from": path.name}
        again = client.put(f"/api/config/{name}", json=loaded["config"], headers={"If-Match": f'"{loaded["version"]}"'})
        assert again.status_code == 200, (path.name, again.json)
        assert (config_dir / f"{name}.json").read_bytes() == first_bytes, path.name
        assert canonical(client.get(f"/api/config/load/{name}").json["config"]) == expected, path.name


def test_every_preset_keeps_onetrainers_own_rules(tmp_path):
    """The rules are OneTrainer's: its own presets break none of them."""
    for path in PRESETS:
        config = normalise(json.loads(path.read_text(encoding="utf-8")))[0]
        assert onetrainer_warnings({**config, "concepts": None}, checkout(), tmp_path) == [], path.name


def test_a_preset_on_onetrainer_gets_its_rules(client, with_onetrainer):
    """A LoRA preset leaves output_model_format at OneTrainer's default, SAFETENSORS, which its LoRA
    saver refuses: on the OneTrainer backend that is a blocking warning naming what to pick."""
    raw = json.loads((checkout() / "training_presets/Flux Dev.1/#flux LoRA.json").read_text(encoding="utf-8"))
    del raw["output_model_format"]  # left to OneTrainer's default
    report = client.post("/api/config/validate", json=raw).json
    assert report["backend"]["name"] == "onetrainer" and "built-in trainer does not support" in report["backend"]["reason"]
    blocking = {w["field"]: w["message"] for w in report["warnings"] if w.get("blocking")}
    allowed = output_formats(checkout())[("FLUX_DEV_1", "LORA")]
    assert "DIFFUSERS_LORA" in allowed and "SAFETENSORS" not in allowed
    assert blocking["output_model_format"].endswith("pick one of " + ", ".join(allowed))
    fixed = client.post("/api/config/validate", json={**raw, "output_model_format": "DIFFUSERS_LORA"}).json
    assert "output_model_format" not in {w["field"] for w in fixed["warnings"] if w.get("blocking")}
    refused = client.post("/api/training/start", json={"config": raw})
    assert refused.status_code == 400 and any(d["field"] == "output_model_format" for d in refused.json["detail"])


@pytest.mark.parametrize("field, value, hint", [("train_dtype", "FLOAT_8", "FLOAT_32"),
                                                ("train_device", "gpu0", "cuda:N"),
                                                ("output_dtype", "INT_8", "BFLOAT_16")])
def test_onetrainer_dtypes_and_devices(client, with_onetrainer, field, value, hint):
    config = {"model_type": "FLUX_DEV_1", "training_method": "LORA", "output_model_format": "DIFFUSERS_LORA",
              field: value}
    blocking = {w["field"]: w["message"] for w in client.post("/api/config/validate", json=config).json["warnings"]
                if w.get("blocking")}
    assert hint in blocking[field]


def test_reading_onetrainers_rules_leaves_this_process_untouched():
    """OneTrainer's enums are read in a probe process: the asking process (the web, where other
    greenlets import meanwhile) never imports OneTrainer's ``modules`` nor swaps its path, even briefly."""
    import sys

    from webapp.config import onetrainer_rules
    seen = []
    watching = [True]

    def audit(event, args):  # audit hooks stay for the process: this one is switched off after
        if watching[0] and event == "import" and str(args[0]).split(".")[0] == "modules":
            seen.append(args[0])

    sys.addaudithook(audit)
    onetrainer_rules._read_formats.cache_clear()
    try:
        table = output_formats(checkout())
    finally:
        watching[0] = False
    assert ("STABLE_DIFFUSION_15", "LORA") in table and table[("STABLE_DIFFUSION_15", "LORA")]
    assert seen == []

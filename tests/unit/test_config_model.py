"""The config model against OneTrainer's own data: defaults, presets, schema, migration, packing,
per-field errors and the built-in trainer's warnings."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import MultiDict

from webapp.config import forms, train_config
from webapp.config.checks import validate
from webapp.config.loading import ConfigFormatError, normalise, pack, parse_json
from webapp.config.migrate import migrate

REPO = Path(__file__).resolve().parents[2]
ONETRAINER = REPO / ".." / "shared" / "onetrainer"
PRESETS = sorted((ONETRAINER / "presets").glob("*.json"))
OUR_PRESETS = REPO / "configs" / "presets"


def read(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def export(raw: dict, workspace: Path) -> dict:
    """What the library's export writes: migrated, whole, packed, through JSON text."""
    config, _ = normalise(raw)
    packed, _ = pack(config, workspace)
    return json.loads(json.dumps(packed))


def lost_or_changed(original, exported, path="") -> list[str]:
    """Keys of ``original`` missing from ``exported`` or holding another value (nested objects
    compared key by key, since export adds the defaults they lacked)."""
    if isinstance(original, dict) and isinstance(exported, dict):
        return [problem for key, value in original.items()
                for problem in (lost_or_changed(value, exported[key], f"{path}.{key}") if key in exported
                                else [f"{path}.{key} lost"])]
    if isinstance(original, list) and isinstance(exported, list) and len(original) == len(exported):
        return [p for i, (a, b) in enumerate(zip(original, exported)) for p in lost_or_changed(a, b, f"{path}[{i}]")]
    same = original == exported and type(original) is type(exported)
    return [] if same else [f"{path}: {original!r} became {exported!r}"]


def test_the_config_code_imports_no_model_library():
    code = ("import sys, webapp.web.configs.pages, webapp.web.configs.api; "
            "print(sorted(m for m in ('torch', 'diffusers', 'PIL') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_shared_onetrainer_data_is_there():
    assert len(PRESETS) >= 5, f"no OneTrainer presets in {ONETRAINER}"


def test_our_defaults_are_onetrainers():
    assert train_config.defaults() == read(ONETRAINER / "default_train_config.json")
    assert train_config.CONCEPT.defaults == read(ONETRAINER / "default_concepts.json")[0]
    assert train_config.SAMPLE.defaults == read(ONETRAINER / "default_samples_sd15.json")[0]
    secrets = train_config.defaults()["secrets"]
    assert secrets["huggingface_token"] == "" and secrets["cloud"]["api_key"] == "" == secrets["cloud"]["password"]


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_each_onetrainer_preset_validates_and_exports_unchanged(preset, tmp_path):
    raw = read(preset)
    report = validate(raw, tmp_path)
    assert report.errors == []
    exported = export(raw, tmp_path)
    assert lost_or_changed(raw, exported) == []
    assert exported["__version"] == train_config.CURRENT_VERSION
    assert set(exported) >= set(train_config.defaults())  # whole: OneTrainer itself loads it


def test_the_defaults_validate_and_export_exactly(tmp_path):
    defaults = read(ONETRAINER / "default_train_config.json")
    assert validate(defaults, tmp_path).errors == []
    assert export(defaults, tmp_path) == defaults


def test_unknown_keys_survive_a_round_trip_everywhere(tmp_path):
    raw = {"__version": 11, "my_note": {"deep": [1, "x", None]}, "unet": {"my_flag": True, "train": False},
           "concepts": [{"path": "a", "extra": 7}], "samples": [{"prompt": "p", "colour": "red"}], "seed": 3}
    exported = export(raw, tmp_path)
    assert lost_or_changed(raw, exported) == []
    assert exported["concepts"][0]["balancing_strategy"] == "REPEATS"  # the concept's defaults filled in


def test_values_keep_their_json_type(tmp_path):
    raw = {"learning_rate_warmup_steps": 20, "learning_rate": 0.0003, "resolution": "512"}
    exported = export(raw, tmp_path)
    assert json.dumps(exported["learning_rate_warmup_steps"]) == "20"  # not 20.0


def test_schema_describes_every_field():
    schema = train_config.json_schema()
    assert set(schema["properties"]) == set(train_config.defaults())
    assert schema["properties"]["training_method"]["enum"] == ["FINE_TUNE", "LORA", "EMBEDDING", "FINE_TUNE_VAE"]
    assert schema["properties"]["sample_after_unit"]["enum"][0] == "EPOCH"
    assert schema["properties"]["learning_rate"]["exclusiveMinimum"] == 0
    assert schema["properties"]["unet"] == {"$ref": "#/$defs/ModelPartConfig", "title": "UNet"}
    assert "ConceptConfig" in schema["$defs"] and "SampleConfig" in schema["$defs"]
    concepts = schema["properties"]["concepts"]["anyOf"]
    assert concepts[0]["items"] == {"$ref": "#/$defs/ConceptConfig"} and concepts[1] == {"type": "null"}
    json.dumps(schema)


@pytest.mark.parametrize("patch, field, message", [
    ({"learning_rate": "fast"}, "learning_rate", "must be a number"),
    ({"learning_rate": 0}, "learning_rate", "greater than 0"),
    ({"epochs": 1.5}, "epochs", "whole number"),
    ({"batch_size": True}, "batch_size", "whole number"),
    ({"training_method": "FAST"}, "training_method", "not one of"),
    ({"model_type": "not a name!"}, "model_type", "not a ModelType name"),
    ({"sample_after_unit": "WEEK"}, "sample_after_unit", "not one of"),
    ({"resolution": "big"}, "resolution", "one size"),
    ({"unet": {"learning_rate": -1}}, "unet.learning_rate", "greater than 0"),
    ({"unet": "yes"}, "unet", "must be an object"),
    ({"optimizer": {"optimizer": 5}}, "optimizer.optimizer", "must be one of"),
    ({"concepts": [{"path": 3}]}, "concepts[0].path", "must be text"),
    ({"concepts": [{"balancing_strategy": "MORE"}]}, "concepts[0].balancing_strategy", "not one of"),
    ({"concepts": "all"}, "concepts", "must be a list"),
    ({"samples": [7]}, "samples[0]", "must be an object"),
    ({"samples": [{"cfg_scale": -2}]}, "samples[0].cfg_scale", "at least 0"),
    ({"base_model_name": "a\x00b"}, "base_model_name", "NUL"),
    ({"save_filename_prefix": "x" * 20_000}, "save_filename_prefix", "too long"),
    ({"tensorboard": "yes"}, "tensorboard", "true or false"),
])
def test_errors_name_the_field(tmp_path, patch, field, message):
    errors = validate(patch, tmp_path).errors
    assert [e["field"] for e in errors] == [field], errors
    assert message in errors[0]["message"]


def test_open_enums_take_new_names_closed_ones_do_not(tmp_path):
    assert validate({"model_type": "SOME_FUTURE_MODEL", "optimizer": {"optimizer": "NEW_OPT"}}, tmp_path).valid
    assert not validate({"learning_rate_scheduler": "NEW_ONE"}, tmp_path).valid


@pytest.mark.parametrize("raw", [[], "x", 3, None])
def test_a_config_is_an_object(raw, tmp_path):
    assert validate(raw, tmp_path).errors == [{"field": "", "message": "a config is a JSON object"}]


def test_parse_json_refuses_nan_and_deep_junk():
    with pytest.raises(ConfigFormatError):
        parse_json('{"learning_rate": NaN}')
    with pytest.raises(ConfigFormatError):
        parse_json("[" * 100 + "]" * 100)
    with pytest.raises(ConfigFormatError):
        parse_json("[" * 100_000)


def test_old_versions_are_migrated(tmp_path):
    raw = {"__version": 4, "save_after": 2, "save_after_unit": "EPOCH", "optimizer": "ADAFACTOR",
           "concepts": [{"__version": 1, "path": "x", "repeats": 3.0}]}
    config, notes = normalise(raw)
    assert config["save_every"] == 2 and config["save_every_unit"] == "EPOCH" and "save_after" not in config
    assert config["optimizer"]["optimizer"] == "ADAFACTOR"
    concept = config["concepts"][0]
    assert concept["balancing"] == 3.0 and concept["balancing_strategy"] == "REPEATS" and "repeats" not in concept
    assert config["__version"] == 11 and any("save_every" in note for note in notes)
    assert validate(raw, tmp_path).valid


def test_a_current_config_is_not_migrated():
    raw = {"__version": 11, "save_after": 5}  # not a field at version 11: an unknown key, kept
    assert migrate(raw) == (raw, [])


def test_concepts_and_samples_from_files_are_packed_inline(tmp_path):
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "concepts.json").write_text(json.dumps([{"path": "imgs", "repeats": 2}]))
    (tmp_path / "lists" / "samples.json").write_text(json.dumps([{"prompt": "a cat", "seed": 1}]))
    raw = {"concept_file_name": "lists/concepts.json", "sample_definition_file_name": "lists/samples.json"}
    exported = export(raw, tmp_path)
    assert exported["concepts"][0]["path"] == "imgs" and exported["concepts"][0]["balancing"] == 2
    assert exported["samples"][0]["prompt"] == "a cat" and exported["samples"][0]["cfg_scale"] == 7.5
    assert exported["concept_file_name"] == "lists/concepts.json"  # kept: OneTrainer reads inline first


def test_unreadable_list_files_warn_and_change_nothing(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    report = validate({"concept_file_name": "bad.json", "sample_definition_file_name": "samples.txt"}, tmp_path)
    assert report.valid
    warned = {w["field"]: w["message"] for w in report.warnings}
    assert "not valid JSON" in warned["concept_file_name"]
    assert "cannot read samples.txt" in warned["sample_definition_file_name"]  # any name is read (issue 27)
    assert pack(report.config, tmp_path)[0]["concepts"] is None
    outside = validate({"sample_definition_file_name": "/etc/passwd"}, tmp_path)  # outside the roots: an error
    assert [e["field"] for e in outside.errors] == ["sample_definition_file_name"]


def test_the_builtin_trainer_warnings_come_from_its_reader(tmp_path):
    sdxl = validate(read(OUR_PRESETS / "sdxl_1.0_LoRA.json"), tmp_path)
    assert sdxl.valid
    assert "model_type" not in {w["field"] for w in sdxl.warnings if w.get("blocking")}  # trained since #6
    flux = validate({**read(OUR_PRESETS / "sdxl_1.0_LoRA.json"), "model_type": "FLUX_DEV_1"}, tmp_path)
    assert flux.valid
    blocking = {w["field"]: w["message"] for w in flux.warnings if w.get("blocking")}
    assert "not supported by the built-in trainer" in blocking["model_type"]
    assert "STABLE_DIFFUSION_XL_10_BASE" in blocking["model_type"]  # the list of what is
    raw = read(OUR_PRESETS / "demo.json")
    raw.update(dataloader_threads=4, samples=[{**raw["samples"][0], "text_encoder_1_layer_skip": 1}])
    demo = validate(raw, tmp_path)
    assert not [w for w in demo.warnings if w.get("blocking")], demo.warnings
    ignored = {w["field"] for w in demo.warnings}
    assert "dataloader_threads" in ignored and "samples[0].text_encoder_1_layer_skip" in ignored
    assert not ignored & {"learning_rate", "epochs", "lora_rank", "samples[0].prompt", "concepts[0].path",
                          "concepts[0].name", "samples[0].noise_scheduler"}


def test_the_demo_preset_is_the_demo_config():
    from webapp.trainer.demo import demo_config
    assert read(OUR_PRESETS / "demo.json") == demo_config(), (
        "configs/presets/demo.json differs from demo_config(); write it again with: .venv/bin/python -c "
        "\"from pathlib import Path; from webapp.trainer.demo import demo_config; from webapp.config.loading "
        "import dumps; Path('configs/presets/demo.json').write_text(dumps(demo_config()))\"")


@pytest.mark.parametrize("preset", sorted(OUR_PRESETS.glob("*.json")), ids=lambda p: p.name)
def test_our_presets_are_valid(preset, tmp_path):
    assert validate(read(preset), tmp_path).errors == []


def test_every_form_field_is_a_model_field():
    for tab in forms.TABS:
        for path in tab.fields:
            assert train_config.field_at(path) is not None, path
    for name, row_fields in forms.ROW_FIELDS.items():
        for row_field in row_fields:
            assert train_config.field_at(f"{name}[0].{row_field}") is not None


def test_the_form_reads_typed_values_and_keeps_unchanged_ones():
    base, _ = normalise({"backup_after": 10, "learning_rate": 0.001, "concepts": [{"path": "a", "extra": 1}]})
    form = MultiDict({"backup_after": "10.0", "learning_rate": "3e-4", "epochs": "oops", "resolution": "768",
                      "concepts.__list": "1", "concepts[0].__json": json.dumps(base["concepts"][0]),
                      "concepts[0].path": "b", "concepts[0].balancing": "2"})
    result = forms.apply_form(base, form)
    assert result.config["backup_after"] == 10 and isinstance(result.config["backup_after"], int)
    assert result.config["learning_rate"] == 0.0003 and result.config["resolution"] == "768"
    assert result.errors == {"epochs": "must be a whole number"} and result.texts == {"epochs": "oops"}
    assert result.config["tensorboard"] is False  # an unchecked box
    concept = result.config["concepts"][0]
    assert concept["path"] == "b" and concept["balancing"] == 2 and concept["extra"] == 1


def test_check_text_is_the_models_check():
    assert forms.check_text("learning_rate", "-1") == "must be greater than 0"
    assert forms.check_text("learning_rate", "abc") == "must be a number"
    assert forms.check_text("learning_rate", "1e-4") is None
    assert forms.check_text("concepts[3].balancing_strategy", "X").startswith("'X' is not one of")
    assert forms.check_text("../etc", "1") == "not a field of this form"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20)
field_names = st.sampled_from(sorted(train_config.defaults()) + ["concepts", "samples", "x"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=st.dictionaries(field_names, json_values, max_size=6) | json_values)
def test_any_json_gets_field_errors_never_an_exception(config, tmp_path):
    report = validate(config, tmp_path)
    for error in report.errors + report.warnings:
        assert isinstance(error["field"], str) and isinstance(error["message"], str) and error["message"]
    if report.valid:
        json.dumps(pack(report.config, tmp_path)[0], allow_nan=False)

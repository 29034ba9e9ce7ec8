"""The config library on disk: names, presets, atomic writes, version checks, and no path outside
its folder, whatever name it is given."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from webapp.config.library import PRESETS_DIR, ConfigConflict, ConfigLibrary, ConfigNotFound, InvalidConfigName, ReadOnlyConfig, check_name, config_path, list_configs, sanitize_name


@pytest.fixture
def library(tmp_path) -> ConfigLibrary:
    return ConfigLibrary(tmp_path / "configs")


def files_under(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()}


def test_presets_are_listed_after_the_users_configs(library):
    library.save("b", {"learning_rate": 1})
    library.save("a", {"learning_rate": 2})
    names = library.names()
    assert names[:2] == ["a", "b"]
    assert {"presets/demo", "presets/sd_1.5_LoRA", "presets/sdxl_1.0_LoRA"} <= set(names[2:])
    assert all(entry["read_only"] == entry["name"].startswith("presets/") for entry in library.entries())


def test_save_then_read_keeps_the_config_as_written(library):
    config = {"__version": 11, "learning_rate": 0.0003, "mine": {"x": [1, 2]}, "prompt": "ünïcode"}
    version = library.save("first", config)
    stored = library.read("first")
    assert stored.raw == config and stored.version == version and not stored.read_only
    text = (library.folder / "first.json").read_text(encoding="utf-8")
    assert text.startswith('{\n    "__version": 11') and "ünïcode" in text  # as OneTrainer writes


def test_writes_leave_no_temporary_files(library):
    for step in range(3):
        library.save("x", {"epochs": step})
    assert files_under(library.folder) == {"x.json", ".lock"}


def test_a_save_from_a_stale_version_is_refused(library):
    loaded = library.save("shared", {"epochs": 1})
    library.save("shared", {"epochs": 2}, expected_version=loaded)  # someone else's save
    with pytest.raises(ConfigConflict, match="changed or deleted by someone else"):
        library.save("shared", {"epochs": 3}, expected_version=loaded)
    assert library.read("shared").raw == {"epochs": 2}


def test_create_refuses_an_existing_name(library):
    library.save("taken", {})
    with pytest.raises(ConfigConflict, match="exists already"):
        library.save("taken", {"epochs": 5}, create=True)


def test_presets_are_read_only(library):
    assert library.read("presets/demo").read_only
    for action in (lambda: library.save("presets/demo", {}), lambda: library.delete("presets/demo"),
                   lambda: library.rename("presets/demo", "mine"), lambda: library.rename("x", "presets/y")):
        with pytest.raises(ReadOnlyConfig):
            action()
    before = (PRESETS_DIR / "demo.json").read_bytes()
    copy = library.duplicate("presets/demo")
    assert copy == "demo copy" and library.read(copy).raw == json.loads(before)
    assert library.duplicate("presets/demo") == "demo copy 2"


def test_rename_and_delete(library):
    version = library.save("old", {"epochs": 1})
    library.rename("old", "new")
    assert library.names()[0] == "new"
    with pytest.raises(ConfigNotFound):
        library.read("old")
    library.save("other", {})
    with pytest.raises(ConfigConflict):
        library.rename("new", "other")
    library.delete("new", expected_version=version)
    with pytest.raises(ConfigNotFound):
        library.delete("new")


@pytest.mark.parametrize("name", ["", "../x", "a/b", "/etc/passwd", ".hidden", "x\x00y", "a..b", "x" * 101,
                                  "presets/../../x", "presets/", "dot.", None, 5, "C:\\x", "name\n"])
def test_bad_names_are_refused(library, name):
    with pytest.raises((InvalidConfigName, ReadOnlyConfig)):
        library.save(name, {})
    with pytest.raises(InvalidConfigName):
        library.read(name) if name is not None and not isinstance(name, int) else check_name(name)


@pytest.mark.parametrize("raw, name", [("My Config (v2).json", "My Config -v2-"), ("../../etc/passwd", "passwd"),
                                       ("C:\\Users\\me\\sd.json", "sd"), ("  ..a..b.json", "a.b"),
                                       ("ünï cödé", "n- c-d-")])
def test_sanitize_name(raw, name):
    assert sanitize_name(raw) == name


def test_sanitize_refuses_what_leaves_nothing():
    with pytest.raises(InvalidConfigName):
        sanitize_name("../..")


def test_a_link_out_of_the_folder_is_not_followed(library, tmp_path):
    library.folder.mkdir(parents=True)
    (tmp_path / "secret.json").write_text('{"secret": 1}')
    os.symlink(tmp_path / "secret.json", library.folder / "sneaky.json")
    with pytest.raises(InvalidConfigName):
        library.read("sneaky")


def test_unreadable_files_are_a_clear_error(library):
    library.folder.mkdir(parents=True)
    (library.folder / "broken.json").write_text("{nope")
    (library.folder / "list.json").write_text("[1]")
    with pytest.raises(ValueError, match="not valid JSON"):
        library.read("broken")
    with pytest.raises(ValueError, match="does not hold a JSON object"):
        library.read("list")


def test_the_library_functions_the_app_calls(tmp_path):
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "old.json").write_text(json.dumps({"__version": 5, "save_after": 3, "mine": 1}))
    assert list_configs(folder)[0] == "old" and "presets/demo" in list_configs(folder)
    assert ConfigLibrary(folder).read("old").raw == {"__version": 5, "save_after": 3, "mine": 1}
    assert ConfigLibrary(folder).read("presets/demo").raw == json.loads((PRESETS_DIR / "demo.json").read_text())
    assert config_path(folder, "presets/demo") == PRESETS_DIR / "demo.json"
    assert list_configs(tmp_path / "missing") == sorted(list_configs(tmp_path / "missing"))
    with pytest.raises(ConfigNotFound):
        ConfigLibrary(folder).read("nope")
    with pytest.raises(InvalidConfigName):
        check_name("../x")


hostile_names = st.one_of(
    st.text(max_size=120),
    st.builds(lambda a, b: f"{a}/{b}", st.sampled_from(["..", "presets", "", ".", "x"]), st.text(max_size=20)),
    st.sampled_from(["../escape", "..", "presets/../../escape", "x\x00.json", "/tmp/escape", "~/escape"]))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=hostile_names)
def test_no_name_writes_outside_the_folder(tmp_path, name):
    root = tmp_path / "hostile"
    root.mkdir(exist_ok=True)
    library = ConfigLibrary(root / "configs")
    before = {f for f in files_under(root) if not f.startswith("configs/")}
    try:
        library.save(name, {"epochs": 1})
    except (InvalidConfigName, ReadOnlyConfig, ConfigConflict):
        pass
    else:
        assert (root / "configs" / f"{name}.json").resolve().parent == (root / "configs").resolve()
    outside = {f for f in files_under(root) if not f.startswith("configs/")}
    assert outside == before
    assert files_under(PRESETS_DIR) == {"demo.json", "sd_1.5_LoRA.json", "sdxl_1.0_LoRA.json"}

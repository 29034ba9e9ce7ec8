"""A workspace built by an older `otweb demo` gets the current demo model: `otweb demo` (and
`otweb serve`'s start, which asks demo_current) rebuilds a model whose version marker is missing or
another version's, with its dataset; a current one is kept."""
from __future__ import annotations

import json

from webapp.trainer.demo import (CONFIG_NAME, DATASET_DIR, MODEL_DIR, MODEL_VERSION, VERSION_FILE, build_demo,
                                 demo_current, model_current)


def old_workspace(root):
    """What an older `otweb demo` left: a model folder without the marker, a dataset, the config."""
    workspace, config_dir = root / "workspace", root / "configs"
    (workspace / MODEL_DIR).mkdir(parents=True)
    (workspace / MODEL_DIR / "model_index.json").write_text("{}")
    (workspace / DATASET_DIR).mkdir(parents=True)
    (workspace / DATASET_DIR / "old.txt").write_text("an old caption\n")
    config_dir.mkdir()
    (config_dir / CONFIG_NAME).write_text(json.dumps({"edited": True}))
    return workspace, config_dir


def test_a_model_of_another_version_is_not_current(tmp_path):
    workspace, config_dir = old_workspace(tmp_path)
    assert not demo_current(workspace, config_dir)
    (workspace / MODEL_DIR / VERSION_FILE).write_text(f"{MODEL_VERSION - 1}\n")
    assert not model_current(workspace / MODEL_DIR)
    (workspace / MODEL_DIR / VERSION_FILE).write_text(f"{MODEL_VERSION}\n")
    assert demo_current(workspace, config_dir)


def test_otweb_demo_rebuilds_an_old_model_and_keeps_a_current_one(tmp_path):
    workspace, config_dir = old_workspace(tmp_path)
    build_demo(workspace, config_dir)
    model = workspace / MODEL_DIR
    assert (model / VERSION_FILE).read_text().strip() == str(MODEL_VERSION)
    assert (model / "vae" / "config.json").is_file() and demo_current(workspace, config_dir)
    assert not (workspace / DATASET_DIR / "old.txt").exists()  # the dataset drawn again for the new model
    assert json.loads((config_dir / CONFIG_NAME).read_text()) == {"edited": True}  # the user's config kept
    built_at = (model / "vae" / "config.json").stat().st_mtime_ns
    build_demo(workspace, config_dir)
    assert (model / "vae" / "config.json").stat().st_mtime_ns == built_at

"""Bad data never fails a run half-way: unusable files are skipped before training with one
warning each and a count on the run page; odd but valid images are converted as a person expects;
a dataset with nothing usable ends the run before its first step, saying why."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from support.recording import RecordingCallbacks
from webapp import store
from webapp.protocol import Event, make_event
from webapp.trainer.builtin.images import to_rgb
from webapp.trainer.commands import TrainCommands

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def data_root(tmp_path, monkeypatch):
    """The datasets here live in tmp_path: a read root, as an admin would name it (the trainer
    checks each folder and file against the read roots where it opens them)."""
    monkeypatch.setenv("OTWEB_DATA_ROOTS", str(tmp_path))


def bad_files(folder):
    """One file of each kind a real dataset turns up; returns the names that must be skipped."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.png").write_bytes(b"")
    good = np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8)
    Image.fromarray(good).save(folder / "whole.jpg", quality=95)
    data = (folder / "whole.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[:len(data) // 2])
    (folder / "whole.jpg").unlink()
    (folder / "noise.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    Image.new("RGB", (64, 64), "green").save(folder / "latin1.png")
    (folder / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    Image.new("CMYK", (64, 64), (0, 255, 255, 0)).save(folder / "cmyk.jpg")
    Image.fromarray(np.full((64, 64), 40000, dtype=np.uint16)).save(folder / "sixteen.png")
    palette = Image.new("P", (64, 64))
    palette.putpalette([255, 0, 0] * 256)
    palette.save(folder / "palette_alpha.png", transparency=0)
    return {"empty.png", "truncated.jpg", "noise.png", "latin1.png"}


def test_odd_images_are_converted_as_a_person_expects(tmp_path):
    bad_files(tmp_path)
    with Image.open(tmp_path / "sixteen.png") as image:  # 40000 of 65535: a mid grey, not white
        assert abs(int(np.asarray(to_rgb(image))[0, 0, 0]) - 40000 * 255 // 65535) <= 1
    with Image.open(tmp_path / "palette_alpha.png") as image:  # fully transparent: white, not the hidden red
        assert tuple(np.asarray(to_rgb(image))[0, 0]) == (255, 255, 255)
    with Image.open(tmp_path / "cmyk.jpg") as image:
        red, green, blue = (int(v) for v in np.asarray(to_rgb(image))[0, 0])
        assert red > 200 and green < 60 and blue < 60


def test_bad_files_are_skipped_once_each_and_counted(demo_workspace, demo_config, tmp_path):
    from webapp.trainer.builtin import BuiltinBackend
    dataset = tmp_path / "dataset"
    shutil.copytree(demo_workspace[0] / demo_config["concepts"][0]["path"], dataset)
    skipped = bad_files(dataset)
    config = {**demo_config, "epochs": 1, "sample_after_unit": "NEVER",
              "concepts": [{**demo_config["concepts"][0], "path": str(dataset)}]}
    recorder, commands = RecordingCallbacks(), TrainCommands()
    backend = BuiltinBackend(config, recorder, commands, run_dir=tmp_path / "run", base_dir=demo_workspace[0])
    backend.start()
    backend.train()
    backend.end()
    warnings = [e["text"] for e in recorder.of(Event.LOG) if e["level"] == "warning"]
    for name in skipped:
        assert sum(name in text for text in warnings if text.startswith("skipped /")) == 1, (name, warnings)
    for name in ("cmyk.jpg", "sixteen.png", "palette_alpha.png"):
        assert not any(name in text for text in warnings), f"{name} was skipped"
    summary = [e for e in recorder.of(Event.LOG) if e.get("skipped_files")]
    assert [e["skipped_files"] for e in summary] == [len(skipped)]
    assert recorder.of(Event.PROGRESS), "the run trained on what was left"
    # the count is folded into the run's record, for the run page
    conn = store.connect(tmp_path / "record.sqlite3")
    store.init_schema(conn)
    run_id = store.create_run(conn, "bad", config)
    store.append_event(conn, run_id, make_event(Event.LOG, **summary[0]))
    assert store.get_run(conn, run_id)["skipped_files"] == len(skipped)
    conn.close()


def test_nothing_usable_ends_the_run_before_training(demo_workspace, demo_config, tmp_path):
    from webapp.trainer.builtin import BuiltinBackend
    dataset = tmp_path / "dataset"
    bad_files(dataset)
    for name in ("cmyk.jpg", "sixteen.png", "palette_alpha.png"):
        (dataset / name).unlink()
    config = {**demo_config, "concepts": [{**demo_config["concepts"][0], "path": str(dataset)}]}
    recorder = RecordingCallbacks()
    backend = BuiltinBackend(config, recorder, TrainCommands(), run_dir=tmp_path / "run", base_dir=demo_workspace[0])
    with pytest.raises(ValueError, match="nothing to train on"):
        backend.start()
    backend.end()
    assert not recorder.of(Event.PROGRESS)

"""The latent and text-embedding cache: exact invalidation, atomic entries, a stop mid-way."""
from __future__ import annotations

import json
import os

import pytest
import torch
from PIL import Image

from webapp.trainer.builtin.cache import LATENTS, TEXTS
from webapp.trainer.callbacks import TrainCallbacks
from webapp.trainer.commands import TrainCommands


@pytest.fixture(autouse=True)
def data_root(tmp_path, monkeypatch):
    """The datasets here live in tmp_path: a read root, as an admin would name it (the trainer
    checks each folder and file against the read roots where it opens them)."""
    monkeypatch.setenv("OTWEB_DATA_ROOTS", str(tmp_path))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from webapp.trainer.demo import build_demo
    root = tmp_path_factory.mktemp("cache-demo")
    build_demo(root / "workspace", root / "configs")
    return root / "workspace", json.loads((root / "configs" / "demo.json").read_text())


def write_concept(folder, colour):
    folder.mkdir(parents=True)
    for index in range(3):
        Image.new("RGB", (64, 64), colour).save(folder / f"{index}.png")
        (folder / f"{index}.txt").write_text(f"{colour} {index}, circle, on, white, background\n")


def start(workspace, config, tmp_path, commands=None):
    from webapp.trainer.builtin import BuiltinBackend
    statuses = []

    class Callbacks(TrainCallbacks):
        def status(self, text):
            statuses.append(text)

    backend = BuiltinBackend(config, Callbacks(), commands or TrainCommands(),
                             run_dir=tmp_path / "run", base_dir=workspace)
    backend.start()
    return backend, statuses


def test_only_what_changed_is_encoded_again(demo, tmp_path):
    workspace, base = demo
    write_concept(tmp_path / "red", "red")
    write_concept(tmp_path / "blue", "blue")
    concepts = [{"path": str(tmp_path / "red")}, {"path": str(tmp_path / "blue")}]
    config = {**base, "concepts": concepts, "cache_dir": str(tmp_path / "cache"),
              "clear_cache_before_training": False}
    first, statuses = start(workspace, config, tmp_path)
    assert first.data.cache.computed == {LATENTS: 6, TEXTS: 6}
    assert statuses[-2:] == ["caching 12/12", "training"] or statuses[-1] == "caching 12/12"
    again, _ = start(workspace, config, tmp_path)
    assert again.data.cache.computed == {LATENTS: 0, TEXTS: 0}
    assert again.data.cache.reused == {LATENTS: 6, TEXTS: 6}

    image = tmp_path / "red" / "1.png"
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10 ** 9))  # touched
    shuffled = {**concepts[1], "text": {"enable_tag_shuffling": True, "keep_tags_count": 1}}
    changed, _ = start(workspace, {**config, "concepts": [concepts[0], shuffled]}, tmp_path)
    data = changed.data
    differ = sum(data.caption(i, 0) != item.caption for i, item in enumerate(data.items))
    assert 0 < differ <= 3
    assert data.cache.computed == {LATENTS: 1, TEXTS: differ}

    cleared, _ = start(workspace, {**config, "clear_cache_before_training": True}, tmp_path)
    assert cleared.data.cache.computed == {LATENTS: 6, TEXTS: 6}


class StopAfter(TrainCommands):
    """A stop that arrives after ``polls`` polls (the caching loop polls before each entry)."""

    def __init__(self, polls):
        super().__init__()
        self.left = polls

    def poll(self):
        self.left -= 1
        if self.left <= 0:
            self.stop()


def test_a_stop_during_caching_leaves_whole_entries(demo, tmp_path):
    workspace, base = demo
    write_concept(tmp_path / "red", "red")
    config = {**base, "concepts": [{"path": str(tmp_path / "red")}],
              "cache_dir": str(tmp_path / "cache")}
    # polls: one after loading the model, then one before each cache entry (of 6)
    backend, _ = start(workspace, config, tmp_path, commands=StopAfter(4))
    assert backend.data is None
    files = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert len(files) == 2
    for path in files:
        assert path.suffix == ".pt" and not path.name.startswith(".")
        assert torch.load(path, weights_only=True).shape == (4, 16, 16)
    backend.train()  # reports a stopped run without training

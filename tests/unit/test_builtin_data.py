"""The built-in trainer's data path on small generated datasets: concepts, balancing, buckets,
captions (seeded). No model is loaded: the epoch plan and the captions need none."""
from __future__ import annotations

import random
from collections import Counter

import pytest
from PIL import Image

from webapp.trainer.builtin import buckets, concepts
from webapp.trainer.builtin.captions import render_caption
from webapp.trainer.builtin.data import TrainingData
from webapp.config.builtin.train_settings import ConceptSpec, ConfigError, TrainSettings


def write_images(folder, sizes, caption="a, b, c", suffix=".png"):
    folder.mkdir(parents=True, exist_ok=True)
    for index, (width, height) in enumerate(sizes):
        Image.new("RGB", (width, height), (index * 20 % 255, 90, 160)).save(folder / f"img{index:02d}{suffix}")
        (folder / f"img{index:02d}.txt").write_text(caption + "\n")


def settings_for(tmp_path, concept_list, **overrides):
    config = {"base_model_name": "models/none", "training_method": "LORA", "resolution": "64", "batch_size": 2,
              "aspect_ratio_bucketing": True, "concepts": concept_list, **overrides}
    return TrainSettings.from_config(config, tmp_path)


def plan(settings, tmp_path):
    items = concepts.find_items(settings.concepts, min(settings.resolutions), lambda *a: None)
    return TrainingData(settings, items, parts=None, device=None, cache=None)


def test_buckets_have_about_equal_area_and_fit_the_aspect():
    for resolution in (64, 512, 768):
        sizes = buckets.bucket_sizes(resolution)
        assert (resolution, resolution) in sizes
        quantum = buckets.quantum_for(resolution)
        for width, height in sizes:
            assert width % quantum == 0 and height % quantum == 0
            assert abs(width * height / resolution ** 2 - 1) < 0.2, (width, height)
    assert buckets.assign(1024, 512, 512) == (704, 384)   # 2:1 → the widest bucket near 2:1
    assert buckets.assign(512, 1024, 512) == (384, 704)
    assert buckets.assign(600, 590, 512) == (512, 512)
    assert buckets.assign(1024, 512, 512, bucketing=False) == (512, 512)


def test_each_batch_is_drawn_from_one_bucket(tmp_path):
    sizes = [(64, 64)] * 5 + [(128, 64)] * 4 + [(48, 96)] * 3
    write_images(tmp_path / "a", sizes)
    settings = settings_for(tmp_path, [{"path": "a"}], resolution="64,128")
    data = plan(settings, tmp_path)
    assert len(data.samples) == 24  # each image at each resolution
    for sample in data.samples:
        item = data.items[sample.item]
        assert sample.bucket == buckets.assign(item.width, item.height, sample.resolution)
    assert {data.samples[0].bucket, data.samples[1].bucket} == {(64, 64), (128, 128)}
    for epoch in range(3):
        batches = data.epoch_batches(epoch)
        assert batches and all(len({data.samples[i].bucket for i in b}) == 1 for b in batches)
        assert all(len(b) == 2 for b in batches)
    assert data.epoch_batches(1) == data.epoch_batches(1) != data.epoch_batches(2)


def test_balancing_repeats_and_samples(tmp_path):
    write_images(tmp_path / "many", [(64, 64)] * 10)
    write_images(tmp_path / "few", [(64, 64)] * 3)
    write_images(tmp_path / "off", [(64, 64)] * 3)
    settings = settings_for(tmp_path, [
        {"path": "many", "balancing": 1.5, "balancing_strategy": "REPEATS"},
        {"path": "few", "balancing": 7, "balancing_strategy": "SAMPLES", "loss_weight": 2.0},
        {"path": "off", "enabled": False}], batch_size=1, aspect_ratio_bucketing=False)
    data = plan(settings, tmp_path)
    assert len(data.items) == 13
    for epoch in range(3):
        counts = Counter(data.items[data.samples[b[0]].item].concept_index
                         for b in data.epoch_batches(epoch))
        assert counts == {0: 15, 1: 7}
        per_image = Counter(data.samples[b[0]].item for b in data.epoch_batches(epoch))
        assert sorted(per_image[i] for i in range(10, 13)) == [2, 2, 3]


def test_subdirectories_and_bad_images(tmp_path):
    write_images(tmp_path / "c", [(64, 64)], suffix=".jpg")
    write_images(tmp_path / "c" / "sub", [(64, 64)], suffix=".webp")
    (tmp_path / "c" / "broken.png").write_bytes(b"not a png")
    Image.new("RGB", (8, 8)).save(tmp_path / "c" / "tiny.png")
    logged = []
    for recursive, expected in ((False, ["img00.jpg"]), (True, ["img00.jpg", "img00.webp"])):
        settings = settings_for(tmp_path, [{"path": "c", "include_subdirectories": recursive}])
        items = concepts.find_items(settings.concepts, 64, lambda text, level="info": logged.append(text))
        assert [i.image_path.name for i in items] == expected
    assert any("broken.png" in line for line in logged) and any("tiny.png" in line for line in logged)


def test_prompt_sources(tmp_path):
    write_images(tmp_path / "p", [(64, 64)] * 2, caption="from the txt")
    (tmp_path / "lines.txt").write_text("first line\nsecond line\n")
    settings = settings_for(tmp_path, [
        {"path": "p"}, {"path": "p", "text": {"prompt_source": "filename"}},
        {"path": "p", "text": {"prompt_source": "concept", "prompt_path": "lines.txt"}}])
    items = concepts.find_items(settings.concepts, 64, lambda *a: None)
    assert [i.captions for i in items[::2]] == [["from the txt"], ["img00"], ["first line", "second line"]]
    with pytest.raises(ConfigError, match=r"concepts\[0\].text.prompt_path"):
        settings_for(tmp_path, [{"path": "p", "text": {"prompt_source": "concept"}}])


def concept(**text):
    return ConceptSpec(path="x", **text)


def test_tag_shuffling_keeps_the_first_tags():
    spec = concept(tag_shuffling=True, keep_tags_count=2)
    seen = {render_caption(["a, b, c, d, e"], spec, 0.0, random.Random(seed)) for seed in range(30)}
    assert len(seen) > 5 and all(s.startswith("a, b, ") for s in seen)
    assert all(sorted(s.split(", ")) == list("abcde") for s in seen)
    assert render_caption(["a, b, c"], spec, 0.0, random.Random(3)) == \
        render_caption(["a, b, c"], spec, 0.0, random.Random(3))


def test_tag_dropout_and_caption_dropout():
    spec = concept(tag_dropout=True, tag_dropout_probability=0.5, keep_tags_count=1)
    rng = random.Random(0)
    lengths = [len(render_caption(["k, " + ", ".join("t%d" % i for i in range(20))], spec, 0.0, rng)
                   .split(", ")) for _ in range(200)]
    assert 9 < sum(lengths) / len(lengths) - 1 < 11  # about half of the 20 droppable tags
    rng = random.Random(1)
    dropped = sum(render_caption(["a cat"], concept(), 0.25, rng) == "" for _ in range(400))
    assert 70 < dropped < 130
    assert render_caption(["a, b"], concept(), 0.0, random.Random(0)) == "a, b"


def test_caption_variants_follow_the_epoch(tmp_path):
    write_images(tmp_path / "v", [(64, 64)] * 2, caption="a, b, c, d, e, f")
    settings = settings_for(tmp_path, [{"path": "v", "text_variations": 2,
                                        "text": {"enable_tag_shuffling": True, "keep_tags_count": 0}}])
    data = plan(settings, tmp_path)
    data.cache = object()  # with a cache, epochs reuse text_variations variants
    assert data.caption(0, 0) == data.caption(0, 2) and data.caption(0, 1) == data.caption(0, 3)
    assert len({data.caption(0, e) for e in range(2)}) == 2

"""The demo: a tiny Stable Diffusion model (1.x by default; 2.x or XL on request), a dataset of
drawn shapes and a LoRA config.

Everything is built offline from random weights in well under a minute on two CPU cores, so
that a fresh install (and the test suite) can run a real training end to end. Only the model
step imports torch, and only when it runs: the web side can import this module.
"""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

from PIL import Image, ImageDraw

MODEL_DIR = "models/tiny-sd15"
DATASET_DIR = "datasets/shapes"
CONFIG_NAME = "demo.json"
# family -> (OneTrainer model type, model folder, config file name)
FAMILIES = {
    "sd15": ("STABLE_DIFFUSION_15", MODEL_DIR, CONFIG_NAME),
    "sd2": ("STABLE_DIFFUSION_21", "models/tiny-sd2", "demo-sd2.json"),
    "sdxl": ("STABLE_DIFFUSION_XL_10_BASE", "models/tiny-sdxl", "demo-sdxl.json"),
}
IMAGE_SIZE = 64

COLOURS = {
    "red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 210),
    "yellow": (235, 210, 40), "purple": (140, 50, 170), "orange": (240, 140, 30),
    "white": (240, 240, 240), "black": (20, 20, 20),
}
SHAPES = ("circle", "square", "triangle")
CAPTION_WORDS = sorted({"a", "on", "background", *COLOURS, *SHAPES})
DEMO_SAMPLES = (("a red circle on a blue background", 42),
                ("a yellow triangle on a green background", 7))
# what `otweb demo` builds: raise it when the tiny model or the dataset change, so that a workspace
# built before gets them rebuilt (by `otweb demo`, and by `otweb serve`'s start). 2: 16x16 latents
# (a 4x mosaic VAE) and centred shapes, so the last samples show the shapes, not 8x8 blobs
MODEL_VERSION = 2
VERSION_FILE = "otweb-demo-version"


def caption(shape: str, colour: str, background: str) -> str:
    return f"a {colour} {shape} on a {background} background"


def draw_shape(shape: str, colour: str, background: str, rng: random.Random,
               size: int = IMAGE_SIZE) -> Image.Image:
    """One flat shape on a flat background: large and near the centre (its size and place vary a
    little), so that what the demo learns of a caption in a minute is that shape, not a blur of
    shapes at many places."""
    image = Image.new("RGB", (size, size), COLOURS[background])
    extent = rng.randint(size * 11 // 16, size * 3 // 4)
    left = (size - extent) // 2 + rng.randint(-2, 2)
    top = (size - extent) // 2 + rng.randint(-2, 2)
    box = (left, top, left + extent, top + extent)
    draw = ImageDraw.Draw(image)
    if shape == "circle":
        draw.ellipse(box, fill=COLOURS[colour])
    elif shape == "square":
        draw.rectangle(box, fill=COLOURS[colour])
    else:
        draw.polygon([(left + extent // 2, top), (left, top + extent), (left + extent, top + extent)],
                     fill=COLOURS[colour])
    return image


# the few subjects the demo learns: each is drawn at several sizes and places, so that a sample
# of its caption can be told apart from the others (and from noise) at the demo's 16x16 latents
SUBJECTS = (("circle", "red", "blue"), ("triangle", "yellow", "green"),
            ("square", "white", "black"))


def random_shapes(count: int, seed: int) -> list[tuple[Image.Image, str]]:
    """``count`` (image, caption) pairs; the subjects cycle so that each appears equally often."""
    rng = random.Random(seed)
    pairs = []
    for index in range(count):
        shape, colour, background = SUBJECTS[index % len(SUBJECTS)]
        pairs.append((draw_shape(shape, colour, background, rng), caption(shape, colour, background)))
    return pairs


def write_dataset(folder: Path, count: int = 24, seed: int = 1) -> None:
    """PNG files with same-name .txt captions, written into a temp folder then renamed."""
    temp = folder.with_name(f".{folder.name}.tmp")
    _remove_tree(temp)
    temp.mkdir(parents=True)
    for index, (image, text) in enumerate(random_shapes(count, seed)):
        image.save(temp / f"shape_{index:03d}.png")
        (temp / f"shape_{index:03d}.txt").write_text(text + "\n", encoding="utf-8")
    _remove_tree(folder)
    os.replace(temp, folder)


def demo_config(family: str = "sd15") -> dict:
    """A OneTrainer TrainConfig (version 11) for a 480-step LoRA run on the demo data (about a
    minute on 2 cores). It samples before the first step too, so the first sample shows the
    untrained model and the last one the shapes it learned."""
    model_type, model_dir, _ = FAMILIES[family]
    suffix = "" if family == "sd15" else f"-{family}"
    samples = [{"__version": 0, "enabled": True, "prompt": prompt, "negative_prompt": "",
                "width": IMAGE_SIZE, "height": IMAGE_SIZE, "seed": seed, "random_seed": False,
                "diffusion_steps": 10, "cfg_scale": 5.0, "noise_scheduler": "DDIM"}
               for prompt, seed in DEMO_SAMPLES]
    concept = {"__version": 2, "name": "shapes", "path": DATASET_DIR, "enabled": True,
               "type": "STANDARD", "include_subdirectories": False, "balancing": 1.0,
               "balancing_strategy": "REPEATS", "loss_weight": 1.0,
               "image": {"__version": 0, "enable_crop_jitter": False},
               "text": {"__version": 0, "prompt_source": "sample", "prompt_path": ""}}
    return {
        "__version": 11, "training_method": "LORA", "model_type": model_type,
        "base_model_name": model_dir, "output_model_destination": f"models/demo{suffix}_lora.safetensors",
        "output_model_format": "SAFETENSORS", "output_dtype": "FLOAT_32",
        "workspace_dir": f"workspace/demo{suffix}", "cache_dir": f"workspace-cache/demo{suffix}",
        "concepts": [concept], "samples": samples,
        "resolution": str(IMAGE_SIZE), "aspect_ratio_bucketing": False, "latent_caching": True,
        # a LoRA on every layer at rank 8 with a cosine decay: the smallest recipe found whose
        # samples settle on each caption's colours within the minute (attention-only rank 4 drifted)
        "learning_rate_scheduler": "COSINE", "learning_rate": 5e-3,
        "learning_rate_warmup_steps": 0, "epochs": 80, "batch_size": 4,
        "gradient_accumulation_steps": 1, "train_dtype": "FLOAT_32", "seed": 42,
        # min-SNR weighting: the noisy timesteps, where a sample's shape is decided, weigh more; with
        # it the 16x16 latents show a triangle after 480 steps (without it, a blur)
        "loss_weight_fn": "MIN_SNR_GAMMA", "loss_weight_strength": 5.0,
        "peft_type": "LORA", "lora_rank": 8, "lora_alpha": 8.0, "lora_weight_dtype": "FLOAT_32",
        "layer_filter_preset": "full", "layer_filter": "",
        "optimizer": {"__version": 0, "optimizer": "ADAMW", "weight_decay": 0.01},
        # the tiny model needs no gradient checkpointing (OneTrainer's default is on)
        "unet": {"__version": 0, "train": True, "learning_rate": None, "weight_dtype": "FLOAT_32",
                 "gradient_checkpointing": False},
        "text_encoder": {"__version": 0, "train": False, "learning_rate": None,
                         "weight_dtype": "FLOAT_32"},
        **({"text_encoder_2": {"__version": 0, "train": False, "learning_rate": None,
                               "weight_dtype": "FLOAT_32"}} if family == "sdxl" else {}),
        "vae": {"__version": 0, "train": False, "weight_dtype": "FLOAT_32"},
        "sample_after": 80, "sample_after_unit": "STEP", "sample_skip_first": 0,
        "sample_before_training": True,
        "sample_image_format": "PNG",
        "backup_after": 0, "backup_after_unit": "NEVER", "rolling_backup": False,
        "rolling_backup_count": 3, "backup_before_save": False,
        "save_every": 0, "save_every_unit": "NEVER", "save_skip_first": 0,
        "save_filename_prefix": "", "tensorboard": False,
    }


def build_demo(workspace: Path, config_dir: Path, force: bool = False, family: str = "sd15") -> Path:
    """Write the tiny model of the family (sd15, sd2, sdxl), the shapes dataset and its config
    (``demo.json``, ``demo-sd2.json``, ``demo-sdxl.json``); return the config's path. Parts that
    exist are kept unless ``force``, but a model of another MODEL_VERSION (or none) is built again,
    with the dataset. There is no pre-training: the VAE is built as a mosaic codec
    and the UNet stays random; the LoRA run is what teaches it the shapes' colours."""
    if family not in FAMILIES:
        raise ValueError(f"unknown demo model {family!r}: one of {', '.join(FAMILIES)}")
    _, model_name, config_name = FAMILIES[family]
    workspace, config_dir = Path(workspace), Path(config_dir)
    model_dir = workspace / model_name
    outdated = not model_current(model_dir)
    if force or outdated:
        from webapp.trainer.builtin.tiny_model import build_tiny_model  # torch only when the model is built
        build_tiny_model(model_dir, CAPTION_WORDS, family=family)
        _write_atomically(model_dir / VERSION_FILE, f"{MODEL_VERSION}\n")
    dataset_dir = workspace / DATASET_DIR
    if force or outdated or not dataset_dir.is_dir():
        write_dataset(dataset_dir)
    config_path = config_dir / config_name
    if force or not config_path.is_file():
        config_dir.mkdir(parents=True, exist_ok=True)
        _write_atomically(config_path, json.dumps(demo_config(family), indent=4) + "\n")
    return config_path


def model_current(model_dir: Path) -> bool:
    """The tiny model in the folder is complete and of this MODEL_VERSION."""
    try:
        version = (Path(model_dir) / VERSION_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return False
    return version == str(MODEL_VERSION) and (Path(model_dir) / "model_index.json").is_file()


def demo_current(workspace: Path, config_dir: Path) -> bool:
    """The demo (sd15) is built and its model is of this version: what `otweb serve` checks at start."""
    return (Path(config_dir) / CONFIG_NAME).is_file() and model_current(Path(workspace) / MODEL_DIR)


def _write_atomically(path: Path, text: str) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(text, encoding="utf-8")
    os.replace(temp, path)


def _remove_tree(path: Path) -> None:
    if path.is_dir():
        import shutil
        shutil.rmtree(path)

"""The tiny demo config as the tests use it: cut to a few steps, or to the mechanics the trainer's
tests were written against."""
from __future__ import annotations

# what the trainer's mechanics tests were written against (they count LoRA layers, read the LR,
# list sample steps); the demo itself trains a larger LoRA so that it visibly learns
# (tests/unit/test_demo_learns.py reads demo.json as shipped)
MECHANICS = {"lora_rank": 4, "lora_alpha": 4.0, "layer_filter_preset": "attn-only",
             "learning_rate_scheduler": "CONSTANT", "learning_rate": 1e-2, "sample_after": 60,
             "sample_before_training": False}


def short_run(demo_config: dict, **overrides) -> dict:
    """The demo config cut to a few steps; 24 images at batch 4 = 6 steps an epoch."""
    return {**demo_config, "epochs": 2, "sample_after": 0, "sample_after_unit": "NEVER",
            "sample_before_training": False, **overrides}

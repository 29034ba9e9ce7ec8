"""Which optimizers and LR schedulers the built-in trainer runs, and reading the config's
``optimizer`` object into the settings each one uses.

Torch-free on purpose: the web side imports this to check a config before a run starts.

OneTrainer keeps one flat ``optimizer`` object for every optimizer (about a hundred fields,
most of them null = "the optimizer's default"). ``read_optimizer`` picks the fields the chosen
optimizer uses, under OneTrainer's names, and replaces nulls with the defaults below:

=========== ==================================================================================
ADAMW       beta1 0.9, beta2 0.999, eps 1e-8, weight_decay 0.01, amsgrad false (torch's AdamW)
ADAMW_8BIT  beta1 0.9, beta2 0.999, eps 1e-8, weight_decay 0.01, min_8bit_size 4096
            (bitsandbytes; it has no amsgrad; tensors smaller than min_8bit_size keep
            32-bit state)
ADAFACTOR   eps 1e-30, eps2 1e-3, clip_threshold 1.0, decay_rate -0.8, beta1 null (no first
            moment, Adafactor's memory-saving form), weight_decay 0.0, scale_parameter false,
            relative_step false, warmup_init false
PRODIGY     beta1 0.9, beta2 0.999, beta3 null (= sqrt(beta2)), eps 1e-8, weight_decay 0.0,
            d0 1e-6, d_coef 1.0, growth_rate inf (no limit), use_bias_correction false,
            safeguard_warmup false, decouple true (prodigyopt's defaults)
SGD         momentum 0.0, dampening 0.0, nesterov false, weight_decay 0.0 (torch's SGD)
LION        beta1 0.9, beta2 0.99, weight_decay 0.0 (the Lion paper's betas)
=========== ==================================================================================

ADAFACTOR with ``relative_step`` true computes its own step size and ignores the learning rate,
so neither the per-part learning rates nor ``learning_rate_scheduler`` would apply; rather than
train with a schedule silently ignored, that is an error (and so is ``warmup_init``, which only
exists for relative steps). With ``scale_parameter`` true the step is also scaled by each
tensor's RMS; the schedule still applies as a multiplier.
"""
from __future__ import annotations

import math

SUPPORTED_OPTIMIZERS = ("ADAMW", "ADAMW_8BIT", "ADAFACTOR", "PRODIGY", "SGD", "LION")
SUPPORTED_LR_SCHEDULERS = ("CONSTANT", "LINEAR", "COSINE", "COSINE_WITH_RESTARTS",
                           "COSINE_WITH_HARD_RESTARTS")
DEFAULT_OPTIMIZER = "ADAMW"

_ADAMW = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01, "amsgrad": False}

DEFAULT_SETTINGS: dict[str, dict] = {
    "ADAMW": _ADAMW,
    "ADAMW_8BIT": {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01,
                   "min_8bit_size": 4096},
    "ADAFACTOR": {"eps": 1e-30, "eps2": 1e-3, "clip_threshold": 1.0, "decay_rate": -0.8,
                  "beta1": None, "weight_decay": 0.0, "scale_parameter": False,
                  "relative_step": False, "warmup_init": False},
    "PRODIGY": {"beta1": 0.9, "beta2": 0.999, "beta3": None, "eps": 1e-8, "weight_decay": 0.0,
                "d0": 1e-6, "d_coef": 1.0, "growth_rate": math.inf, "use_bias_correction": False,
                "safeguard_warmup": False, "decouple": True},
    "SGD": {"momentum": 0.0, "dampening": 0.0, "nesterov": False, "weight_decay": 0.0},
    "LION": {"beta1": 0.9, "beta2": 0.99, "weight_decay": 0.0},
}

# What a value of each field may be: (check, description for the error message).
# Fields whose default is None accept None as a real value (beta1 of ADAFACTOR, beta3 of PRODIGY).
_RULES = {
    "beta1": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "beta2": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "beta3": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "momentum": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "dampening": (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    "eps": (lambda v: v > 0, "a positive number"),
    "eps2": (lambda v: v > 0, "a positive number"),
    "clip_threshold": (lambda v: v > 0, "a positive number"),
    "d0": (lambda v: v > 0, "a positive number"),
    "d_coef": (lambda v: v > 0, "a positive number"),
    "weight_decay": (lambda v: v >= 0, "a number of at least 0"),
    # Adafactor's second-moment decay is 1 - step**decay_rate: only a negative rate keeps it
    # in [0, 1)
    "decay_rate": (lambda v: v < 0, "a negative number"),
    # d may grow by at most this factor per step; below 1 it could only shrink
    "growth_rate": (lambda v: v >= 1, "a number of at least 1 (or Infinity for no limit)"),
    "min_8bit_size": (lambda v: v >= 0 and float(v).is_integer(), "a whole number of at least 0"),
}
_MAY_BE_INFINITE = {"growth_rate"}


def read_optimizer(raw) -> tuple[str, dict, list[dict]]:
    """(name, settings, errors) from the config's ``optimizer`` object (None = ADAMW defaults).

    ``settings`` holds only the fields the named optimizer uses, nulls replaced by the defaults
    in DEFAULT_SETTINGS; a bad value is reported in ``errors`` ({"field": "optimizer.<name>",
    "message": ...}) and its default is put in its place. Fields this trainer does not use are
    ignored, as OneTrainer ignores unknown keys.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        return DEFAULT_OPTIMIZER, dict(DEFAULT_SETTINGS[DEFAULT_OPTIMIZER]), [_error(
            "optimizer", 'an object such as {"optimizer": "ADAMW", "weight_decay": 0.01}')]
    name = raw.get("optimizer")
    if name is None:
        name = DEFAULT_OPTIMIZER
    if name not in SUPPORTED_OPTIMIZERS:
        return str(name), {}, [{"field": "optimizer.optimizer", "message":
                                f"{name!r} is not an optimizer the built-in trainer supports; "
                                f"choose one of {', '.join(SUPPORTED_OPTIMIZERS)}"}]
    settings, errors = {}, []
    for key, default in DEFAULT_SETTINGS[name].items():
        value, message = _read_value(key, raw.get(key), default)
        settings[key] = value
        if message:
            errors.append(_error(key, message))
    errors += _combination_errors(name, settings)
    return name, settings, errors


def _read_value(key: str, value, default):
    """(value to use, error message or None)."""
    if value is None:
        return default, None
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value, None
        return default, f"must be true or false, not {value!r}"
    # bool is an int in Python, but true is no weight decay
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return default, f"must be {_RULES[key][1]}, not {value!r}"
    if math.isnan(value) or (math.isinf(value) and key not in _MAY_BE_INFINITE):
        return default, f"must be {_RULES[key][1]}, not {value!r}"
    check, description = _RULES[key]
    if not check(value):
        return default, f"must be {description}, not {value!r}"
    return (int(value) if key == "min_8bit_size" else float(value)), None


def _combination_errors(name: str, settings: dict) -> list[dict]:
    errors = []
    if name == "ADAFACTOR":
        if settings["relative_step"]:
            errors.append(_error("relative_step", "the built-in trainer needs relative_step false: "
                                 "with relative steps Adafactor ignores the learning rate, so the "
                                 "learning rates and learning_rate_scheduler would not apply"))
        if settings["warmup_init"]:
            errors.append(_error("warmup_init", "warmup_init only works with relative_step, which "
                                 "the built-in trainer does not use; set it to false and use "
                                 "learning_rate_warmup_steps"))
    if name == "SGD" and settings["nesterov"] and (settings["momentum"] <= 0
                                                   or settings["dampening"] != 0):
        errors.append(_error("nesterov", "Nesterov momentum needs a momentum above 0 and a "
                             "dampening of 0"))
    return errors


def _error(key: str, message: str) -> dict:
    return {"field": f"optimizer.{key}" if key != "optimizer" else "optimizer", "message": message}

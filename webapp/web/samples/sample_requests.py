"""What a request about samples names: a sample by its id (404 when unknown), and a sample to
make, as a form or a JSON body gives it, checked field by field (400 naming the field). Used by
the dashboard's "sample now", the gallery, the samples API and the playground alike.
"""
from __future__ import annotations

from webapp.config.builtin.train_settings import SAMPLE_SCHEDULERS
from webapp.config.train_config import MAX_TEXT
from webapp import store
from webapp.protocol import SAMPLE_MAX_SIDE
from webapp.web.errors import ApiError
from webapp.web.extensions import get_db

MAX_PROMPT = MAX_TEXT  # characters in a prompt or a negative prompt, as in a config's samples
CUSTOM_SAMPLE_FIELDS = {  # name: (type, minimum, maximum)
    "seed": (int, -1, 2**32 - 1),
    "steps": (int, 1, 500),
    "cfg_scale": (float, 0.0, 50.0),
    "width": (int, 8, SAMPLE_MAX_SIDE),
    "height": (int, 8, SAMPLE_MAX_SIDE),
}


def parse_custom_sample(values) -> dict:
    """values: a JSON object or a form. Returns the sample dict, or 400 naming the field."""
    prompt = values.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ApiError(400, "invalid sample", [{"field": "prompt", "message": "is required"}])
    negative = values.get("negative_prompt")
    negative = "" if negative is None else negative
    # a prompt travels in an event to every open page and into the gallery: capped like a config's
    errors = [{"field": name, "message": f"must be text of at most {MAX_PROMPT:,} characters"}
              for name, text in (("prompt", prompt), ("negative_prompt", negative))
              if not isinstance(text, str) or len(text) > MAX_PROMPT]
    if errors:
        raise ApiError(400, "invalid sample", errors)
    sample = {"prompt": prompt.strip(), "negative_prompt": negative}
    for name, (kind, low, high) in CUSTOM_SAMPLE_FIELDS.items():
        raw = values.get(name)
        if raw in (None, ""):
            continue
        try:
            if isinstance(raw, bool):
                raise ValueError
            value = kind(raw)
            if kind is int and isinstance(raw, float) and raw != int(raw):
                raise ValueError
        except (TypeError, ValueError):
            errors.append({"field": name, "message": f"must be {'a whole number' if kind is int else 'a number'}"})
            continue
        if not low <= value <= high:
            errors.append({"field": name, "message": f"must be between {low} and {high}"})
            continue
        if name in ("width", "height") and value % 8:
            errors.append({"field": name, "message": "must be a multiple of 8"})
            continue
        sample[name] = value
    if values.get("random_seed") in (True, "on", "true", "1"):
        sample["seed"] = -1
    if errors:
        raise ApiError(400, "invalid sample", errors)
    return sample


def parse_sample_request(values) -> dict:
    """The custom sample form (parse_custom_sample) plus the scheduler and the
    playground's LoRA strength; 400 naming the field."""
    sample = parse_custom_sample(values)
    scheduler = values.get("noise_scheduler")
    if scheduler not in (None, ""):
        if not isinstance(scheduler, str) or scheduler.upper() not in SAMPLE_SCHEDULERS:
            raise ApiError(400, "invalid sample", [{"field": "noise_scheduler", "message":
                           f"must be one of {', '.join(SAMPLE_SCHEDULERS)}"}])
        sample["noise_scheduler"] = scheduler.upper()
    strength = values.get("lora_scale")
    if strength not in (None, ""):
        try:
            if isinstance(strength, bool):
                raise ValueError
            strength = float(strength)
        except (TypeError, ValueError):
            raise ApiError(400, "invalid sample", [{"field": "lora_scale", "message": "must be a number"}]) from None
        if not 0.0 <= strength <= 2.0:
            raise ApiError(400, "invalid sample", [{"field": "lora_scale", "message": "must be between 0 and 2"}])
        sample["lora_scale"] = strength
    return sample


def sample_or_404(sample_id: int) -> dict:
    sample = store.get_sample(get_db(), sample_id)
    if sample is None:
        raise ApiError(404, "unknown sample", f"no sample with id {sample_id}")
    return sample


def default_prompt(run: dict | None) -> str:
    """The first enabled sample prompt of a run's config: a real prompt to start from (a grey
    placeholder looked filled in, and was not)."""
    if not run:
        return ""
    try:
        samples = store.run_config(run).get("samples") or []
    except (KeyError, ValueError, TypeError):
        return ""
    for sample in samples if isinstance(samples, list) else []:
        if isinstance(sample, dict) and sample.get("enabled", True) and str(sample.get("prompt") or "").strip():
            return str(sample["prompt"]).strip()
    return ""

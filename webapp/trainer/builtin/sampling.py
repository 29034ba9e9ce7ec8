"""Sampling images with the model being trained (LoRA active) through diffusers' pipeline.

A sample request is a plain dict: prompt, negative_prompt, seed (None or -1 = random), steps,
cfg_scale, width, height, noise_scheduler (OneTrainer's names, see ``SCHEDULERS``) and, in the
playground, lora_scale. Images go to ``run_dir/samples/<kind>/<global_step>-<n>.png``
(temp file, then renamed); the event carries that path relative to the run folder. Sampling
leaves the training RNG state as it found it and puts the UNet back in train mode.
"""
from __future__ import annotations

import random
from contextlib import contextmanager
from pathlib import Path

import torch
from diffusers import (DDIMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler,
                       EulerDiscreteScheduler, UniPCMultistepScheduler)

from webapp.config.builtin.train_settings import SAMPLE_SCHEDULERS
from webapp.protocol import Event
from webapp.trainer.sample_files import save_sample_image

MAX_SIDE, MAX_STEPS = 2048, 500
# OneTrainer's NoiseScheduler names -> (diffusers class, extra config); the names the web accepts
# (config.builtin.settings.SAMPLE_SCHEDULERS) must all be here
SCHEDULERS = {
    "DDIM": (DDIMScheduler, {}),
    "EULER": (EulerDiscreteScheduler, {}),
    "EULER_A": (EulerAncestralDiscreteScheduler, {}),
    "DPMPP": (DPMSolverMultistepScheduler, {}),
    "UNIPC": (UniPCMultistepScheduler, {}),
    "EULER_KARRAS": (EulerDiscreteScheduler, {"use_karras_sigmas": True}),
    "DPMPP_KARRAS": (DPMSolverMultistepScheduler, {"use_karras_sigmas": True}),
}
assert set(SCHEDULERS) == set(SAMPLE_SCHEDULERS)


def make_scheduler(name: str, base_config):
    cls, extra = SCHEDULERS[name]
    return cls.from_config(base_config, **extra)


def spec_request(spec) -> dict:
    """A config sample (config.builtin.settings.SampleSpec) as a request dict."""
    return {"prompt": spec.prompt, "negative_prompt": spec.negative_prompt,
            "seed": None if spec.random_seed else spec.seed, "steps": spec.steps,
            "cfg_scale": spec.cfg_scale, "width": spec.width, "height": spec.height,
            "noise_scheduler": spec.noise_scheduler}


def normalise_request(raw: dict, resolution: int) -> dict:
    """Clean values for the pipeline (sides rounded down to multiples of 8, steps and sides
    bounded); ValueError/TypeError for values that are not numbers."""
    def number(key, default, kind):
        value = raw.get(key)
        return kind(default if value is None or value == "" else value)

    def side(key):
        return min(MAX_SIDE, max(8, number(key, resolution, int) // 8 * 8))

    seed = raw.get("seed")
    seed = None if seed is None or seed == "" or int(seed) == -1 else int(seed)
    scheduler = str(raw.get("noise_scheduler") or "DDIM").upper()
    if scheduler not in SCHEDULERS:
        raise ValueError(f"unknown noise_scheduler {scheduler!r}")
    lora_scale = raw.get("lora_scale")
    return {"noise_scheduler": scheduler,
            "lora_scale": None if lora_scale in (None, "") else float(lora_scale),
            "prompt": str(raw.get("prompt") or ""),
            "negative_prompt": str(raw.get("negative_prompt") or ""),
            "seed": seed, "steps": min(MAX_STEPS, max(1, number("steps", 20, int))),
            "cfg_scale": number("cfg_scale", 7.0, float),
            "width": side("width"), "height": side("height")}


@contextmanager
def preserved_rng(device: torch.device):
    cpu_state = torch.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if device.type == "cuda" else None
    try:
        yield
    finally:
        torch.set_rng_state(cpu_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)


class Sampler:
    def __init__(self, parts, device: torch.device, run_dir: Path, callbacks, resolution: int,
                 training: bool = True):
        self.parts, self.device, self.run_dir = parts, device, Path(run_dir)
        self.callbacks, self.resolution = callbacks, resolution
        self.training = training  # put the UNet back in train mode after each image
        self._pipeline = None
        self._schedulers: dict = {}

    def pipeline(self, scheduler: str = "DDIM"):
        """The family's diffusers pipeline over the trained modules (made once)."""
        if self._pipeline is None:
            self._pipeline = self.parts.pipeline()
            self._pipeline.set_progress_bar_config(disable=True)
        if scheduler not in self._schedulers:
            self._schedulers[scheduler] = make_scheduler(scheduler, self.parts.scheduler.config)
        self._pipeline.scheduler = self._schedulers[scheduler]
        return self._pipeline

    def sample_all(self, kind: Event, requests: list[dict], global_step: int,
                   epoch: int) -> list[tuple[dict, Path]]:
        """Each request in turn; a request with unusable values is logged and skipped.
        Returns (request, image path) for each image made."""
        made = []
        for raw in requests:
            try:
                request = normalise_request(raw, self.resolution)
            except (TypeError, ValueError) as exc:
                self.callbacks.log(f"sample request skipped ({exc}): {raw!r}", "error")
                continue
            made.append((request, self.sample(kind, request, global_step, epoch)))
        return made

    def sample(self, kind: Event, request: dict, global_step: int, epoch: int) -> Path:
        seed = request["seed"]
        if seed is None:
            seed = random.SystemRandom().randrange(2 ** 31)  # no effect on torch's RNG
        image = self._generate(request, seed)
        path = self._write(image, kind, global_step)
        extra = {} if request.get("lora_scale") is None else {"lora_scale": request["lora_scale"]}
        self.callbacks.sample(kind, path=path.relative_to(self.run_dir).as_posix(),
                              prompt=request["prompt"], negative_prompt=request["negative_prompt"],
                              seed=seed, steps=request["steps"], cfg_scale=request["cfg_scale"],
                              width=request["width"], height=request["height"],
                              noise_scheduler=request["noise_scheduler"], bytes=path.stat().st_size,
                              global_step=global_step, epoch=epoch, **extra)
        return path

    def _generate(self, request: dict, seed: int):
        steps = request["steps"]

        def on_step_end(pipeline, step, timestep, kwargs):
            self.callbacks.sample_progress(step + 1, steps)
            return kwargs

        unet = self.parts.unet
        unet.eval()
        extra = {}
        if request.get("lora_scale") is not None:
            extra["cross_attention_kwargs"] = {"scale": request["lora_scale"]}
        try:
            with preserved_rng(self.device):
                return self.pipeline(request.get("noise_scheduler") or "DDIM")(
                    prompt=request["prompt"], negative_prompt=request["negative_prompt"] or None,
                    num_inference_steps=steps, guidance_scale=request["cfg_scale"],
                    width=request["width"], height=request["height"],
                    generator=torch.Generator("cpu").manual_seed(seed),
                    callback_on_step_end=on_step_end, **extra).images[0]
        finally:
            if self.training:
                unet.train()

    def _write(self, image, kind: Event, global_step: int) -> Path:
        return save_sample_image(image, self.run_dir, kind, global_step)

"""The OneTrainer backend against the real OneTrainer (../shared/third_party/OneTrainer), through the
whole product: a worker running in OneTrainer's own environment (.venv-onetrainer; its spawned
trainer process imports OneTrainer from the checkout), the web under gunicorn in ours, real Redis.
Tiny demo models, CPU, a few steps each: LoRA (SD 1.5 and SDXL), fine-tune, embedding; loss and LR per
step; samples; commands; stops in each phase; resume from OneTrainer's backup; a failure inside it."""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from support.paths import ROOT
from support.ports import free_port
from support.servers import serve_web
from support.stack import Stack

from support.onetrainer_env import checkout, venv_python

pytestmark = pytest.mark.slow
# a stop while loading or caching ends the process within the supervisor's 1 s grace: 0.5-1.3 s.
# One while training waits for the step under way, then OneTrainer's backup and final save: 0.3-0.4 s
# here, but a step alone can take seconds on the busy shared CPU, so that bound only catches a hang.
# `pytest -s -k stop` prints each figure (the README's "Training with OneTrainer" quotes them).
STOP_WITHIN_S = 2.0
STOP_WHILE_TRAINING_WITHIN_S = 5.0


@pytest.fixture(scope="module")
def ot(tmp_path_factory, redis_url, redis_server):
    """One stack for the module: the demo model built by OneTrainer's environment (its transformers
    reads what it wrote), a worker there, the web here."""
    python, onetrainer = venv_python(), checkout()
    redis_server.flushall()
    workspace = tmp_path_factory.mktemp("ot-real") / "workspace"
    env = {"OTWEB_WORKSPACE": str(workspace), "OTWEB_CONFIG_DIR": str(workspace.parent / "configs"),
           "REDIS_URL": redis_url, "OTWEB_WORKER_NAME": f"test-ot-real-{free_port()}", "ONETRAINER_DIR": str(onetrainer)}
    full_env = {**os.environ, **env}
    built = subprocess.run([str(python), "-m", "webapp.cli", "demo"], cwd=ROOT, env=full_env,
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    log = open(workspace / "worker.log", "w+b")
    worker = subprocess.Popen([str(python), "-m", "webapp.cli", "worker"], cwd=ROOT, env=full_env,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        with serve_web(env) as url:
            yield Stack(url, env, worker)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def tiny_sdxl(ot) -> Path:
    """The tiny SDXL demo model, built in OneTrainer's environment as the SD 1.5 one is."""
    built = subprocess.run([str(venv_python()), "-m", "webapp.cli", "demo", "--model", "sdxl"], cwd=ROOT,
                           env={**os.environ, **ot.env}, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    return Path(ot.env["OTWEB_WORKSPACE"]) / "models/tiny-sdxl"


def demo_config(stack: Stack, name: str = "demo.json", **overrides) -> dict:
    config = json.loads((Path(stack.env["OTWEB_CONFIG_DIR"]) / name).read_text())
    for sample in config["samples"]:
        sample["diffusion_steps"] = 2
    config.update(backend="onetrainer", train_device="cpu", temp_device="cpu", output_model_format="DIFFUSERS_LORA",
                  epochs=2, sample_after=0, sample_after_unit="NEVER", output_model_destination="models/lora.safetensors",
                  clear_cache_before_training=True)
    config.update(overrides)
    return config


def events_of(stack: Stack, run_id: int, name: str) -> list[dict]:
    events = stack.api("GET", f"/api/runs/{run_id}/events?after=0").json()["events"]
    return [e["data"] for e in events if e["event"] == name]


def step_of(run: dict | None) -> int:
    progress = (run or {}).get("progress") or {}
    if isinstance(progress, str):
        progress = json.loads(progress)
    return progress.get("global_step") or 0


def wait_for_run(stack: Stack, run_id: int, predicate, timeout: float = 180) -> dict:
    return stack.wait_for(lambda: (lambda run: run if run and predicate(run) else None)(stack.run_state(run_id)),
                          timeout=timeout, every=0.05)


def test_a_lora_trains_with_loss_lr_samples_commands_and_loads_in_diffusers(ot):
    run_id = ot.start(demo_config(ot, sample_after=6, sample_after_unit="STEP"))
    wait_for_run(ot, run_id, lambda run: step_of(run) >= 2)
    custom = ot.api("POST", "/api/samples/custom", json={"prompt": "a red circle", "seed": 5, "steps": 2,
                                                          "width": 64, "height": 64})
    assert custom.status_code == 202, custom.text
    assert ot.api("POST", "/api/training/backup", json={}).status_code == 202
    assert ot.api("POST", "/api/training/save", json={}).status_code == 202
    run = ot.wait_until_ended(run_id, timeout=240)
    assert run["state"] == "completed", run.get("reason")

    progress = events_of(ot, run_id, "progress")
    assert progress[-1]["global_step"] == progress[-1]["max_step"] == 12
    assert all(isinstance(p["loss"], float) and isinstance(p["lr"], float) for p in progress), progress[:3]
    losses = ot.api("GET", f"/api/runs/{run_id}/loss?max_points=1000").json()
    assert len(losses["points"]) == 12, losses  # every step's loss, though progress is coalesced for display
    # OneTrainer samples as a step begins, when its count is a multiple: before step 1 and step 7
    assert [s["global_step"] for s in events_of(ot, run_id, "sample_default")] == [0, 0, 6, 6]
    made = events_of(ot, run_id, "sample_custom")
    assert made and made[0]["prompt"] == "a red circle"
    run_dir = Path(ot.env["OTWEB_WORKSPACE"]) / "runs" / str(run_id)
    assert list((run_dir / "onetrainer/backup").iterdir()) and list((run_dir / "onetrainer/save").iterdir())
    log = (run_dir / "trainer.log").read_text(errors="replace")
    assert "not a git repository" not in log

    from diffusers import StableDiffusionPipeline
    pipeline = StableDiffusionPipeline.from_pretrained(Path(ot.env["OTWEB_WORKSPACE"]) / "models/tiny-sd15")
    pipeline.load_lora_weights(str(run_dir / "models/lora.safetensors"))
    assert any("lora" in name for name, _ in pipeline.unet.named_parameters())


def test_an_sdxl_lora_trains_samples_and_loads_in_diffusers(ot, tiny_sdxl):
    run_id = ot.start(demo_config(ot, "demo-sdxl.json", epochs=1, sample_after=6, sample_after_unit="STEP",
                                  output_model_destination="models/sdxl-lora.safetensors"))
    run = ot.wait_until_ended(run_id, timeout=300)
    assert run["state"] == "completed", run.get("reason")
    progress = events_of(ot, run_id, "progress")
    assert progress[-1]["global_step"] == 6 and all(isinstance(p["loss"], float) for p in progress), progress
    assert [s["global_step"] for s in events_of(ot, run_id, "sample_default")] == [0, 0]

    from diffusers import StableDiffusionXLPipeline
    pipeline = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl)
    pipeline.load_lora_weights(run["output_path"])
    assert any("lora" in name for name, _ in pipeline.unet.named_parameters())


@pytest.mark.parametrize("method, overrides", [
    ("FINE_TUNE", {"output_model_format": "DIFFUSERS", "output_model_destination": "models/fine-tuned",
                   "learning_rate": 1e-4}),
    ("EMBEDDING", {"output_model_format": "SAFETENSORS", "output_model_destination": "models/embedding.safetensors",
                   "embedding": {"__version": 0, "placeholder": "<shape>", "token_count": 1,
                                 "initial_embedding_text": "shape", "train": True}}),
])
def test_fine_tune_and_embedding(ot, method, overrides):
    run_id = ot.start(demo_config(ot, training_method=method, epochs=1, **overrides))
    run = ot.wait_until_ended(run_id, timeout=240)
    assert run["state"] == "completed", run.get("reason")
    progress = events_of(ot, run_id, "progress")
    assert progress[-1]["global_step"] == 6 and all(p["loss"] is not None for p in progress)
    assert Path(run["output_path"]).exists()


def test_a_lora_saved_as_safetensors_is_refused_before_it_starts(ot):
    refused = ot.api("POST", "/api/training/start", json={"config": demo_config(ot, output_model_format="SAFETENSORS")})
    assert refused.status_code == 400
    message = {d["field"]: d["message"] for d in refused.json()["detail"]}["output_model_format"]
    assert "DIFFUSERS_LORA" in message and "pick one of" in message


@pytest.mark.parametrize("phase, reached", [
    ("loading", lambda run: "load" in (run.get("status_text") or "").lower() and "onetrainer" not in run["status_text"].lower()),
    ("caching", lambda run: "caching" in (run.get("status_text") or "").lower()),
    ("training", lambda run: step_of(run) >= 2),
])
def test_stop_in_each_phase_ends_the_run_promptly_keeping_what_was_trained(ot, phase, reached):
    # many repeats of the 24 images: caching takes seconds, long enough to stop in it
    config = demo_config(ot, epochs=3, backup_before_save=True)  # OneTrainer's default: a backup, then the save
    config["concepts"][0]["balancing"] = 20.0
    run_id = ot.start(config)
    wait_for_run(ot, run_id, reached, timeout=180)
    asked = time.monotonic()
    assert ot.api("POST", "/api/training/stop", json={}).status_code == 202
    run = wait_for_run(ot, run_id, lambda run: run["state"] not in ("queued", "running"), timeout=30)
    took = time.monotonic() - asked
    print(f"\nstop while {phase}: {took:.2f} s to '{run['state']}'")
    assert run["state"] == "stopped", (phase, run.get("reason"))
    limit = STOP_WHILE_TRAINING_WITHIN_S if phase == "training" else STOP_WITHIN_S
    assert took < limit, f"stop while {phase} took {took:.2f} s"
    if phase == "training":  # the steps trained are backed up and saved before the run is reported stopped
        assert run["output_path"] and Path(run["output_path"]).is_file(), run
        run_dir = Path(ot.env["OTWEB_WORKSPACE"]) / "runs" / str(run_id)
        assert list((run_dir / "onetrainer/backup").iterdir())
        assert events_of(ot, run_id, "finished")[-1]["stopped"] is True
    else:  # nothing was trained, nothing saved: no output for the models list to offer
        assert not run["output_path"], run


def test_resume_continues_from_onetrainers_backup(ot):
    run_id = ot.start(demo_config(ot, epochs=3, backup_after=4, backup_after_unit="STEP"))
    wait_for_run(ot, run_id, lambda run: step_of(run) >= 7)
    ot.api("POST", "/api/training/stop", json={})
    stopped = ot.wait_until_ended(run_id, timeout=120)
    assert stopped["state"] == "stopped"
    at = events_of(ot, run_id, "progress")[-1]["global_step"]
    assert ot.api("POST", f"/api/runs/{run_id}/resume").status_code in (200, 202)
    run = ot.wait_until_ended(run_id, timeout=240)
    assert run["state"] == "completed", run.get("reason")
    steps = [p["global_step"] for p in events_of(ot, run_id, "progress")]
    resumed = steps[steps.index(at) + 1:]
    assert at <= resumed[0] <= at + 1 and resumed[-1] == 18, steps  # from the backup made when it stopped, not from 0


def test_an_exception_inside_onetrainer_fails_the_run_with_its_message(ot):
    empty = Path(ot.env["OTWEB_WORKSPACE"]) / "models/empty"
    empty.mkdir(exist_ok=True)
    run_id = ot.start(demo_config(ot, base_model_name=str(empty)))
    run = ot.wait_until_ended(run_id, timeout=120)
    assert run["state"] == "failed" and "could not load model" in run["reason"]
    assert ot.worker.poll() is None

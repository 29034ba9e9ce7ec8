"""The OneTrainer backend against tests/support/onetrainer_standin (OneTrainer's module paths and call
signatures, a trainer that trains nothing): progress totals and ETA, samples, every command, a
failure; the backend choice, validation, `otweb worker --check`, and a run through the real worker."""
from __future__ import annotations

import queue
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from webapp.cli import main as cli
from webapp.config.builtin.backend_choice import BUILTIN, ONETRAINER, choose_backend
from webapp.config.paths import PathRefused
from webapp.trainer.backend_factory import make_backend
from webapp.trainer.callbacks import QueueCallbacks
from webapp.trainer.commands import TrainCommands
from webapp.trainer.onetrainer import OneTrainerBackend, onetrainer_config_dict, progress_fields
from webapp.protocol import Command, make_command
from webapp.worker.bridge import EventBridge

from support.recording import RecordingSink
from support.sse import json_frames, read_sse

STANDIN = Path(__file__).resolve().parents[1] / "support" / "onetrainer_standin"
SD15_LORA = {"model_type": "STABLE_DIFFUSION_15", "training_method": "LORA"}
FLUX_LORA = {"model_type": "FLUX_DEV_1", "training_method": "LORA"}


def standin_config(**overrides) -> dict:
    return {"__version": 11, **SD15_LORA, "backend": ONETRAINER, "epochs": 3, "batch_size": 2,
            "standin_steps_per_epoch": 4, "standin_step_seconds": 0.02, "sample_after": 0,
            "sample_after_unit": "NEVER", "output_model_destination": "out/model.safetensors",
            "samples": [{"enabled": True, "prompt": "a cat", "width": 64, "height": 48, "seed": 3,
                         "diffusion_steps": 2, "cfg_scale": 5.0},
                        {"enabled": False, "prompt": "not this one"}], **overrides}


class Harness:
    """The backend in this process, as the trainer process runs it; events as the worker gets them."""

    def __init__(self, tmp_path: Path, config: dict, stop_when=lambda event, data: False):
        self.run_dir = tmp_path / "run"
        self.run_dir.mkdir()
        self.events_queue, self.commands_queue = queue.Queue(), queue.Queue()
        self.commands = TrainCommands(self.commands_queue)
        harness = self

        class Callbacks(QueueCallbacks):
            def emit(self, event, **data):
                super().emit(event, **data)
                if stop_when(event, data):
                    harness.send(Command.STOP)

        self.callbacks = Callbacks(self.events_queue, progress_every_s=0)  # every step's progress, to check each
        self.backend = make_backend(config, self.callbacks, self.commands, run_dir=self.run_dir, base_dir=tmp_path)

    def send(self, command: Command, **data) -> None:
        self.commands_queue.put(make_command(command, **data))

    def run(self) -> list[dict]:
        try:
            self.backend.start()
            self.backend.train()
        finally:
            self.backend.end()
        return self.events()

    def events(self) -> list[dict]:
        found = []
        while not self.events_queue.empty():
            found.append(self.events_queue.get_nowait())
        return found


@pytest.fixture
def onetrainer(monkeypatch, tmp_path):
    monkeypatch.setenv("ONETRAINER_DIR", str(STANDIN))
    monkeypatch.chdir(tmp_path)  # the backend moves into the checkout and back; this is a safety net


def of(events: list[dict], name: str) -> list[dict]:
    return [e["data"] for e in events if e["event"] == name]


def test_backend_choice():
    assert choose_backend(SD15_LORA, None).backend == BUILTIN
    assert choose_backend(SD15_LORA, "/ot").backend == BUILTIN
    assert choose_backend({**SD15_LORA, "backend": ONETRAINER}, "/ot").backend == ONETRAINER
    assert choose_backend(FLUX_LORA, "/ot").backend == ONETRAINER
    assert choose_backend({"model_type": "STABLE_DIFFUSION_15"}, "/ot").backend == BUILTIN  # FINE_TUNE
    vae = {"model_type": "STABLE_DIFFUSION_15", "training_method": "FINE_TUNE_VAE"}
    assert choose_backend(vae, "/ot").backend == ONETRAINER
    flux_here = choose_backend(FLUX_LORA, None)
    assert flux_here.backend == BUILTIN and not flux_here.builtin_supported and "ONETRAINER_DIR" in flux_here.reason
    assert choose_backend({**FLUX_LORA, "backend": BUILTIN}, "/ot").backend == BUILTIN
    assert choose_backend({**SD15_LORA, "backend": ONETRAINER}, None).backend is None
    assert choose_backend({**SD15_LORA, "backend": "kohya"}, "/ot").backend is None


def test_progress_per_epoch_becomes_the_runs_total():
    assert progress_fields(0, 1, 1, 4, 3)["max_step"] == 12
    assert progress_fields(1, 2, 6, 4, 3) == {"global_step": 6, "max_step": 12, "epoch": 1, "max_epoch": 3,
                                              "epoch_step": 2, "epoch_length": 4}
    assert progress_fields(2, 0, 8, 4, 3)["epoch"] == 1  # the repeat after an epoch belongs to that epoch
    assert progress_fields(3, 0, 12, 4, 3)["max_step"] == 12
    assert progress_fields(2, 1, 9, 5, 3)["max_step"] == 13  # epoch length changed: done + what is left


def test_paths_are_made_absolute(tmp_path):
    config = {"concept_file_name": "concepts/c.json", "concepts": [{"path": "images"}], "base_model_name": "org/model",
              "output_model_destination": "out/m.safetensors", "cache_dir": "workspace-cache/ot"}
    result = onetrainer_config_dict(config, tmp_path / "run", tmp_path)
    assert result["concept_file_name"] == str(tmp_path / "concepts/c.json")
    assert result["concepts"][0]["path"] == str(tmp_path / "images")
    assert result["base_model_name"] == "org/model" and result["cache_dir"] == str(tmp_path / "workspace-cache/ot")
    assert result["output_model_destination"] == str(tmp_path / "run/out/m.safetensors")
    assert result["workspace_dir"] == str(tmp_path / "run/onetrainer")


@pytest.mark.parametrize("field, value", [("cache_dir", "/abs/cache"), ("output_model_destination", "../../x.safetensors"),
                                          ("concepts", [{"path": "/etc"}]), ("workspace_dir", "/tmp/ot")])
def test_the_adapter_refuses_paths_outside_the_run_and_the_roots(tmp_path, field, value):
    """The adapter's own check: OneTrainer writes wherever its config says, whatever the web let through."""
    with pytest.raises(PathRefused, match=field):
        onetrainer_config_dict({field: value}, tmp_path / "run", tmp_path)


def test_a_run_reports_progress_totals_eta_and_samples(onetrainer, tmp_path):
    harness = Harness(tmp_path, standin_config(sample_after=5, sample_after_unit="STEP"))
    assert isinstance(harness.backend, OneTrainerBackend)
    events = harness.run()
    progress = of(events, "progress")
    assert [p["global_step"] for p in progress] == list(range(1, 13))
    assert {p["max_step"] for p in progress} == {12} and progress[-1]["epoch"] == 2
    assert progress[4]["epoch"] == 1 and progress[4]["epoch_step"] == 1 and progress[-1]["epoch_length"] == 4

    samples = of(events, "sample_default")
    assert [s["global_step"] for s in samples] == [5, 10]
    assert samples[0]["path"] == "samples/default/5-0.png" and samples[0]["prompt"] == "a cat"
    assert Image.open(harness.run_dir / samples[0]["path"]).size == (64, 48) == (samples[0]["width"], samples[0]["height"])
    assert of(events, "sample_progress")[-1] == {"step": 2, "max_step": 2}
    assert "sampling" in [s["text"] for s in of(events, "status")]
    finished = of(events, "finished")[0]
    assert finished == {"stopped": False, "output": str(harness.run_dir / "out/model.safetensors")}
    assert Path(finished["output"]).exists()

    sink = RecordingSink()
    bridge = EventBridge(sink, run_id=1)
    for event in events:
        bridge.handle(event)
    live = [e["data"] for e in sink.events if e["event"] == "progress"]
    assert live[-1]["global_step"] == 12 and live[-1]["speed"] > 0 and live[-1]["eta_s"] == 0
    assert len(sink.rows) == 12


def test_every_command_reaches_onetrainer_and_stop_saves(onetrainer, tmp_path):
    # stop once the last command took effect and a step trained after it: stop is sticky, and
    # OneTrainer drops what is pending then (commands reach it at once, maybe before its first step)
    seen = set()

    def after_a_step_past_the_custom_sample(event, data):
        seen.add(event.value if hasattr(event, "value") else event)
        return "sample_custom" in seen and event == "progress"

    harness = Harness(tmp_path, standin_config(epochs=50), stop_when=after_a_step_past_the_custom_sample)
    harness.send(Command.SAMPLE_DEFAULT)
    harness.send(Command.SAMPLE_CUSTOM, sample={"prompt": "a dog", "negative_prompt": "blur", "width": 32,
                                                "height": 40, "steps": 3, "seed": -1})
    harness.send(Command.BACKUP)
    harness.send(Command.SAVE)
    events = harness.run()
    assert [s["prompt"] for s in of(events, "sample_default")] == ["a cat"]
    custom = of(events, "sample_custom")[0]
    assert custom["prompt"] == "a dog" and custom["negative_prompt"] == "blur" and custom["steps"] == 3
    assert custom["path"].startswith("samples/custom/") and custom["seed"] == -1
    assert Image.open(harness.run_dir / custom["path"]).size == (32, 40)
    workspace = harness.run_dir / "onetrainer"
    assert list((workspace / "save").iterdir()) and len(list((workspace / "backup").iterdir())) == 2  # + before save
    last_step = of(events, "progress")[-1]["global_step"]
    assert last_step < 50
    assert of(events, "finished")[0]["stopped"] is True
    assert (harness.run_dir / "out/model.safetensors").read_text().count(f'"global_step": {last_step}')


@pytest.mark.parametrize("switch, message", [({"standin_fail_at_step": 2}, "stand-in failure at step 2"),
                                             ({"standin_missing_module": "no_such_dependency"}, "no_such_dependency")])
def test_a_failure_inside_onetrainer_raises_its_message(onetrainer, tmp_path, switch, message):
    harness = Harness(tmp_path, standin_config(**switch))
    with pytest.raises(Exception, match=message):
        harness.run()
    events = harness.events()
    assert not of(events, "finished") and not (harness.run_dir / "out/model.safetensors").exists()


def test_worker_check(monkeypatch, tmp_path):
    runner = CliRunner()
    monkeypatch.delenv("ONETRAINER_DIR", raising=False)
    answer = runner.invoke(cli, ["worker", "--check"])
    assert answer.exit_code == 0 and "ONETRAINER_DIR is not set" in answer.output
    checkout = tmp_path / "OneTrainer"
    shutil.copytree(STANDIN, checkout)
    (checkout / ".git/refs/heads").mkdir(parents=True)
    (checkout / ".git/HEAD").write_text("ref: refs/heads/master\n")
    (checkout / ".git/refs/heads/master").write_text("0123456789abcdef0123456789abcdef01234567\n")
    monkeypatch.setenv("ONETRAINER_DIR", str(checkout))
    answer = runner.invoke(cli, ["worker", "--check"])
    assert answer.exit_code == 0, answer.output
    assert "commit 0123456789abcdef0123456789abcdef01234567" in answer.output and "imports OK" in answer.output
    monkeypatch.setenv("ONETRAINER_DIR", str(tmp_path))
    answer = runner.invoke(cli, ["worker", "--check"])
    assert answer.exit_code == 1 and "not a OneTrainer checkout" in answer.output


def test_validation_names_the_backend(client, monkeypatch):
    monkeypatch.delenv("ONETRAINER_DIR", raising=False)
    assert client.post("/api/config/validate", json=SD15_LORA).json["backend"]["name"] == BUILTIN
    flux = client.post("/api/config/validate", json=FLUX_LORA).json
    assert flux["backend"]["name"] == BUILTIN and not flux["backend"]["onetrainer_available"]
    blocking = {w["field"]: w["message"] for w in flux["warnings"] if w.get("blocking")}
    assert "ONETRAINER_DIR" in blocking["model_type"]
    asked = client.post("/api/config/validate", json={**SD15_LORA, "backend": ONETRAINER}).json
    assert asked["backend"]["name"] is None and any(w["field"] == "backend" and w.get("blocking") for w in asked["warnings"])

    monkeypatch.setenv("ONETRAINER_DIR", str(STANDIN))
    flux = client.post("/api/config/validate", json=FLUX_LORA).json
    assert flux["backend"]["name"] == ONETRAINER and not [w for w in flux["warnings"] if w.get("blocking")]
    assert client.post("/api/config/validate", json=SD15_LORA).json["backend"]["name"] == BUILTIN


# -- through the real worker (a spawned trainer process), the web under gunicorn, real Redis --
@pytest.fixture(scope="module")
def ot_stack(tmp_path_factory, redis_url, redis_server):
    from support.ports import free_port
    from support.servers import serve_web
    from support.stack import Stack, run_worker
    redis_server.flushall()
    workspace = tmp_path_factory.mktemp("ot-stack") / "workspace"
    (workspace / "model").mkdir(parents=True)
    (workspace / "images").mkdir()
    env = {"OTWEB_WORKSPACE": str(workspace), "OTWEB_CONFIG_DIR": str(workspace.parent / "configs"),
           "REDIS_URL": redis_url, "OTWEB_WORKER_NAME": f"test-ot-{free_port()}", "ONETRAINER_DIR": str(STANDIN)}
    with run_worker(env) as worker, serve_web(env) as url:
        yield Stack(url, env, worker)


def stack_config(stack, **overrides) -> dict:
    workspace = Path(stack.env["OTWEB_WORKSPACE"])
    return standin_config(base_model_name=str(workspace / "model"), epochs=2, standin_steps_per_epoch=3,
                          concepts=[{"name": "c", "path": str(workspace / "images"), "enabled": True}], **overrides)


@pytest.mark.slow
def test_a_failure_inside_onetrainer_fails_the_run_and_the_worker_goes_on(ot_stack):
    run = ot_stack.wait_until_ended(ot_stack.start(stack_config(ot_stack, standin_fail_at_step=2)), timeout=60)
    assert run["state"] == "failed" and "stand-in failure at step 2" in run["reason"]
    assert "something broke in the training step" in run["reason"]  # OneTrainer's own log
    assert ot_stack.worker.poll() is None

    run_id = ot_stack.start(stack_config(ot_stack, sample_after=2, sample_after_unit="STEP"))
    frames = read_sse(f"{ot_stack.url}/api/events?after=0&run={run_id}",
                      until=lambda f: f.get("event") == "run" and '"completed"' in f["data"], timeout=60)
    events = json_frames(frames)
    assert of(events, "progress")[-1]["global_step"] == of(events, "progress")[-1]["max_step"] == 6
    samples = of(events, "sample_default")
    assert [s["global_step"] for s in samples] == [2, 4, 6] and samples[0]["prompt"] == "a cat"
    image = ot_stack.api("GET", f"/api/samples/{samples[0]['sample_id']}/image")
    assert image.status_code == 200 and image.content[:4] == b"\x89PNG"
    run = ot_stack.wait_until_ended(run_id, timeout=30)
    assert run["state"] == "completed" and run["output_path"].endswith("out/model.safetensors")

"""Backups and exact resume on the tiny demo model (CPU, deterministic): a run killed with
SIGKILL after a backup continues at the exact next step with the same learning rates and losses
as a run that was never interrupted."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from webapp.trainer.builtin.resume import ResumeError, newest_backup, read_training_state
from webapp.trainer.commands import TrainCommands
from webapp.protocol import Event

from support.recording import RecordingCallbacks

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from webapp.trainer.demo import build_demo
    root = tmp_path_factory.mktemp("resume-demo")
    build_demo(root / "workspace", root / "configs")
    config = json.loads((root / "configs" / "demo.json").read_text())
    # 3 epochs of 6 steps; a backup mid-epoch 2; a warm-up and a cosine decay to follow
    config.update(epochs=3, sample_after_unit="NEVER", backup_after=9, backup_after_unit="STEP",
                  learning_rate_scheduler="COSINE", learning_rate_warmup_steps=4,
                  clear_cache_before_training=False)
    return root / "workspace", config


def train(workspace, config, run_dir, commands=None):
    from webapp.trainer.builtin import BuiltinBackend
    recorder, commands = RecordingCallbacks(), commands or TrainCommands()
    backend = BuiltinBackend(config, recorder, commands, run_dir=run_dir, base_dir=workspace)
    backend.start()
    backend.train()
    backend.end()
    return recorder


def curve(recorder):
    return [(p["global_step"], p["epoch"], p["epoch_step"], p["lr"], p["loss"])
            for p in recorder.of(Event.PROGRESS)]


KILLED_RUN = """
import json, sys, time
from pathlib import Path
from webapp.trainer.builtin import BuiltinBackend
from webapp.trainer.callbacks import TrainCallbacks
from webapp.trainer.commands import TrainCommands
workspace, config_file, run_dir, marker = sys.argv[1:5]
class Hang(TrainCallbacks):
    def emit(self, event, **data):
        if event == "log" and data["text"].startswith("backup written"):
            Path(marker).write_text(data["text"])
            time.sleep(600)  # the test kills us here
backend = BuiltinBackend(json.loads(Path(config_file).read_text()), Hang(), TrainCommands(),
                         run_dir=Path(run_dir), base_dir=Path(workspace))
backend.start()
backend.train()
"""


def kill_after_backup(workspace, config, run_dir: Path) -> None:
    run_dir.mkdir(parents=True)
    config_file, marker = run_dir / "config.json", run_dir / "backup.marker"
    config_file.write_text(json.dumps(config))
    child = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(workspace), str(config_file),
                              str(run_dir), str(marker)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), "the child never wrote its backup"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()


def test_resume_after_sigkill_continues_exactly(demo, tmp_path):
    workspace, config = demo
    straight = curve(train(workspace, config, tmp_path / "straight"))
    assert [s[0] for s in straight] == list(range(1, 19))
    run_dir = tmp_path / "killed"
    kill_after_backup(workspace, config, run_dir)
    (run_dir / "backups" / ".half-written").mkdir()  # a crash mid-backup leaves a temp folder
    resumed = train(workspace, {**config, "continue_last_backup": True}, run_dir)
    assert curve(resumed) == straight[9:]  # steps 10..18: same epoch position, LR and loss, exactly
    assert any("resuming from backup" in log["text"] for log in resumed.of(Event.LOG))
    progress = json.loads(next(p for p in (run_dir / "backups").iterdir()
                               if p.name.endswith("-step9")).joinpath("progress.json").read_text())
    assert progress == {"epoch": 1, "epoch_step": 3, "global_step": 9, "samples_seen": 36,
                        "max_step": 18, "max_epoch": 3}


def test_resume_is_exact_mid_accumulation_with_ema_and_a_text_encoder_lora(demo, tmp_path):
    """The backup at step 9 falls between two optimizer steps (accumulation 2): its waiting
    gradients, the EMA and the text encoder's adapter all come back."""
    workspace, config = demo
    config = {**config, "gradient_accumulation_steps": 2, "ema": "CPU", "ema_decay": 0.9,
              "ema_update_step_interval": 1, "text_encoder": {"train": True, "weight_dtype": "FLOAT_32"},
              "optimizer": {"optimizer": "LION", "weight_decay": 0.01}, "learning_rate": 1e-3}
    straight = train(workspace, config, tmp_path / "straight")
    run_dir = tmp_path / "killed"
    kill_after_backup(workspace, config, run_dir)
    resumed = train(workspace, {**config, "continue_last_backup": True}, run_dir)
    assert curve(resumed) == curve(straight)[9:]
    from safetensors.torch import load_file
    ours = load_file(str(run_dir / "models" / "demo_lora.safetensors"))
    theirs = load_file(str(tmp_path / "straight" / "models" / "demo_lora.safetensors"))
    assert ours.keys() == theirs.keys() and any(k.startswith("text_encoder.") for k in ours)
    assert all(__import__("torch").equal(ours[k], theirs[k]) for k in ours)  # the EMA output too


def test_resume_refuses_a_backup_of_another_lora(demo, tmp_path):
    workspace, config = demo
    train(workspace, {**config, "epochs": 1, "backup_after": 3}, tmp_path)
    rank = config["lora_rank"]
    with pytest.raises(ResumeError, match=f"lora_rank is {2 * rank} here but {rank} in the backup"):
        train(workspace, {**config, "lora_rank": 2 * rank, "continue_last_backup": True}, tmp_path)


class _Planted:
    """A pickle that creates a file when it is loaded: what a hostile host could plant."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_backup_holds_no_pickle_and_reads_back_exactly(demo, tmp_path):
    """Issue 26 §1: tensors as safetensors, the rest as JSON; the state reads back equal."""
    from webapp.protocol import BACKUP_SAFE_FILES
    from webapp.trainer.builtin.safe_state import load_state, save_state
    import torch
    workspace, config = demo
    train(workspace, {**config, "epochs": 1, "backup_after": 3}, tmp_path)
    backup = newest_backup(tmp_path)
    assert {p.name for p in backup.iterdir()} <= BACKUP_SAFE_FILES
    state = read_training_state(backup)
    assert set(state) >= {"optimizer", "lr_scheduler", "rng"} and isinstance(state["optimizer"]["state"], dict)
    assert all(isinstance(k, int) for k in state["optimizer"]["state"])  # int keys survive JSON
    odd = {"t": (1, 2.5, float("inf")), 3: [None, torch.arange(4, dtype=torch.bfloat16)], "$x": "y"}
    save_state(odd, tmp_path, "odd")
    back = load_state(tmp_path, "odd")
    assert back["t"] == odd["t"] and back["$x"] == "y" and torch.equal(back[3][1], odd[3][1])


def test_a_planted_pickle_in_a_backup_is_refused_and_never_runs(demo, tmp_path):
    """Issue 26 §1: a backup whose optimizer.pt is a crafted pickle (the older format, or one a
    hostile host wrote) is refused with a clear reason; its code never runs."""
    import pickle
    workspace, config = demo
    train(workspace, {**config, "epochs": 1, "backup_after": 3}, tmp_path)
    backup = newest_backup(tmp_path)
    for name in ("training_state.json", "training_state.safetensors"):
        (backup / name).unlink()
    marker = tmp_path / "pwned"
    (backup / "optimizer.pt").write_bytes(pickle.dumps({"optimizer": _Planted(marker)}))
    with pytest.raises(ResumeError, match="refused the backup .*optimizer.pt"):
        train(workspace, {**config, "epochs": 1, "continue_last_backup": True}, tmp_path)
    assert not marker.exists()


def test_resume_without_a_backup_starts_over(demo, tmp_path):
    workspace, config = demo
    recorder = train(workspace, {**config, "epochs": 1, "continue_last_backup": True,
                                 "backup_after_unit": "NEVER"}, tmp_path)
    assert recorder.of(Event.PROGRESS)[0]["global_step"] == 1
    assert any("no backup" in log["text"] and log["level"] == "warning" for log in recorder.of(Event.LOG))


def test_rolling_backups_and_save_every(demo, tmp_path):
    workspace, config = demo
    train(workspace, {**config, "epochs": 2, "backup_after": 2, "rolling_backup": True,
                      "rolling_backup_count": 2, "save_every": 5, "save_every_unit": "STEP",
                      "save_skip_first": 1, "save_filename_prefix": "mine-",
                      "backup_before_save": False}, tmp_path)
    backups = sorted(p.name.rsplit("-step", 1)[1] for p in (tmp_path / "backups").iterdir())
    assert backups == ["10", "12"]
    saves = sorted(p.name for p in (tmp_path / "saves").iterdir())
    assert len(saves) == 1 and saves[0].startswith("mine-") and saves[0].endswith("-step10.safetensors")
    state = read_training_state(next((tmp_path / "backups").iterdir()))
    assert set(state) >= {"optimizer", "lr_scheduler", "rng"}


def test_a_nan_loss_fails_with_the_step_and_a_hint(demo, tmp_path):
    workspace, config = demo
    with pytest.raises(FloatingPointError, match=r"at step \d+ .*learning_rate.*FLOAT_32"):
        train(workspace, {**config, "epochs": 1, "learning_rate": 1e30,
                          "learning_rate_warmup_steps": 0, "backup_after_unit": "NEVER"}, tmp_path)


def test_tensorboard_scalars(demo, tmp_path):
    pytest.importorskip("tensorboard")
    workspace, config = demo
    train(workspace, {**config, "epochs": 1, "tensorboard": True, "backup_after_unit": "NEVER"}, tmp_path)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert set(events.Tags()["scalars"]) == {"loss/train_step", "smooth_loss/train_step", "lr/unet", "epoch"}
    assert [e.step for e in events.Scalars("lr/unet")] == list(range(1, 7))

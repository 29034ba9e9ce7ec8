"""torch's CPU threads in a trainer process (OTWEB_TRAINER_THREADS): one rule for `otweb train` and a
worker's trainer, and the trainer says in its first event how many it runs with (issue 34: the
overhead benchmark compares the two, so they must not differ in threads)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from webapp.cli import main as otweb
from webapp.protocol import Event, RunState
from webapp.settings import trainer_threads
from webapp.trainer.threads import threads_for
from webapp.worker.supervisor import TrainerHost
from webapp.worker.warm import WarmTrainer

from support.demo import short_run
from support.recording import RecordingSink

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("text, threads", [("", None), ("auto", None), (" AUTO ", None), ("1", 1), ("12", 12)])
def test_the_setting_reads_a_count_or_auto(text, threads):
    assert trainer_threads({"OTWEB_TRAINER_THREADS": text}) == threads
    assert trainer_threads({}) is None


@pytest.mark.parametrize("text", ["0", "-2", "two", "1.5"])
def test_a_bad_setting_names_the_variable(text):
    with pytest.raises(ValueError, match="OTWEB_TRAINER_THREADS.*whole number"):
        trainer_threads({"OTWEB_TRAINER_THREADS": text})


def test_auto_leaves_a_core_and_shares_the_rest_among_ranks():
    assert threads_for(None, cpus=2) == 1
    assert threads_for(None, cpus=1) == 1
    assert threads_for(None, cpus=16, world_size=4) == 3
    assert threads_for(None, cpus=4, world_size=8) == 1
    assert threads_for(6, cpus=2, world_size=2) == 6  # set: taken as it is


def test_otweb_train_and_worker_refuse_a_bad_setting_before_they_start(tmp_path):
    config = tmp_path / "c.json"
    config.write_text("{}")
    for command in (["train", str(config), "--workspace", str(tmp_path)], ["worker", "--workspace", str(tmp_path)]):
        result = CliRunner().invoke(otweb, command, env={"OTWEB_TRAINER_THREADS": "many", "REDIS_URL": None})
        assert result.exit_code == 2, result.output
        assert "OTWEB_TRAINER_THREADS='many'" in result.output


def _threads_events(events: list[dict]) -> list[dict]:
    return [e["data"] for e in events if e["event"] == Event.LOG.value and "torch_threads" in e["data"]]


@pytest.mark.slow
def test_a_warm_trainer_spawned_by_the_worker_applies_the_setting(demo_workspace, demo_config, redis_url,
                                                                   tmp_path, monkeypatch):
    monkeypatch.setenv("OTWEB_TRAINER_THREADS", "2")  # not what auto gives on a 1- or 2-core machine
    warm = WarmTrainer(os.getpid())  # spawned now: it inherits the environment, as a worker's does
    sink = RecordingSink()
    host = TrainerHost({"id": 1}, short_run(demo_config, epochs=1), tmp_path, demo_workspace[0], sink,
                       redis.Redis.from_url(redis_url), warm=warm)
    assert host.adopted_warm
    assert host.run_to_end() is RunState.COMPLETED
    trainer_events = [e for e in sink.events if e["event"] != Event.RUN.value]
    reported = _threads_events(trainer_events)
    assert reported and reported[0]["torch_threads"] == 2 and "OTWEB_TRAINER_THREADS=2" in reported[0]["text"]
    assert trainer_events[0]["data"] is reported[0]  # the trainer's first event


@pytest.mark.slow
def test_otweb_train_applies_the_same_setting(demo_workspace, demo_config, tmp_path):
    workspace = demo_workspace[0]
    config = tmp_path / "short.json"
    config.write_text(json.dumps(short_run(demo_config, epochs=1)))
    env = {**os.environ, "OTWEB_TRAINER_THREADS": "2", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "webapp.cli", "train", str(config), "--workspace", str(workspace)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "[log] torch CPU threads: 2 (OTWEB_TRAINER_THREADS=2)" in done.stdout + done.stderr


def test_a_steps_command_poll_without_a_queue_does_not_yield(monkeypatch):
    """`otweb train` (no queue) polled with time.sleep(0) every step: a syscall the worker's trainer,
    whose poll reads a queue, does not make (1-2 % of the bare trainer's loop in a profile)."""
    from webapp.trainer import commands as commands_module
    slept = []
    monkeypatch.setattr(commands_module.time, "sleep", slept.append)
    commands = commands_module.TrainCommands()
    for _ in range(100):
        commands.poll()
    assert slept == []
    commands.poll(wait_s=0.25)  # a caller that waits (the OneTrainer backend's relay) still waits
    assert slept == [0.25]

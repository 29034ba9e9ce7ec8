"""Issue 33 §2: the start check counts what a run will keep. A run that keeps every backup (rolling
backups off) needs room for each one, and its samples count too: a start that will not fit is
refused before it queues (the web's disk filled with 24 backups of 2 MiB after a check that
planned for 3)."""
from __future__ import annotations

from support.demo import short_run
from webapp.config.builtin import disk
from webapp.config.builtin.train_settings import TrainSettings


def _needed(demo_workspace, demo_config, **overrides) -> int:
    return disk.needed_bytes(TrainSettings.from_config(short_run(demo_config, **overrides), demo_workspace[0]))


def test_the_start_check_counts_every_backup_kept_and_the_samples(demo_workspace, demo_config):
    settings = TrainSettings.from_config(short_run(demo_config, epochs=20), demo_workspace[0])
    assert disk.planned_steps(settings) == 20 * 6        # 24 images at batch 4
    every = dict(epochs=20, backup_after=2, backup_after_unit="STEP", rolling_backup=False, backup_before_save=False)
    fewer = dict(every, backup_after=40)
    output = disk.needed_bytes(TrainSettings.from_config(short_run(demo_config, epochs=20, backup_after_unit="NEVER"),
                                                         demo_workspace[0])) - disk.ALLOWANCE
    # 60 backups against 3, each about three outputs (weights and two optimizer moments)
    assert _needed(demo_workspace, demo_config, **every) - _needed(demo_workspace, demo_config, **fewer) == 57 * 3 * output
    rolling = dict(every, rolling_backup=True, rolling_backup_count=2)
    assert _needed(demo_workspace, demo_config, **rolling) == _needed(demo_workspace, demo_config, **dict(every, backup_after=60))
    samples = _needed(demo_workspace, demo_config, epochs=20, sample_after=1, sample_after_unit="EPOCH")
    assert samples > _needed(demo_workspace, demo_config, epochs=20)


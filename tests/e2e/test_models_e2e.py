"""Model versions from a real run: the spawned trainer on the tiny demo model registers its
output, saves and backups (the rest of the Models tests, on recorded events: unit/test_models.py)."""
from __future__ import annotations

import hashlib

import pytest

from support.demo import short_run
from support.stack import demo_stack


@pytest.mark.slow
def test_a_real_run_registers_its_output_saves_and_backups(demo_workspace, demo_config, redis_url, redis_server):
    """The spawned trainer on the tiny demo model: every model it writes becomes a version with the
    loss and samples of its step, and the bytes served are the bytes on disk."""
    config = short_run(demo_config, save_every=4, save_every_unit="STEP", backup_after=6, backup_after_unit="STEP",
                       sample_after=6, sample_after_unit="STEP")
    with demo_stack(demo_workspace, redis_url, redis_server) as stack:
        run_id = stack.start(config)
        assert stack.wait_until_ended(run_id)["state"] == "completed"
        versions = stack.api("GET", f"/api/models?run={run_id}&order=step").json()["versions"]
        kinds = [(v["kind"], v["global_step"]) for v in versions]
        assert ("output", 12) in kinds and ("save", 4) in kinds and ("save", 8) in kinds and ("backup", 6) in kinds
        assert all(v["exists"] and v["loss"] is not None for v in versions), versions
        steps = {s["global_step"] for s in stack.api("GET", f"/api/samples/list?run={run_id}").json()["samples"]}
        for version in versions:  # the samples taken at the step nearest to the save
            nearest = min(steps, key=lambda step: (abs(step - version["global_step"]), -step))
            assert {s["global_step"] for s in version["samples"]} == {nearest}, (version, steps)
        output = next(v for v in versions if v["kind"] == "output")
        detail = stack.api("GET", f"/api/models/{output['id']}").json()["version"]
        assert detail["dataset"]["files"] >= 24 and detail["dataset"]["sha256"]
        body = stack.api("GET", output["download_url"]).content
        assert hashlib.sha256(body).hexdigest() == detail["sha256"]

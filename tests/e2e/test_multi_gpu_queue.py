"""A worker that owns 2 GPUs (CPU ranks here), end to end through the web: the queue and the API
show a run's GPUs and global batch, a run asking for 3 waits with the reason on the queue page
and in the API while a 2-GPU run behind it trains on both ranks."""
from __future__ import annotations

from click.testing import CliRunner

from webapp.cli import main as otweb
from support.demo import short_run
from support.stack import demo_stack


def test_gpus_on_the_queue_and_a_run_too_big_for_the_worker_waits(demo_workspace, demo_config,
                                                                   redis_url, redis_server):
    ranks = {"multi_gpu": True, "train_device": "cpu"}
    with demo_stack(demo_workspace, redis_url, redis_server, OTWEB_WORKER_GPUS="0,1") as stack:
        workers = stack.wait_for(lambda: stack.api("GET", "/api/system/info").json()["workers"], 60)
        assert workers[0]["gpus"] == [0, 1]
        too_big = stack.start({**short_run(demo_config), **ranks, "device_indexes": "0,1,2"})
        fits = stack.start({**short_run(demo_config, epochs=1), **ranks, "device_indexes": "0,1"})
        queued = {r["id"]: r for r in stack.api("GET", "/api/queue").json()["queue"]}
        assert queued[too_big]["gpus"] == 3
        assert "for a worker with 3 GPUs: the largest has 2" in queued[too_big]["waiting_reason"]
        panel = stack.api("GET", "/queue/panel").text
        assert "3 GPUs" in panel and "the largest has 2" in panel

        def ended():
            run = stack.api("GET", f"/api/runs/{fits}").json()["run"]
            return run if run["state"] not in ("queued", "running") else None
        run = stack.wait_for(ended, 180)
        assert run["state"] == "completed", run.get("reason")
        assert run["gpus"] == 2 and run["global_batch"] == 2 * demo_config["batch_size"]
        assert stack.api("GET", f"/api/runs/{too_big}").json()["run"]["state"] == "queued"
        page = stack.api("GET", f"/runs/{fits}").text
        assert 'data-testid="gpus">2 (0,1)' in page


def test_worker_gpus_option_rejects_a_bad_list():
    result = CliRunner().invoke(otweb, ["worker", "--gpus", "0,x"], env={"REDIS_URL": "redis://localhost:1"})
    assert result.exit_code == 2 and "list the GPUs as numbers" in result.output


def test_multi_gpu_fields_are_checked_naming_the_field(demo_config):
    import pytest
    from webapp.config.builtin.train_settings import ConfigError, TrainSettings
    bad = {**demo_config, "multi_gpu": True, "device_indexes": "0,x", "gradient_reduce_precision": "HALF",
           "fused_gradient_reduce": "yes"}
    with pytest.raises(ConfigError) as caught:
        TrainSettings.from_config(bad)
    fields = {e["field"] for e in caught.value.errors}
    assert {"device_indexes", "gradient_reduce_precision", "fused_gradient_reduce"} <= fields
    with pytest.raises(ConfigError, match="device_indexes: multi_gpu needs the devices"):
        TrainSettings.from_config({**demo_config, "multi_gpu": True, "device_indexes": ""})
    ok = TrainSettings.from_config({**demo_config, "multi_gpu": True, "device_indexes": "1, 3"})
    assert ok.multi_gpu.world_size == 2 and ok.multi_gpu.device_indexes == (1, 3)

"""A worker that reaches Redis over a slow link (100 ms each way through a delaying relay) loses
nothing: the run ends completed with every loss row, every sample, its `finished` event and its
output registered (issue 33 §1)."""
from __future__ import annotations

from pathlib import Path

import pytest

from support.demo import short_run
from support.fleet import host_folder, record, redis_server
from support.relay import DelayRelay
from support.servers import serve_web
from support.stack import Stack, run_worker

pytestmark = pytest.mark.slow


def test_a_run_over_a_slow_link_ends_completed_with_everything(tmp_path, demo_workspace, demo_config):
    with redis_server(tmp_path / "redis") as server, DelayRelay(server.port, delay_s=0.1) as relay:
        web = host_folder(tmp_path, "web", demo_workspace[0])
        env = {"OTWEB_WORKSPACE": str(web), "OTWEB_CONFIG_DIR": str(demo_workspace[1]), "REDIS_URL": server.url,
               "OTWEB_HEARTBEAT_TTL_S": "10"}
        far = {**env, "OTWEB_WORKSPACE": str(host_folder(tmp_path, "far", demo_workspace[0])),
               "OTWEB_WORKER_NAME": "far", "REDIS_URL": f"redis://127.0.0.1:{relay.port}/0"}
        config = short_run(demo_config, epochs=10, sample_after=3, sample_after_unit="STEP")
        with serve_web(env) as url, run_worker(far):
            stack = Stack(url, env, None)
            run_id = stack.api("POST", "/api/queue", json={"config": config}).json()["run_ids"][0]

            def ended():
                run = stack.api("GET", f"/api/runs/{run_id}").json()["run"]
                return run if run["state"] not in ("queued", "running") else None
            run = stack.wait_for(ended, timeout=400, every=1)
        assert run["state"] == "completed", run.get("reason")
        steps = [r[0] for r in record(web, "SELECT step FROM metrics WHERE run_id = ? ORDER BY step", run_id)]
        assert steps == list(range(1, 61))
        local = Path(far["OTWEB_WORKSPACE"]) / "worker" / "runs" / str(run_id)
        made = sorted(p.name for p in (local / "samples").rglob("*") if p.is_file())
        recorded = record(web, "SELECT path FROM samples WHERE run_id = ?", run_id)
        assert made and sorted(Path(r[0]).name for r in recorded) == made
        assert record(web, "SELECT COUNT(*) FROM events WHERE run_id = ? AND name = 'finished'", run_id)[0][0] == 1
        assert run["output_path"] and Path(run["output_path"]).is_file()
        assert record(web, "SELECT COUNT(*) FROM model_versions WHERE run_id = ?", run_id)[0][0] >= 1

"""A dataset in the web's library reaches the worker that trains on it (issue 28, "Done when"): a
worker with its own empty folder (no datasets/), its own Redis user on a redis-server with ACLs,
trains the demo whose dataset lives only on the web's host; a second run on it sends nothing."""
from __future__ import annotations

import json
import shutil

import pytest

from support.demo import short_run
from support.fleet import record, redis_server
from support.servers import serve_web
from support.stack import Stack, run_worker
from support.paths import database
from webapp import store
from webapp.store import accounts
from webapp.web.runs.stages import run_stages

pytestmark = pytest.mark.slow


def _statuses(web, run_id: int) -> list[str]:
    return [json.loads(data).get("text", "") for (data,) in
            record(web, "SELECT data FROM events WHERE run_id = ? AND name = 'status' ORDER BY seq", run_id)]


def test_the_library_dataset_reaches_an_empty_worker_and_a_second_run_sends_nothing(tmp_path, demo_workspace,
                                                                                      demo_config):
    with redis_server(tmp_path / "redis", password="web-only-secret") as server:
        web, courier = tmp_path / "web", tmp_path / "courier"
        shutil.copytree(demo_workspace[0] / "models", web / "models")
        shutil.copytree(demo_workspace[0] / "datasets", web / "datasets")      # the web's library
        shutil.copytree(demo_workspace[0] / "models", courier / "models")      # no datasets/ at all
        conn = accounts.connect(web / "otweb.sqlite3")
        token = accounts.create_worker_token(conn, "courier")[1]
        conn.close()
        env = {"OTWEB_WORKSPACE": str(web), "OTWEB_CONFIG_DIR": str(demo_workspace[1]), "REDIS_URL": server.url}
        worker_env = {**env, "OTWEB_WORKSPACE": str(courier), "OTWEB_WORKER_NAME": "courier",
                      "OTWEB_WORKER_TOKEN": token, "REDIS_URL": f"redis://127.0.0.1:{server.port}/0"}
        with serve_web(env) as url, run_worker(worker_env):
            stack = Stack(url, env, None)
            ids = []
            for _ in range(2):  # one after the other: the second finds the first's files in the cache
                run_id = stack.api("POST", "/api/queue", json={"config": short_run(demo_config, epochs=1)}).json()["run_ids"][0]
                stack.wait_for(lambda: stack.api("GET", f"/api/runs/{run_id}").json()["run"]["state"]
                               in ("completed", "failed"), timeout=300, every=1)
                run = stack.api("GET", f"/api/runs/{run_id}").json()["run"]
                assert run["state"] == "completed", (run.get("reason"), _statuses(web, run_id)[-3:])
                ids.append(run_id)
        assert not (courier / "datasets").exists()
        first, second = (_statuses(web, i) for i in ids)
        files = list((web / "datasets" / "shapes").iterdir())
        distinct = len({p.read_bytes() for p in files})                         # the same bytes travel once
        assert f"sending dataset: {distinct} / {distinct} files" in " ".join(first), first
        assert f"dataset ready: {len(files)} files, {distinct} of {distinct} distinct sent" in " ".join(first), first
        assert not any(s.startswith("sending dataset") for s in second), second
        assert f"dataset ready: {len(files)} files, 0 of {distinct} distinct sent (0.0 MB)" in second, second
        fingerprints = record(web, "SELECT run_id, fingerprint FROM run_dataset_manifests ORDER BY run_id")
        assert [r[0] for r in fingerprints] == ids and fingerprints[0][1] == fingerprints[1][1]
        conn = store.connect(database(web))
        stages = {s["key"]: s for s in run_stages(conn, store.get_run(conn, ids[0]))}
        conn.close()
        assert stages["dataset"]["state"] == "done" and stages["dataset"]["detail"].startswith("dataset ready")
        blobs = list((courier / "worker" / "dataset-cache" / "blobs").glob("*/*"))
        assert len(blobs) == distinct
        assert not list((courier / "worker" / "dataset-cache" / "runs").glob("*/*"))  # released at each end

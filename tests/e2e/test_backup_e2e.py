"""`otweb backup` while a demo run trains, `otweb restore` into a new workspace, and a web served
from the restored workspace: the same runs, the same loss rows, the same samples (their image files
there, with the sha256 the manifest holds)."""
from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys

import pytest

from support.demo import short_run
from support.paths import ROOT
from support.servers import serve_web

pytestmark = pytest.mark.slow


def otweb(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "webapp.cli", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def snapshot(path) -> sqlite3.Connection:
    """The backed-up database read as it is (immutable: not a byte of it changed by reading)."""
    return sqlite3.connect(f"file:{path}?immutable=1", uri=True)


def test_a_backup_during_a_run_restores_and_serves_the_same_record(stack, demo_config, demo_workspace, tmp_path,
                                                                   redis_url):
    workspace, config_dir = demo_workspace
    samples = [{**s, "diffusion_steps": 2} for s in demo_config["samples"][:1]]
    run_id = stack.start(short_run(demo_config, epochs=40, sample_after=3, sample_after_unit="STEP", samples=samples))

    def sampled():  # a sample recorded, and its image here
        listed = stack.api("GET", f"/api/samples/list?run={run_id}").json().get("samples") or []
        ready = [s["id"] for s in listed if stack.api("GET", f"/api/samples/{s['id']}/image").status_code == 200]
        return ready or None
    ready = stack.wait_for(sampled, timeout=240)
    answer = otweb("backup", tmp_path / "backup", "--workspace", workspace)
    assert answer.returncode == 0, answer.stderr
    assert stack.run_state(run_id)["state"] == "running"  # it was taken while the run trained
    stack.api("POST", "/api/training/stop", json={"run_id": run_id})
    stack.wait_until_ended(run_id)

    manifest = json.loads((tmp_path / "backup" / "manifest.json").read_text())
    sums = {f["path"]: f["sha256"] for f in manifest["files"]}
    db = snapshot(tmp_path / "backup" / "otweb.sqlite3")
    losses = db.execute("SELECT COUNT(*) FROM metrics WHERE run_id = ? AND superseded = 0", (run_id,)).fetchone()[0]
    sample_ids = [r[0] for r in db.execute("SELECT id FROM samples WHERE run_id = ? ORDER BY id", (run_id,))]
    runs = {r[0] for r in db.execute("SELECT id FROM runs")}
    db.close()
    assert losses > 0 and set(ready) <= set(sample_ids)

    restored = tmp_path / "restored"
    answer = otweb("restore", tmp_path / "backup", "--workspace", restored)
    assert answer.returncode == 0, answer.stderr
    env = {"OTWEB_WORKSPACE": str(restored), "OTWEB_CONFIG_DIR": str(config_dir),
           "REDIS_URL": f"{redis_url}?db=5", "OTWEB_WORKER_NAME": "restored"}  # a Redis of its own
    with serve_web(env) as url:
        import requests
        get = lambda path: requests.get(url + path, timeout=30)  # noqa: E731
        listed = {r["id"] for r in get("/api/runs?limit=500").json()["runs"]}
        assert run_id in listed and listed <= runs
        assert get(f"/api/runs/{run_id}").json()["run"]["id"] == run_id
        assert get(f"/api/runs/{run_id}/loss?max_points=20000").json()["total"] == losses
        served = [s["id"] for s in get(f"/api/samples/list?run={run_id}").json()["samples"]]
        assert sorted(served) == sample_ids
        for sample_id in ready:
            meta = get(f"/api/samples/{sample_id}").json()
            image = get(f"/api/samples/{sample_id}/image")
            assert image.status_code == 200, meta
            assert hashlib.sha256(image.content).hexdigest() in {
                digest for path, digest in sums.items() if path.startswith(f"runs/{run_id}/")}

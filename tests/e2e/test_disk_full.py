"""A full disk mid-run (a tmpfs under the runs folder, filled while the demo trains): the run ends
failed saying "no space left" and where, its newest complete backup is kept, the record is
intact and the web keeps serving; a start without room enough is refused before it queues. The
web's copies share that disk: while it is full the recorder holds what it cannot write (health
503 saying why) and records it once space is freed."""
from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import redis

from support.demo import short_run
from support.disk import fill
from support.servers import serve_web
from support.stack import Stack, run_worker
from webapp import store
from webapp.settings import worker_stream

pytestmark = pytest.mark.slow
TMPFS_MB = 48


@pytest.fixture
def small_disk(demo_workspace, tmp_path, redis_url, redis_server):
    """The demo workspace with its runs folder on a 48 MiB tmpfs, a worker and the web."""
    workspace, config_dir = tmp_path / "workspace", tmp_path / "configs"
    for part in ("models", "datasets"):
        shutil.copytree(demo_workspace[0] / part, workspace / part)
    shutil.copytree(demo_workspace[1], config_dir)
    # one small disk under both the worker's run folders and the control plane's copies of them
    disk = tmp_path / "disk"
    disk.mkdir()
    mounts = [disk, workspace / "runs", workspace / "worker" / "runs"]
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MB}M", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    assert mounted.returncode == 0, f"this test needs root to mount a tmpfs: {mounted.stderr}"
    for name, target in (("runs", mounts[1]), ("worker-runs", mounts[2])):
        (disk / name).mkdir()
        target.mkdir(parents=True)
        subprocess.run(["mount", "--bind", str(disk / name), str(target)], check=True)
    redis_server.flushall()
    env = {"OTWEB_WORKSPACE": str(workspace), "OTWEB_CONFIG_DIR": str(config_dir), "REDIS_URL": redis_url,
           "OTWEB_WORKER_NAME": f"test-{uuid.uuid4().hex[:8]}"}
    try:
        with run_worker(env) as worker, serve_web(env) as url:
            yield Stack(url, env, worker), workspace
    finally:
        for mount in reversed(mounts):
            subprocess.run(["umount", "-l", str(mount)], check=False)


def disk_of(workspace: Path) -> Path:
    return workspace.parent / "disk"


def test_a_full_disk_fails_the_run_and_keeps_the_last_backup(small_disk, demo_config):
    stack, workspace = small_disk
    run_id = stack.start(short_run(demo_config, epochs=400, backup_after=2, backup_after_unit="STEP",
                                   rolling_backup=True, rolling_backup_count=2))
    backups = workspace / "worker" / "runs" / str(run_id) / "backups"  # where its trainer writes
    stack.wait_for(lambda: backups.is_dir() and any(not p.name.startswith(".") for p in backups.iterdir()))
    fill(disk_of(workspace))
    # the web's copies of the run folder share the disk: the recorder acknowledges nothing it could
    # not write (the worker's entries wait in Redis) and says why, until space is freed
    events = redis.Redis.from_url(stack.env["REDIS_URL"], decode_responses=True)
    stack.wait_for(lambda: any('"state":"failed"' in fields.get("e", "")
                               for _, fields in events.xrange(worker_stream(stack.env["OTWEB_WORKER_NAME"]))), 120)
    health = stack.api("GET", "/api/health")
    assert health.status_code == 503 and "the web host's disk is full" in health.json()["record_error"], health.text
    assert stack.run_state(run_id)["state"] == "running"
    # with the disk still full, the next start is refused before it is queued, saying why
    answer = stack.api("POST", "/api/training/start", json={"config": short_run(demo_config)})
    assert answer.status_code == 507 and "MiB free" in answer.json()["detail"], answer.text
    (disk_of(workspace) / "ballast").unlink()
    run = stack.wait_until_ended(run_id, timeout=120)
    assert run["state"] == "failed", run
    assert "no space left on the disk holding" in run["reason"] and str(workspace / "worker" / "runs") in run["reason"], run
    kept = [p for p in backups.iterdir() if not p.name.startswith(".")]
    assert kept and all(json.loads((p / "progress.json").read_text())["global_step"] > 0 for p in kept)
    assert not [p for p in backups.iterdir() if p.name.startswith(".")], "a half-written backup was left"
    conn = store.connect(workspace / "otweb.sqlite3")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    assert stack.api("GET", "/api/health").status_code == 200
    assert stack.api("GET", f"/runs/{run_id}").status_code == 200

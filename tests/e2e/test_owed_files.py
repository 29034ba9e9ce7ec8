"""Nothing lost (issue 33): a run whose last files had no room in the event stream at its end (the
web not recording: here it is down and the stream full) ends, its files to follow; the worker is
stopped (SIGTERM, or SIGKILL) before they are sent. Once the web records again, the run is
`completed` without its output; the worker started again sends what it owed (its journal in
worker/owed/): the files arrive whole, sha256 as on the worker, recorded once. The same for a
worker killed mid-run (with its trainer) after the trainer wrote a backup that had no room yet."""
from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

import pytest
import redis

from support.demo import short_run
from support.fleet import host_folder, record, sha256
from support.ports import free_port
from support.servers import serve_web
from support.stack import Stack, run_worker
from webapp.protocol import BACKUP_COMPLETE_FILE
from webapp.settings import worker_stream
from webapp.worker.stream_sink import FILE_BACKLOG

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_the_last_files_owed_by_a_stopped_worker_reach_the_web_when_it_starts_again(
        tmp_path, demo_workspace, demo_config, redis_url, redis_server, signum):
    redis_server.flushall()
    web, env, worker_home, worker_env = _hosts(tmp_path, demo_workspace, redis_url, OTWEB_FINISH_WAIT_S="1")
    events = redis.Redis.from_url(redis_url, decode_responses=True)
    stream = worker_stream(worker_env["OTWEB_WORKER_NAME"])
    port = free_port()
    with run_worker(worker_env) as worker:
        with serve_web(env, port=port) as url:
            stack = Stack(url, env, None)
            run_id = stack.start(short_run(demo_config, epochs=6))
            stack.wait_for(lambda: _run(stack, run_id)["state"] == "running", timeout=120)
        # the web is down: nobody records, and the stream is full
        filler = [events.xadd(stream, {"x": "1"}) for _ in range(FILE_BACKLOG)]
        assert not _sent(events, stream, '"event":"finished"'), "the run ended before the stream was full"
        stack.wait_for(lambda: _sent(events, stream, '"state":"completed"'), timeout=240)
        worker.send_signal(signum)
        worker.wait(timeout=60)
    events.xdel(stream, *filler)  # room again
    with serve_web(env, port=port) as url:
        stack = Stack(url, env, None)
        stack.wait_for(lambda: events.xlen(stream) == 0, timeout=120)  # all it had sent is recorded
        run = _run(stack, run_id)
        assert run["state"] == "completed", run
        output = run["output_path"].rsplit("/", 1)[-1]
        local = worker_home / "worker" / "runs" / str(run_id) / "models" / output
        assert local.is_file()
        assert stack.api("GET", f"/runs/{run_id}/files/output/{output}").status_code == 404
        with run_worker(worker_env):
            stack.wait_for(lambda: stack.api("GET", f"/runs/{run_id}/files/output/{output}").status_code == 200,
                           timeout=120)
            download = stack.api("GET", f"/runs/{run_id}/files/output/{output}")
            assert download.content == local.read_bytes()
            listed = stack.api("GET", f"/runs/{run_id}/files/output/{output}/sha256").json()["sha256"]
            assert listed == sha256(local)
            stack.wait_for(lambda: not list((worker_home / "worker" / "owed").glob("*.json")), timeout=60)
            uploads = record(web, "SELECT path, sha256 FROM uploads WHERE run_id = ?", run_id)
            assert [tuple(row) for row in uploads if row[0] == f"models/{output}"] == [(f"models/{output}", listed)]
            assert not list((web / "runs" / str(run_id)).rglob("*.upload")), "a partial upload was left"
            run = _run(stack, run_id)
            assert run["state"] == "completed" and run["output_path"].endswith(output)


def _hosts(tmp_path, demo_workspace, redis_url, **worker_settings):
    """The web's folder and a worker's, each with its own copy of the demo model (nothing shared on disk)."""
    name = f"owed-{uuid.uuid4().hex[:6]}"
    web = host_folder(tmp_path, "web", demo_workspace[0])
    env = {"OTWEB_WORKSPACE": str(web), "OTWEB_CONFIG_DIR": str(demo_workspace[1]), "REDIS_URL": redis_url}
    worker_home = host_folder(tmp_path, name, demo_workspace[0])
    return web, env, worker_home, {**env, "OTWEB_WORKSPACE": str(worker_home), "OTWEB_WORKER_NAME": name,
                                   **worker_settings}


def _run(stack: Stack, run_id: int) -> dict:
    return stack.api("GET", f"/api/runs/{run_id}").json()["run"]


def _sent(events, stream: str, text: str) -> bool:
    return any(text in fields.get("e", "") for _, fields in events.xrange(stream))


def test_files_written_mid_run_and_not_sent_when_the_worker_was_killed_reach_the_web_when_it_starts_again(
        tmp_path, demo_workspace, demo_config, redis_url, redis_server):
    redis_server.flushall()
    web, env, worker_home, worker_env = _hosts(tmp_path, demo_workspace, redis_url)
    events = redis.Redis.from_url(redis_url, decode_responses=True)
    stream = worker_stream(worker_env["OTWEB_WORKER_NAME"])
    port = free_port()
    with run_worker(worker_env) as worker:
        with serve_web(env, port=port) as url:
            stack = Stack(url, env, None)
            run_id = stack.start(short_run(demo_config, epochs=40, backup_after=4, backup_after_unit="STEP"))
            stack.wait_for(lambda: _run(stack, run_id)["state"] == "running", timeout=120)
        filler = [events.xadd(stream, {"x": "1"}) for _ in range(FILE_BACKLOG)]  # nobody records, no room
        backups = worker_home / "worker" / "runs" / str(run_id) / "backups"
        before = set(_complete(backups))
        stack.wait_for(lambda: set(_complete(backups)) - before, timeout=240)
        os.killpg(worker.pid, signal.SIGKILL)  # the host's worker and its trainer die mid-run
        worker.wait(timeout=60)
    owed = sorted(set(_complete(backups)) - before)
    events.xdel(stream, *filler)
    with serve_web(env, port=port) as url:
        stack = Stack(url, env, None)
        stack.wait_for(lambda: events.xlen(stream) == 0, timeout=120)
        assert not _recorded(web, run_id, backups, owed[0]), "the backup reached the web before the restart"
        with run_worker(worker_env):
            stack.wait_for(lambda: _run(stack, run_id)["state"] == "interrupted", timeout=120)
            for backup in owed:
                stack.wait_for(lambda backup=backup: _recorded(web, run_id, backups, backup), timeout=120)
            stack.wait_for(lambda: not list((worker_home / "worker" / "owed").glob("*.json")), timeout=60)


def _complete(backups: Path) -> list[str]:
    """The worker's complete backups (their completion mark written last)."""
    return [p.parent.name for p in backups.glob(f"*/{BACKUP_COMPLETE_FILE}")] if backups.is_dir() else []


def _recorded(web: Path, run_id: int, backups: Path, backup: str) -> bool:
    """Every file of the backup is on the web, recorded with the sha256 it has on the worker."""
    rows = dict(tuple(row) for row in record(web, "SELECT path, sha256 FROM uploads WHERE run_id = ?", run_id))
    files = [p for p in (backups / backup).rglob("*") if p.is_file()]
    return bool(files) and all(rows.get(p.relative_to(backups.parent).as_posix()) == sha256(p) for p in files)

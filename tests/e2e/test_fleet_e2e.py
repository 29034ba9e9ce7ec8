"""The fleet end to end, on a Redis of its own: two workers in two temporary folders and the web
in a third share nothing on disk. Runs are handed out once each, their samples and outputs reach
the web with matching checksums; a web restart, a Redis outage and a killed worker lose nothing
and run nothing twice; a run no worker can take waits and says why."""
from __future__ import annotations

import os
import signal
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from support.demo import short_run
from support.fleet import entry_numbers, host_folder, record, redis_server, sha256
from support.ports import free_port
from support.servers import serve_web
from support.sse import read_sse
from support.stack import Stack, run_worker

pytestmark = pytest.mark.slow
TTL = "5"


@pytest.fixture
def fleet(tmp_path, demo_workspace):
    with redis_server(tmp_path / "redis") as server:
        web = host_folder(tmp_path, "web", demo_workspace[0])
        env = {"OTWEB_WORKSPACE": str(web), "OTWEB_CONFIG_DIR": str(demo_workspace[1]), "REDIS_URL": server.url,
               "OTWEB_HEARTBEAT_TTL_S": TTL}
        workers = {name: {**env, "OTWEB_WORKSPACE": str(host_folder(tmp_path, name, demo_workspace[0])),
                          "OTWEB_WORKER_NAME": name, "OTWEB_WORKER_LABELS": labels}
                   for name, labels in (("alpha", "24gb,sdxl"), ("beta", "24gb"))}
        yield server, env, workers


def run_of(stack: Stack, run_id: int) -> dict:
    return stack.api("GET", f"/api/runs/{run_id}").json()["run"]


def sampled(demo_config, **overrides):
    return short_run(demo_config, epochs=1, sample_after=3, sample_after_unit="STEP", **overrides)


def test_two_workers_share_the_queue_and_send_everything_back(fleet, demo_config):
    server, env, workers = fleet
    with serve_web(env) as url, run_worker(workers["alpha"]), run_worker(workers["beta"]):
        stack = Stack(url, env, None)
        stack.wait_for(lambda: len(stack.api("GET", "/api/workers").json()["workers"]) == 2, timeout=30)
        lonely = stack.api("POST", "/api/queue", json={"config": sampled(demo_config), "target": {"labels": "a100"}})
        ids = stack.api("POST", "/api/queue", json={"config": sampled(demo_config), "count": 4}).json()["run_ids"]
        stack.wait_for(lambda: all(run_of(stack, i)["state"] == "completed" for i in ids), timeout=300, every=1)
        web = env["OTWEB_WORKSPACE"]
        placed = record(web, "SELECT run_id, worker FROM assignments ORDER BY run_id")
        assert sorted(r[0] for r in placed) == ids                   # every run handed out exactly once
        assert {r[1] for r in placed} == {"alpha", "beta"}            # both workers were busy
        for run_id in ids:
            run = run_of(stack, run_id)
            samples = stack.api("GET", f"/api/samples/list?run={run_id}").json()["samples"]
            assert samples and stack.api("GET", f"/api/samples/{samples[0]['id']}/image").status_code == 200
            assert f"/api/samples/{samples[0]['id']}" in stack.api("GET", f"/runs/{run_id}").text or \
                str(samples[0]["id"]) in stack.api("GET", f"/runs/{run_id}/samples").text
            name = os.path.basename(run["output_path"])
            local = os.path.join(workers[run["worker"]]["OTWEB_WORKSPACE"], "worker", "runs", str(run_id), "models", name)
            download = stack.api("GET", f"/runs/{run_id}/files/output/{name}")
            assert download.status_code == 200 and download.content == open(local, "rb").read()
            listed = stack.api("GET", f"/runs/{run_id}/files/output/{name}/sha256").json()["sha256"]
            assert listed == sha256(local)
            assert "loss" in stack.api("GET", f"/runs/{run_id}/log").text or run["steps"] == 6
        # a run for a label nobody has waits, and says why (API and page)
        waiting = run_of(stack, lonely.json()["run_ids"][0])
        assert waiting["state"] == "queued" and "no connected worker has the label a100" in waiting["status_text"]
        assert "no connected worker has the label a100" in stack.api("GET", "/").text + stack.api("GET", f"/runs/{waiting['id']}").text
        fleet_page = stack.api("GET", "/fleet").text
        assert 'data-worker="alpha"' in fleet_page and 'data-worker="beta"' in fleet_page


def test_web_restart_and_redis_outage_lose_nothing(fleet, demo_config):
    server, env, workers = fleet
    port = free_port()
    with run_worker(workers["alpha"]):
        with serve_web(env, port=port) as url:
            stack = Stack(url, env, None)
            run_id = stack.api("POST", "/api/queue", json={"config": short_run(demo_config, epochs=40)}).json()["run_ids"][0]
            stack.wait_for(lambda: (run_of(stack, run_id)["steps"] or 0) >= 3, timeout=120)
        time.sleep(2)  # the web is down; the run goes on and its entries wait in the stream
        with serve_web(env, port=port) as url:
            stack = Stack(url, env, None)
            before = run_of(stack, run_id)["steps"]
            server.stop()                                  # Redis away for 10 s
            time.sleep(10)
            server.start()
            stack.wait_for(lambda: run_of(stack, run_id)["state"] == "completed", timeout=240, every=1)
            run = run_of(stack, run_id)
            assert run["steps"] == run["max_step"] == 240 and before < 240
            web = env["OTWEB_WORKSPACE"]
            # every loss recorded once, every entry the worker numbered recorded, none twice
            steps = [r[0] for r in record(web, "SELECT step FROM metrics WHERE run_id = ? ORDER BY step", run_id)]
            assert steps == list(range(1, 241))
            numbers = next(iter(entry_numbers(web, run_id).values()))
            assert numbers == list(range(1, len(numbers) + 1))
            spool = os.path.join(workers["alpha"]["OTWEB_WORKSPACE"], "worker", "spool", "entries.jsonl")
            assert not os.path.exists(spool)               # drained
            # a browser that reconnects with Last-Event-ID gets exactly what followed it
            seqs = [r[0] for r in record(web, "SELECT seq FROM events WHERE run_id = ? ORDER BY seq", run_id)]
            middle = seqs[len(seqs) // 2]
            frames = read_sse(f"{url}/api/events?run={run_id}", until=lambda f: f.get("id") == str(seqs[-1]),
                              headers={"Last-Event-ID": str(middle)}, timeout=30)
            assert [int(f["id"]) for f in frames if "id" in f] == [s for s in seqs if s > middle]


def test_a_killed_worker_interrupts_its_run_which_resumes_elsewhere_from_its_uploaded_backup(fleet, demo_config):
    server, env, workers = fleet
    # a backup every 30 steps, none pruned: the one the test waits to see uploaded stays there
    config = short_run(demo_config, epochs=80, backup_after=30, backup_after_unit="STEP", rolling_backup_count=50)
    uploaded = Path(env["OTWEB_WORKSPACE"]) / "runs"
    with serve_web(env) as url, ExitStack() as beta_later:
        stack = Stack(url, env, None)
        with run_worker(workers["alpha"]) as alpha:
            # any worker may take it (no target): alpha does, being the only one yet
            run_id = stack.api("POST", "/api/queue", json={"config": config}).json()["run_ids"][0]
            stack.wait_for(lambda: (run_of(stack, run_id)["steps"] or 0) >= 8, timeout=180)
            # a backup has reached the web (uploads go every 2 s): killed before that, it waits for alpha
            stack.wait_for(lambda: list(uploaded.glob(f"{run_id}/backups/*/progress.json")), timeout=30)
            beta_later.enter_context(run_worker(workers["beta"]))
            os.killpg(alpha.pid, signal.SIGKILL)
            killed_at = time.monotonic()
            alpha.wait()

            def recorded_interruption():
                events = stack.api("GET", f"/api/runs/{run_id}/events").json()["events"]
                states = [e["data"] for e in events if e["event"] == "run"]
                return states[-1] if states[-1]["state"] == "interrupted" else None
            # recorded (not only shown) within the heartbeat TTL, with the reason
            reason = stack.wait_for(recorded_interruption, timeout=float(TTL) + 5)["reason"]
            assert time.monotonic() - killed_at < float(TTL) + 5
            assert "worker alpha stopped sending heartbeats" in reason
        time.sleep(2)
        # no other worker starts it on its own
        assert len(record(env["OTWEB_WORKSPACE"], "SELECT 1 FROM assignments WHERE run_id = ?", run_id)) == 1
        assert run_of(stack, run_id)["state"] == "interrupted"
        # resumed while alpha is gone: beta takes it, sent the newest backup alpha uploaded
        assert stack.api("POST", f"/api/runs/{run_id}/resume").status_code == 202
        stack.wait_for(lambda: run_of(stack, run_id)["state"] == "completed", timeout=240, every=1)
        placed = record(env["OTWEB_WORKSPACE"], "SELECT worker FROM assignments WHERE run_id = ?", run_id)
        assert [r[0] for r in placed] == ["alpha", "beta"]
        texts = [str(e["data"].get("text", "")) for e in stack.api("GET", f"/api/runs/{run_id}/events?after=0"
                                                                   ).json()["events"] if e["event"] in ("log", "status")]
        assert any("received backup" in t and "from the web" in t for t in texts), texts[-20:]
        assert any("resum" in t.lower() and "step" in t.lower() for t in texts), "beta continued from the backup"

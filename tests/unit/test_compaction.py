"""Compaction of ended runs (store.compaction): the progress events thinned to a timeline, every
other event, loss row and sample kept, replay of the run giving every state change; free pages
given back (auto_vacuum incremental, for new workspaces and ones made before it); a run that trains
is left alone; the control loop's housekeeping does it a bounded amount per turn."""
from __future__ import annotations

import json
import time

import pytest

from support.apps import make_app
from support.old_workspace import counts, make_old_workspace
from support.polling import wait_for
from support.sse import parse_frame
from webapp import store
from webapp.control.housekeeping import Housekeeping
from webapp.control.loop import ControlLoop
from webapp.store import compaction

ENDED_LONG_AGO = 1_000.0


@pytest.fixture
def conn(tmp_path):
    conn = store.connect(tmp_path / "otweb.sqlite3")
    store.init_schema(conn)
    yield conn
    conn.close()


def record_run(conn, steps: int = 1200, state: str = "completed", started: float = 100.0) -> int:
    """A run's record as the recorder writes it: a progress a second (step per second), statuses,
    a log line and samples among them, loss rows for every step, then its end."""
    run_id = store.create_run(conn, "demo", {"model_type": "STABLE_DIFFUSION_15"})
    store.append_event(conn, run_id, {"event": "run", "data": {"state": "running"}, "time": started})
    for step in range(steps):
        at = started + 1 + step
        if step % 300 == 0:
            store.append_event(conn, run_id, {"event": "status", "data": {"text": f"epoch {step // 300}"}, "time": at})
            for n in range(3):  # a sample's own progress while it is made
                store.append_event(conn, run_id, {"event": "sample_progress", "data": {"step": n, "max_step": 3}, "time": at})
            store.append_event(conn, run_id, {"event": "sample_default",
                                              "data": {"path": f"samples/{step}.png", "global_step": step}, "time": at})
        store.append_event(conn, run_id, {"event": "progress", "data": {"global_step": step, "loss": 0.5}, "time": at})
    store.append_metrics(conn, run_id, [(step, 0.5, 1e-3, started + 1 + step) for step in range(steps)])
    store.append_event(conn, run_id, {"event": "log", "data": {"text": "saved"}, "time": started + steps + 1})
    if state != "running":
        store.append_event(conn, run_id, {"event": "run", "data": {"state": state}, "time": started + steps + 2})
    return run_id


def events(conn, run_id: int) -> list[dict]:
    found, after = [], 0
    while page := store.events_since(conn, after, run_id, limit=500):  # SSE's replay of a run
        found += page
        after = page[-1]["seq"]
    return found


def compact_fully(conn, budget: int) -> int:
    turns = 0
    while compaction.step(conn, budget=budget, now=time.time() + ENDED_LONG_AGO)["run_id"] is not None:
        turns += 1
    return turns


def test_an_ended_run_keeps_its_timeline_and_every_loss(conn):
    run_id = record_run(conn)
    before = events(conn, run_id)
    losses = conn.execute("SELECT COUNT(*) FROM metrics WHERE run_id = ?", (run_id,)).fetchone()[0]
    samples = conn.execute("SELECT * FROM samples WHERE run_id = ? ORDER BY id", (run_id,)).fetchall()
    assert compact_fully(conn, budget=100) > 10  # bounded: many turns of 100 events each
    after = events(conn, run_id)
    progress_before = [e for e in before if e["event"] == "progress"]
    progress_after = [e for e in after if e["event"] == "progress"]
    # every other event as it was, in order, with its number (SSE ids stay valid); a sample's progress gone
    thinned = ("progress", "sample_progress")
    assert [e for e in after if e["event"] not in thinned] == [e for e in before if e["event"] not in thinned]
    assert len([e for e in before if e["event"] == "sample_progress"]) == 12
    assert not [e for e in after if e["event"] == "sample_progress"]
    assert [e["data"]["state"] for e in after if e["event"] == "run"] == ["running", "completed"]
    # the progress: the first, the last, one per 50 steps or per minute between
    steps = [e["data"]["global_step"] for e in progress_after]
    assert steps[0] == 0 and steps[-1] == 1199 and progress_after[-1] == progress_before[-1]
    assert len(progress_after) < len(progress_before) / 10
    assert all(b - a <= compaction.KEEP_EVERY_STEPS for a, b in zip(steps, steps[1:]))
    assert conn.execute("SELECT COUNT(*) FROM metrics WHERE run_id = ?", (run_id,)).fetchone()[0] == losses == 1200
    assert conn.execute("SELECT * FROM samples WHERE run_id = ? ORDER BY id", (run_id,)).fetchall() == samples
    assert len(samples) == 4
    assert store.get_run(conn, run_id)["state"] == "completed"
    assert compact_fully(conn, budget=100) == 0  # done once


def test_a_training_run_and_a_fresh_end_are_left_alone(conn):
    running = record_run(conn, steps=200, state="running")
    just_ended = record_run(conn, steps=200, started=time.time() - 210)
    before = {run_id: len(events(conn, run_id)) for run_id in (running, just_ended)}
    assert compaction.step(conn)["run_id"] is None  # the just-ended run's last events may still come
    assert {run_id: len(events(conn, run_id)) for run_id in (running, just_ended)} == before
    compact_fully(conn, budget=1000)
    assert len(events(conn, running)) == before[running]
    assert len(events(conn, just_ended)) < before[just_ended]


def test_a_resumed_run_is_compacted_again_after_its_new_end(conn):
    now = time.time()
    run_id = record_run(conn, steps=300, state="stopped", started=now - 10_000)
    compact_fully(conn, budget=1000)
    kept = len(events(conn, run_id))
    assert store.requeue_for_resume(conn, run_id)
    store.append_event(conn, run_id, {"event": "run", "data": {"state": "running"}, "time": now - 400})
    for step in range(300, 600):
        store.append_event(conn, run_id, {"event": "progress", "data": {"global_step": step}, "time": now - 600 + step})
    store.append_event(conn, run_id, {"event": "run", "data": {"state": "completed"}, "time": now + 1})
    compact_fully(conn, budget=1000)
    assert kept + 1 < len(events(conn, run_id)) < kept + 20


def test_free_pages_go_back_to_the_disk(conn, tmp_path):
    assert compaction.auto_vacuum(conn) == "incremental"  # a new workspace
    for _ in range(3):
        record_run(conn, steps=3000)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    compact_fully(conn, budget=5000)
    while compaction.vacuum_step(conn):
        pass
    assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
    assert conn.execute("PRAGMA page_count").fetchone()[0] < pages * 0.8


def test_a_workspace_from_before_opens_migrated_with_nothing_lost(tmp_path):
    path = make_old_workspace(tmp_path)
    conn = store.connect(path)
    try:
        assert compaction.auto_vacuum(conn) == "none"
        before = counts(conn)
        replay = events(conn, 1)
        store.init_schema(conn)  # what the new code does on opening it
        assert compaction.auto_vacuum(conn) == "incremental"
        assert counts(conn) == before and events(conn, 1) == replay
        assert store.get_run(conn, 1)["state"] == "completed"
        compact_fully(conn, budget=1000)
        assert counts(conn)["events"] < before["events"] and counts(conn)["metrics"] == before["metrics"]
        assert [e["data"]["state"] for e in events(conn, 1) if e["event"] == "run"] == ["running", "completed"]
        store.init_schema(conn)  # a second opening changes nothing
        assert compaction.auto_vacuum(conn) == "incremental"
    finally:
        conn.close()


def test_the_control_loops_housekeeping_compacts_and_measures(conn, tmp_path):
    run_id = record_run(conn, steps=400, started=time.time() - 10_000)
    conn.execute("UPDATE runs SET finished_at = ? WHERE id = ?", (time.time() - 7200, run_id))
    folder = tmp_path / "runs" / str(run_id)
    (folder / "samples").mkdir(parents=True)
    (folder / "samples" / "0.png").write_bytes(b"x" * 1000)
    (folder / "trainer.log").write_bytes(b"y" * 24)
    housekeeping = Housekeeping(conn, lambda rid: tmp_path / "runs" / str(rid))
    housekeeping.step()
    assert store.disk_use.of_run(conn, run_id)["bytes"] == 1024
    assert store.disk_use.of_run(conn, run_id)["files"] == 2
    assert conn.execute("SELECT done_at FROM compaction WHERE run_id = ?", (run_id,)).fetchone()[0] is not None


def test_the_leaders_loop_compacts_an_ended_run_after_the_set_delay(app, redis_url, monkeypatch):
    monkeypatch.setenv("OTWEB_COMPACT_AFTER_S", "0")  # at once (SETTLE_S after the end)
    conn = store.connect(app.config["DATABASE"])
    run_id = record_run(conn, steps=300, started=time.time() - 400)
    kept_longer = record_run(conn, steps=300, started=time.time() - 340)  # ended 30 s ago: not yet
    conn.execute("UPDATE runs SET finished_at = ? WHERE id = ?", (time.time() - 5, kept_longer))
    before = len(events(conn, kept_longer))
    loop = ControlLoop(redis_url, app.config["DATABASE"], app.config["SETTINGS"].run_dir, accounts_on=False)
    loop.start()
    try:
        wait_for(lambda: conn.execute("SELECT done_at FROM compaction WHERE run_id = ?", (run_id,)).fetchone(), 30)
    finally:
        loop.stop()
    assert [e["data"]["state"] for e in events(conn, run_id) if e["event"] == "run"] == ["running", "completed"]
    assert len(events(conn, run_id)) < 40 and len(events(conn, kept_longer)) == before
    conn.close()


def test_the_app_opens_a_workspace_from_before(workspace, config_dir, redis_url, redis_server):
    path = make_old_workspace(workspace)
    redis_server.flushall()
    client = make_app(workspace, config_dir, redis_url).test_client()
    assert client.get("/api/runs/1").json["run"]["state"] == "completed"
    assert client.get("/api/runs/1/loss?max_points=1000").json["total"] == 300
    assert [s["id"] for s in client.get("/api/samples/list?run=1").json["samples"]] == [1]
    conn = store.connect(path)
    try:
        assert compaction.auto_vacuum(conn) == "incremental"
        assert counts(conn) == {"runs": 1, "events": 303, "metrics": 300, "samples": 1}
    finally:
        conn.close()


def test_the_sse_replay_of_a_compacted_run_gives_every_state_change(app, client):
    conn = store.connect(app.config["DATABASE"])
    run_id = record_run(conn, steps=400, state="failed")
    compact_fully(conn, budget=1000)
    expected = [e for e in events(conn, run_id)]
    conn.close()
    response = client.get(f"/api/events?after=0&run={run_id}", buffered=False)
    frames, text = [], ""
    for chunk in response.response:  # the stream stays open: read until the run's last event
        text += chunk.decode() if isinstance(chunk, bytes) else chunk
        while "\n\n" in text:
            raw, text = text.split("\n\n", 1)
            frame = parse_frame(raw)
            if frame["data"] is not None:
                frames.append(frame)
        if frames and frames[-1].get("id") == str(expected[-1]["seq"]):
            break
    response.close()
    assert [int(f["id"]) for f in frames] == [e["seq"] for e in expected]
    states = [json.loads(f["data"])["data"]["state"] for f in frames if f.get("event") == "run"]
    assert states == ["running", "failed"]

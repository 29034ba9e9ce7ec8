"""The record's smaller errors after faults (issue 33 §4), on a real Redis and SQLite: the "back in
contact" correction says when and where contact came back; a final state does not keep an old
reason; a worker reconnecting after Redis restarted does not make its run look interrupted."""
from __future__ import annotations

import json
import time

import redis

from support.fleet import RedisServer
from webapp import create_app, store
from webapp.control.recorder import Recorder
from webapp.eventlog import ENTRY_EVENT, encode_entry
from webapp.protocol import Event, make_event
from webapp.settings import WORKERS_KEY, heartbeat_key, worker_stream

EVENT_STREAM = worker_stream("w1")  # the stream of the worker the runs are assigned to

LAPSE = "worker w1 stopped sending heartbeats (16 s): its process died"


def _lapsed_run(app, at_step: int):
    conn = store.connect(app.config["DATABASE"])
    run_id = store.create_run(conn, "demo", {"a": 1})
    assert store.assignments.assign(conn, run_id, "w1", f"as{run_id}")
    store.append_event(conn, run_id, make_event(Event.RUN, state="running"))
    store.append_event(conn, run_id, make_event(Event.PROGRESS, global_step=at_step, max_step=2000))
    store.append_event(conn, run_id, make_event(Event.RUN, state="interrupted", reason=LAPSE,
                                                reason_code="worker_lapsed"))
    return conn, run_id, f"as{run_id}"


def test_back_in_contact_is_stamped_when_contact_returned_at_the_step_it_returned_at(app, redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    conn, run_id, source = _lapsed_run(app, at_step=200)
    # the worker is back: its heartbeat says where its trainer is; the first entry to arrive is the
    # oldest it spooled while away (step 240, said 15 s before the interruption was recorded)
    client.sadd(WORKERS_KEY, "w1")
    client.set(heartbeat_key("w1"), json.dumps({"name": "w1", "run_id": run_id, "step": 889, "time": time.time()}), ex=30)
    spooled_at = time.time() - 60
    for n, step in enumerate((240, 241), 1):
        client.xadd(EVENT_STREAM, encode_entry(ENTRY_EVENT, run_id, source, n, event="progress",
                                               data={"global_step": step, "max_step": 2000}, time=spooled_at + n))
    heard_at = time.time()
    recorder = Recorder(conn, client, app.config["SETTINGS"].run_dir, "r1")
    while recorder.step(block_ms=10):
        pass
    notes = [e for e in store.timeline(conn, run_id) if e["data"].get("back_in_contact")]
    assert [e["data"]["text"] for e in notes] == [
        "lost contact with worker w1 at step 200; back at step 889: the run went on meanwhile"]
    assert notes[0]["time"] >= heard_at
    states = [e for e in store.timeline(conn, run_id) if e["event"] == "run"]
    assert states[-1]["data"]["state"] == "running" and states[-1]["time"] >= heard_at


def test_a_final_state_does_not_keep_an_old_reason(app):
    conn, run_id, _ = _lapsed_run(app, at_step=10)
    store.append_event(conn, run_id, make_event(Event.RUN, state="running", reason=None))  # back in contact
    assert store.get_run(conn, run_id)["reason_code"] == "worker_lapsed"  # running: kept until it ends
    store.append_event(conn, run_id, make_event(Event.RUN, state="completed", reason=None, exit_code=0))
    run = store.get_run(conn, run_id)
    assert run["state"] == "completed" and run["reason"] is None and run["reason_code"] is None
    # a final state with its own reason replaces the old one
    second, second_id, _ = _lapsed_run(app, at_step=10)
    store.append_event(second, second_id, make_event(Event.RUN, state="failed", reason="the trainer failed"))
    run = store.get_run(second, second_id)
    assert run["reason"] == "the trainer failed" and run["reason_code"] is None


def test_a_worker_reconnecting_after_redis_restarted_does_not_look_interrupted(tmp_path, workspace, config_dir):
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        app = create_app({"TESTING": True, "WORKSPACE": workspace, "CONFIG_DIR": config_dir, "REDIS_URL": server.url})
        client = redis.Redis.from_url(server.url, decode_responses=True)
        conn = store.connect(app.config["DATABASE"])
        run_id = store.create_run(conn, "demo", {"a": 1})
        assert store.assignments.assign(conn, run_id, "w1", "as1")
        client.sadd(WORKERS_KEY, "w1")
        client.set(heartbeat_key("w1"), json.dumps({"name": "w1", "run_id": run_id}), px=300)
        web = app.test_client()
        assert web.get(f"/api/runs/{run_id}").json["run"]["state"] == "running"
        server.stop()
        time.sleep(0.5)  # Redis is down longer than the beat's TTL: its key is gone when it returns
        server.start()
        run = web.get(f"/api/runs/{run_id}").json["run"]
        assert run["state"] == "running" and run["reconnecting"]
        time.sleep(3.5)  # no beat came back within the grace: the worker is gone
        assert web.get(f"/api/runs/{run_id}").json["run"]["state"] == "interrupted"
    finally:
        server.stop()


def test_loss_rows_carry_their_attempt_and_the_chart_shows_the_attempt_that_continued(app, client, redis_url):
    """Resumed on another worker from its step-300 backup after reaching 350: steps 301-350 are
    trained twice. Both attempts' rows are kept, each with its attempt; the chart has one point per
    step, the second attempt's."""
    from webapp.eventlog import ENTRY_METRICS
    redis_client = redis.Redis.from_url(redis_url, decode_responses=True)
    conn = store.connect(app.config["DATABASE"])
    run_id = store.create_run(conn, "demo", {"a": 1})
    assert store.assignments.assign(conn, run_id, "w1", "first")
    store.append_event(conn, run_id, make_event(Event.RUN, state="interrupted", reason="w1 died"))
    assert store.requeue_for_resume(conn, run_id)
    conn.commit()
    assert store.assignments.assign(conn, run_id, "w2", "second")
    redis_client.sadd(WORKERS_KEY, "w1", "w2")  # in the fleet: the recorder reads both workers' streams
    for source, worker, steps, loss in (("first", "w1", range(1, 351), 1.0), ("second", "w2", range(301, 401), 0.5)):
        rows = [[step, loss, 1e-4, float(step)] for step in steps]
        for n, start in enumerate(range(0, len(rows), 50), 1):
            redis_client.xadd(worker_stream(worker), encode_entry(ENTRY_METRICS, run_id, source, n,
                                                                  rows=rows[start:start + 50]))
    recorder = Recorder(conn, redis_client, app.config["SETTINGS"].run_dir, "r1")
    while recorder.step(block_ms=10):
        pass
    counts = conn.execute("SELECT attempt, COUNT(*) FROM metrics WHERE run_id = ? GROUP BY attempt", (run_id,)).fetchall()
    assert [tuple(r) for r in counts] == [(1, 350), (2, 100)]
    points, total = store.loss_buckets(conn, run_id, 1000)
    assert total == 400 and [p["step"] for p in points] == list(range(1, 401))
    assert {p["loss"] for p in points if p["step"] > 300} == {0.5}
    points, total = store.loss_buckets(conn, run_id, 20)  # summarised: the same rows
    assert total == 400 and {p["loss"] for p in points if p["step"] > 300} == {0.5}
    assert client.get(f"/runs/{run_id}").status_code == 200


def test_an_old_workspace_gains_the_attempt_columns(tmp_path):
    import sqlite3
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE metrics (run_id INTEGER NOT NULL, step INTEGER NOT NULL, loss REAL, lr REAL,"
                " time REAL NOT NULL)")
    old.execute("INSERT INTO metrics VALUES (1, 1, 0.5, 0.001, 0.0)")
    old.commit()
    old.close()
    conn = store.connect(path)
    store.init_schema(conn)
    assert [tuple(r) for r in conn.execute("SELECT step, attempt, superseded FROM metrics")] == [(1, 1, 0)]


def test_a_state_reported_after_the_run_ended_goes_to_the_timeline_not_the_state(app, redis_url):
    """A worker that restarts and finds an ended assignment still in its taken list reports it
    interrupted: the run's final state (stopped, by its worker's own report) stands."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    conn = store.connect(app.config["DATABASE"])
    run_id = store.create_run(conn, "demo", {"a": 1})
    assert store.assignments.assign(conn, run_id, "w1", "as1")
    reports = [("as1", 1, {"state": "running"}), ("as1", 2, {"state": "stopped"}),
               ("as1:recover", 1, {"state": "interrupted", "reason": "worker w1 stopped while this run was training"})]
    client.sadd(WORKERS_KEY, "w1")
    for source, n, data in reports:
        client.xadd(EVENT_STREAM, encode_entry(ENTRY_EVENT, run_id, source, n, event="run", data=data, time=time.time()))
    recorder = Recorder(conn, client, app.config["SETTINGS"].run_dir, "r1")
    while recorder.step(block_ms=10):
        pass
    run = store.get_run(conn, run_id)
    assert run["state"] == "stopped" and run["reason"] is None
    late = [e["data"] for e in store.timeline(conn, run_id) if e["data"].get("late_report")]
    assert len(late) == 1 and late[0]["reported"] == "interrupted" and "it stays stopped" in late[0]["text"]

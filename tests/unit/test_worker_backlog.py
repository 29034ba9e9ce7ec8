"""The worker's backlog (issue 33 §1, §2), on a real Redis and SQLite: what the trainer said and
the worker has not sent yet is in its heartbeat and on the run page ("catching up: N entries to
send"); the run folder's last files wait a bounded time for room in the stream, then follow the
run's end."""
from __future__ import annotations

import json
import threading
import time

import redis

from webapp import store
from webapp.protocol import Event, make_event
from webapp.settings import WORKERS_KEY, heartbeat_key, worker_stream

EVENT_STREAM = worker_stream("w1")  # the stream of the worker the runs are assigned to
from webapp.worker.heartbeat import beat
from webapp.worker.stream_sink import FILE_BACKLOG, StreamSink
from webapp.worker.supervisor import TrainerHost
from webapp.worker.uploads import FolderSync


def _run(app, worker="w1"):
    conn = store.connect(app.config["DATABASE"])
    run_id = store.create_run(conn, "demo", {"a": 1})
    assert store.assignments.assign(conn, run_id, worker, f"as{run_id}")
    return conn, run_id, f"as{run_id}"


def test_events_left_to_send_after_the_trainer_ended_are_in_the_heartbeat_and_the_run_page(app, client, redis_url,
                                                                                            tmp_path):
    conn, run_id, source = _run(app)
    redis_client = redis.Redis.from_url(redis_url, decode_responses=True)
    sink = StreamSink(redis_client, tmp_path / "spool", EVENT_STREAM)
    host = TrainerHost({"id": run_id}, {}, tmp_path / "run", tmp_path, sink, redis_client)
    for step in range(1, 8):  # what a trainer said before it exited, not sent yet
        host.events.put(make_event(Event.STATUS, text=f"s{step}"))
    deadline = time.monotonic() + 10
    while host.events.qsize() < 7 and time.monotonic() < deadline:
        time.sleep(0.05)  # the queue's feeder thread writes them into the pipe
    assert host.catching_up() == 0  # a few while the trainer runs: nothing to say
    host.exited = True
    assert host.catching_up() == 7
    payload = beat("w1", [], host, 0, True, [], False)
    assert payload["catching_up"] == 7 and payload["run_id"] == run_id
    redis_client.sadd(WORKERS_KEY, "w1")
    redis_client.set(heartbeat_key("w1"), json.dumps(payload), ex=30)
    run = client.get(f"/api/runs/{run_id}").json["run"]
    assert run["state"] == "running" and run["status_text"] == "catching up: 7 entries to send"
    assert "catching up: 7 entries to send" in client.get(f"/runs/{run_id}").text


def test_the_last_files_wait_a_bounded_time_for_room_then_follow_the_runs_end(app, redis_url, tmp_path):
    conn, run_id, source = _run(app)
    redis_client = redis.Redis.from_url(redis_url, decode_responses=True)
    sink = StreamSink(redis_client, tmp_path / "spool", EVENT_STREAM)
    folder = tmp_path / "run"
    sink.bind(run_id, source, folder)
    (folder / "models").mkdir(parents=True)
    (folder / "models" / "out.safetensors").write_bytes(b"w" * 1000)
    # the stream is full: nobody records (the web's disk is full, its recorder waits)
    filler = [redis_client.xadd(EVENT_STREAM, {"x": "1"}) for _ in range(FILE_BACKLOG)]
    uploads = FolderSync(sink, run_id, folder, max_bytes=10**9, finish_wait_s=0.5)
    uploads.start()
    finishing = threading.Thread(target=uploads.finish)
    finishing.start()
    finishing.join(timeout=15)
    assert not finishing.is_alive(), "the run's end waited for room without limit"
    sink.emit(run_id, make_event(Event.RUN, state="completed"))  # the run's end is reported
    sent = [fields for _, fields in redis_client.xrange(EVENT_STREAM) if "x" not in fields]
    assert not any("out.safetensors" in json.dumps(fields) for fields in sent)
    redis_client.xdel(EVENT_STREAM, *filler)  # the recorder takes entries again
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        entries = [fields for _, fields in redis_client.xrange(EVENT_STREAM)]
        if any("out.safetensors" in json.dumps(fields) for fields in entries):
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the file did not follow the run's end")

"""Issue 26 §3: one malformed entry must not stop the record. On a real Redis and SQLite, with the
real recorder and control loop: what does not fit its schema (or raises while applied) is acked,
set aside in the dead-letter stream with its reason and source, counted, and the entries after it
are recorded; dispatch goes on whatever the recorder does."""
from __future__ import annotations

import json
import time

import pytest
import redis
from hypothesis import HealthCheck, given, settings, strategies as st

from support.polling import wait_for
from webapp import store
from webapp.control import record_state
from webapp.control.loop import ControlLoop
from webapp.control.recorder import Recorder
from webapp.eventlog import ENTRY_EVENT, ENTRY_FILE, ENTRY_METRICS, decode_entry, encode_entry
from webapp.protocol import dumps
from webapp.settings import RECORDER_GROUP, WORKERS_KEY, assign_key, heartbeat_key, worker_stream

EVENT_STREAM = worker_stream("w1")  # the stream of the worker the tests' runs are assigned to


def _run(app, worker="w1"):
    conn = store.connect(app.config["DATABASE"])
    run_id = store.create_run(conn, "demo", {"a": 1})
    assert store.assignments.assign(conn, run_id, worker, f"as{run_id}")
    redis.Redis.from_url(app.config["REDIS_URL"]).sadd(WORKERS_KEY, worker)  # in the fleet: its stream is read
    return conn, run_id, f"as{run_id}"


def _drain(recorder):
    while recorder.step(block_ms=10):
        pass


def _raw(**entry) -> dict:
    return {"e": dumps(entry)}


def _texts(conn, run_id):
    return [e["data"]["text"] for e in store.events_since(conn, 0, run_id, limit=100_000) if e["event"] == "log"]


def test_the_issue_s_700_malformed_entries_stop_neither_the_record_nor_dispatch(app, redis_url):
    """The reproduction: ~700 entries whose source is a list made every batch raise, pending for
    ever, and dispatch (which stepped only after the recorder) stopped with it."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    conn, run_id, source = _run(app)
    waiting = store.create_run(conn, "next", {"a": 2})
    for n in range(700):
        client.xadd(EVENT_STREAM, _raw(k="event", run=run_id, src=[1], n=n, event="status", data={"text": "x"}))
    for n, (event, data) in enumerate([("run", {"state": "running"}), ("finished", {"stopped": False}),
                                       ("run", {"state": "completed"})], 1):
        client.xadd(EVENT_STREAM, encode_entry(ENTRY_EVENT, run_id, source, n, event=event, data=data, time=time.time()))
    client.sadd(WORKERS_KEY, "w2")
    client.set(heartbeat_key("w2"), json.dumps({"devices": [0], "time": time.time()}), ex=60)
    client.set(heartbeat_key("w1"), json.dumps({"devices": [0], "run_id": run_id, "time": time.time()}), ex=60)
    loop = ControlLoop(redis_url, app.config["DATABASE"], app.config["SETTINGS"].run_dir, accounts_on=False)
    loop.start()
    try:
        wait_for(lambda: store.get_run(conn, run_id)["state"] == "completed", 60)
        wait_for(lambda: client.llen(assign_key("w2")) == 1, 30)
        handed = json.loads(client.lindex(assign_key("w2"), 0))
    finally:
        loop.stop()
        client.srem(WORKERS_KEY, "w2")
        client.delete(heartbeat_key("w1"), heartbeat_key("w2"), assign_key("w2"))
    assert handed["run_id"] == waiting
    dead = record_state.dead_letters(client)
    assert dead["count"] == 700
    assert "source" in dead["recent"][0]["reason"] and dead["recent"][0]["stream"] == EVENT_STREAM
    assert client.xpending(EVENT_STREAM, RECORDER_GROUP)["pending"] == 0 and client.xlen(EVENT_STREAM) == 0


MALFORMED = [
    ("not JSON", {"e": "{nope"}),
    ("no field", {"x": "1"}),
    ("rows not lists", dict(k="metrics", rows="1,2")),
    ("a row of strings", dict(k="metrics", rows=[["1", "2", "3", "4"]])),
    ("bad base64", dict(k="file", path="samples/a.png", mode="whole", offset=0, size=3, length=3, last=True,
                        sha256="0" * 64, data="!!!")),
    ("a chunk past its size", dict(k="file", path="a", mode="whole", offset=10**10, size=1, length=1, last=True,
                                   sha256="0" * 64, data="YQ==")),
    ("unknown state", dict(k="event", event="run", data={"state": "exploded"})),
    ("unknown event", dict(k="event", event="rm -rf", data={})),
    ("data not a dict", dict(k="event", event="status", data=["x"])),
    ("a sample without its path", dict(k="event", event="sample_default", data={"prompt": "p"})),
    ("remove without a path", dict(k="remove", path=7)),
    ("unknown kind", dict(k="exec", cmd="id")),
]


def test_each_malformed_entry_is_set_aside_with_its_reason_and_the_rest_is_recorded(app, client, redis_url):
    redis_client = redis.Redis.from_url(redis_url, decode_responses=True)
    conn, run_id, source = _run(app)
    n = 0
    for _, body in MALFORMED:
        n += 1
        redis_client.xadd(EVENT_STREAM, encode_entry(ENTRY_EVENT, run_id, source, n, event="log",
                                                     data={"text": f"ok {n}"}))
        n += 1
        redis_client.xadd(EVENT_STREAM, body if "k" not in body else _raw(run=run_id, src=source, n=n, **body))
    recorder = Recorder(conn, redis_client, app.config["SETTINGS"].run_dir, "r1")
    _drain(recorder)
    assert _texts(conn, run_id) == [f"ok {n}" for n in range(1, 2 * len(MALFORMED), 2)]
    dead = record_state.dead_letters(redis_client, recent=100)
    assert dead["count"] == len(MALFORMED) == recorder.stats()["set_aside"]
    assert all(d["reason"] and d["id"] and d["stream"] == EVENT_STREAM for d in dead["recent"])
    assert redis_client.xlen(EVENT_STREAM) == 0
    # counted on the System page and in its JSON
    assert client.get("/api/system/record").get_json()["dead_letters"]["count"] == len(MALFORMED)
    page = client.get("/system").get_data(as_text=True)
    assert f'data-testid="dead-letters">{len(MALFORMED)}<' in page and "unknown entry kind" in page


def test_an_entry_that_raises_while_applied_is_undone_and_set_aside_alone(app, redis_url):
    """Well-formed but refused where it is applied (an output outside the run folder): that
    entry's writes are undone (its savepoint), the batch commits; a step SQLite cannot hold is
    refused by the schema (it raised where it was bound)."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    conn, run_id, source = _run(app)
    bodies = [(ENTRY_EVENT, {"event": "log", "data": {"text": "before"}}),
              (ENTRY_EVENT, {"event": "finished", "data": {"output": "../../../etc/passwd"}}),
              (ENTRY_METRICS, {"rows": [[1, 0.1, 0.1, 1.0]]}),
              (ENTRY_METRICS, {"rows": [[2**70, 0.1, 0.1, 1.0]]}),  # refused by its schema: int64 at most
              (ENTRY_EVENT, {"event": "log", "data": {"text": "after"}})]
    for n, (kind, body) in enumerate(bodies, 1):
        client.xadd(EVENT_STREAM, encode_entry(kind, run_id, source, n, **body))
    recorder = Recorder(conn, client, app.config["SETTINGS"].run_dir, "r1")
    _drain(recorder)
    assert _texts(conn, run_id) == ["before", "after"]
    assert store.get_run(conn, run_id)["output_path"] is None
    assert record_state.dead_letters(client)["count"] == 2


def test_a_recorder_that_raises_does_not_stop_dispatch(app, redis_url):
    """The event stream's key holds a string (WRONGTYPE on every read): the recorder raises each
    turn, and the dispatcher still hands the queued run to the idle worker."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    conn = store.connect(app.config["DATABASE"])
    waiting = store.create_run(conn, "next", {"a": 2})
    client.delete(EVENT_STREAM)
    client.set(EVENT_STREAM, "not a stream")
    client.sadd(WORKERS_KEY, "w2")
    client.set(heartbeat_key("w2"), json.dumps({"devices": [0], "time": time.time()}), ex=60)
    loop = ControlLoop(redis_url, app.config["DATABASE"], app.config["SETTINGS"].run_dir, accounts_on=False)
    loop.start()
    try:
        wait_for(lambda: client.llen(assign_key("w2")) == 1, 30)
    finally:
        loop.stop()
        client.delete(EVENT_STREAM, heartbeat_key("w2"), assign_key("w2"))
        client.srem(WORKERS_KEY, "w2")
    assert store.get_run(conn, waiting)["worker"] == "w2"


# -- arbitrary entries: the decoder and the recorder never raise --------------------------------

_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                     max_leaves=12)
_kinds = st.sampled_from(["event", "metrics", "file", "remove", "x", None])
_events = st.sampled_from(["progress", "status", "sample_default", "log", "error", "finished", "run", "?"])


@st.composite
def _entry(draw, run_id: int, source: str, n: int):
    """A hostile entry: often nearly right (a known kind and event, the right run), then wrong."""
    body = {"k": draw(_kinds), "run": draw(st.sampled_from([run_id, -1, "5", None, 2**70])),
            "src": draw(st.sampled_from([source, [1], "", None, "x" * 300])),
            "n": draw(st.sampled_from([n, 2**64, -n]))}
    body.update(event=draw(_events), data=draw(_json), rows=draw(_json), path=draw(_json), offset=draw(_json),
                size=draw(_json), length=draw(_json), data_b64=draw(_json), mode=draw(_json), time=draw(_json))
    if draw(st.booleans()):
        body["data"] = draw(st.dictionaries(st.sampled_from(["state", "text", "path", "global_step", "output",
                                                             "artifact", "rows", "pid"]), _json, max_size=4))
    keep = draw(st.sets(st.sampled_from(sorted(body))))
    raw = draw(st.sampled_from(["json", "fields", "text"]))
    if raw == "text":
        return {"e": draw(st.text(max_size=40))}
    if raw == "fields":
        return draw(st.dictionaries(st.text(min_size=1, max_size=5), st.text(max_size=10), min_size=1, max_size=3))
    return {"e": json.dumps({k: body[k] for k in keep} | {"k": body["k"]}, default=str)}


@given(st.data())
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
def test_arbitrary_entries_never_raise_and_valid_ones_around_them_are_recorded_once(app, redis_url, data):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    conn, run_id, source = _run(app)
    sent, n = [], 0
    for _ in range(data.draw(st.integers(1, 12))):
        n += 1
        junk = data.draw(_entry(run_id, source, n))
        try:
            decode_entry(junk)
        except ValueError:
            pass
        client.xadd(EVENT_STREAM, junk)
        n += 1
        text = f"valid {n}"
        client.xadd(EVENT_STREAM, encode_entry(ENTRY_EVENT, run_id, source, n, event="log", data={"text": text}))
        sent.append(text)
        if data.draw(st.booleans()):  # sent twice (a spool replayed): recorded once
            client.xadd(EVENT_STREAM, encode_entry(ENTRY_EVENT, run_id, source, n, event="log", data={"text": text}))
    recorder = Recorder(conn, client, app.config["SETTINGS"].run_dir, "prop")
    _drain(recorder)
    assert [t for t in _texts(conn, run_id) if t.startswith("valid ")] == sent
    assert client.xlen(EVENT_STREAM) == 0 and recorder.held is None
    conn.close()


def test_a_file_chunk_must_hold_what_it_says(app, redis_url):
    """A chunk's base64 is checked before it is written: one that decodes to another length is set
    aside, its file never started."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    conn, run_id, source = _run(app)
    client.xadd(EVENT_STREAM, encode_entry(ENTRY_FILE, run_id, source, 1, path="samples/a.png", mode="whole",
                                           offset=0, size=4, length=4, last=True, sha256="0" * 64, data="YQ=="))
    _drain(Recorder(conn, client, app.config["SETTINGS"].run_dir, "r1"))
    assert not (app.config["SETTINGS"].run_dir(run_id) / "samples").exists()
    assert "not its length" in record_state.dead_letters(client)["recent"][0]["reason"]


@pytest.mark.parametrize("fields", [{"e": "[]"}, {"e": "1e999"}, {"e": '{"k":"event","run":true,"src":"a","n":1}'}])
def test_the_decoder_refuses_with_a_value_error(fields):
    with pytest.raises(ValueError):
        decode_entry(fields)


def test_a_run_s_progress_never_moves_backwards(app):
    """An older step arriving late keeps its place in the timeline but does not fold into the
    run; nor does any progress after the run's final state."""
    from webapp.protocol import Event, make_event
    conn, run_id, _ = _run(app)
    for event in (make_event(Event.RUN, state="running"), make_event(Event.PROGRESS, global_step=500, max_step=900),
                  make_event(Event.PROGRESS, global_step=300, max_step=900)):
        store.append_event(conn, run_id, event)
    assert store.get_run(conn, run_id)["progress"]["global_step"] == 500
    store.append_event(conn, run_id, make_event(Event.PROGRESS, global_step=900, max_step=900))
    store.append_event(conn, run_id, make_event(Event.RUN, state="completed"))
    appender = store.events.BatchAppender(conn)   # the recorder's path
    appender.append(run_id, make_event(Event.PROGRESS, global_step=899, max_step=900))
    appender.flush()
    assert store.get_run(conn, run_id)["progress"]["global_step"] == 900
    assert [e["data"].get("global_step") for e in store.events_since(conn, 0, run_id)
            if e["event"] == "progress"] == [500, 300, 900, 899]


def test_a_resumed_run_s_progress_starts_anew_with_its_new_attempt(app):
    """Resumed from its step-300 backup after reaching 350: the new attempt's steps (301, ...)
    are the run's progress, not held back by the 350 the last attempt reached."""
    from webapp.protocol import Event, make_event
    conn, run_id, _ = _run(app)
    store.append_event(conn, run_id, make_event(Event.PROGRESS, global_step=350, max_step=900))
    store.append_event(conn, run_id, make_event(Event.RUN, state="interrupted", reason="w1 died"))
    assert store.requeue_for_resume(conn, run_id)
    conn.commit()
    assert store.get_run(conn, run_id)["progress"]["global_step"] == 350  # shown while it waits
    assert store.assignments.assign(conn, run_id, "w2", "second")
    store.append_event(conn, run_id, make_event(Event.PROGRESS, global_step=301, max_step=900))
    assert store.get_run(conn, run_id)["progress"]["global_step"] == 301


def test_a_queued_event_after_the_hand_over_does_not_queue_the_run_again(app):
    """Queuing a run waits on a thread for its dataset's fingerprint; the dispatcher may hand the run
    out meanwhile. Its "queued" event, recorded after that, must not put it back in the queue (a
    run was handed out twice)."""
    from webapp.protocol import Event, make_event
    conn, run_id, _ = _run(app)  # created queued, then assigned: running
    store.append_event(conn, run_id, make_event(Event.RUN, state="queued", config_name="demo"))
    assert store.get_run(conn, run_id)["state"] == "running"
    assert store.queued_runs(conn) == []

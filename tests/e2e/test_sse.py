"""SSE end to end: gunicorn's gevent worker, real Redis, SQLite written as the worker writes it."""
from __future__ import annotations

import json
import threading
from pathlib import Path
import time

import pytest
import requests

from support.polling import wait_for
from support.servers import serve_web
from support.sse import SSEReader
from webapp import create_app, store
from webapp.settings import EVENTS_CHANNEL
from webapp.protocol import make_event
from webapp.web.sse import routes as events_view
from webapp.web.sse import fragments
from webapp import eventlog
from webapp.web import sse


@pytest.fixture(scope="module")
def web(tmp_path_factory, redis_url, redis_server):
    workspace = tmp_path_factory.mktemp("sse-workspace")
    env = {"OTWEB_WORKSPACE": str(workspace), "OTWEB_CONFIG_DIR": str(tmp_path_factory.mktemp("sse-configs")),
           "REDIS_URL": redis_url, "OTWEB_SSE_HEARTBEAT_S": "1",
           # the test plays the worker, appending and publishing itself: no dispatcher (it would
           # announce why its queued run waits) and no recorder
           "OTWEB_CONTROL_LOOP": "false"}
    with serve_web(env) as base_url:
        yield base_url, workspace / "otweb.sqlite3"


@pytest.fixture
def worker(web, redis_server):
    """Plays the worker: append to SQLite first, then publish, as the bridge does."""
    conn = store.connect(web[1])
    store.init_schema(conn)
    run_id = store.create_run(conn, "test", {})

    def emit(name="log", run=run_id, publish=True, **data) -> dict:
        numbered = store.append_event(conn, run, make_event(name, **(data or {"text": "hello"})))
        if publish:
            eventlog.publish_event(redis_server, numbered)
        return numbered

    emit.conn, emit.run_id = conn, run_id
    yield emit
    conn.close()


def stats(base_url: str) -> dict:
    return requests.get(base_url + "/api/events/stats", timeout=5).json()


def seqs(frames: list[dict]) -> list[int]:
    return [int(f["id"]) for f in frames if "id" in f]


def test_headers_and_retry_first(web):
    reader = SSEReader(web[0])
    try:
        headers = reader.response.headers
        assert reader.response.status_code == 200
        assert headers["Content-Type"] == "text/event-stream"
        assert headers["Cache-Control"] == "no-cache"
        assert headers["X-Accel-Buffering"] == "no"
        assert reader.frame() == {"data": None, "comments": [], "retry": "2000"}
    finally:
        reader.close()


def test_live_events_arrive_in_order_with_seq_as_id_and_json_data(web, worker):
    reader = SSEReader(web[0])
    try:
        reader.frame()  # retry: the client is registered and the broker subscribed
        sent = [worker(text=f"line {i}") for i in range(20)]
        frames = reader.frames_until_id(sent[-1]["seq"])
        assert seqs(frames) == [e["seq"] for e in sent]
        assert all(f["event"] == "log" for f in frames)
        assert [json.loads(f["data"]) for f in frames] == sent
    finally:
        reader.close()


def test_html_stream_sends_fragments_with_id_on_the_last_frame(web, worker):
    reader = SSEReader(web[0], "/events")
    try:
        reader.frame()
        status = worker("status", text="caching latents")
        log = worker("log", text="<b>escaped?</b>")
        frames = reader.frames_until_id(log["seq"])
        status_frames = frames[:-1]
        # a run with no samples yet empties the gallery first, and with no progress yet clears the
        # progress box (the last run's must not stay beside it)
        assert [f["event"] for f in status_frames] == ["samples_reset", "state", "controls", "progress"]
        assert [f.get("id") for f in status_frames] == [None, None, None, str(status["seq"])]
        assert frames[-1]["event"] == "log" and "&lt;b&gt;" in frames[-1]["data"]
    finally:
        reader.close()


def test_reconnect_with_last_event_id_gets_every_missed_event_once_then_live(web, worker):
    reader = SSEReader(web[0])
    reader.frame()
    first = [worker() for _ in range(3)]
    last_seen = seqs(reader.frames_until_id(first[-1]["seq"]))[-1]
    reader.close()
    missed = [worker() for _ in range(30)]
    # keep publishing while the client reconnects, so events cross the replay/live boundary
    published = []

    def publish_slowly():
        for _ in range(100):
            published.append(worker())
            time.sleep(0.005)

    publisher = threading.Thread(target=publish_slowly)
    publisher.start()
    reader = SSEReader(web[0], headers={"Last-Event-ID": str(last_seen)})
    try:
        publisher.join()
        frames = reader.frames_until_id(published[-1]["seq"])
        expected = [e["seq"] for e in missed + published]
        assert seqs(frames) == expected
        assert len(set(seqs(frames))) == len(frames)
    finally:
        publisher.join()
        reader.close()


def test_after_param_replays_and_run_filters(web, worker):
    other = store.create_run(worker.conn, "other", {})
    mine = [worker(), worker(run=other), worker()]
    reader = SSEReader(web[0], f"/api/events?after={mine[0]['seq'] - 1}&run={worker.run_id}")
    try:
        live = worker()
        frames = reader.frames_until_id(live["seq"])
        assert seqs(frames) == [mine[0]["seq"], mine[2]["seq"], live["seq"]]
    finally:
        reader.close()


def test_out_of_order_and_missing_publishes_are_filled_from_sqlite(web, worker, redis_server):
    reader = SSEReader(web[0])
    try:
        reader.frame()
        early = worker(publish=False)  # another worker appended it but has not published it yet
        later = worker()
        eventlog.publish_event(redis_server, early)  # arrives late: already sent from SQLite, dropped
        final = worker()
        assert seqs(reader.frames_until_id(final["seq"])) == [early["seq"], later["seq"], final["seq"]]
    finally:
        reader.close()


def test_heartbeat_comment_when_idle(web):
    reader = SSEReader(web[0])
    try:
        reader.frame()
        started = time.monotonic()
        assert reader.frame()["comments"] == ["keep-alive"]
        assert time.monotonic() - started < 3  # OTWEB_SSE_HEARTBEAT_S=1 reached the app, not 15 s
    finally:
        reader.close()


def test_heartbeat_setting_from_the_environment_is_an_int(monkeypatch, workspace, config_dir, redis_url):
    monkeypatch.setenv("OTWEB_SSE_HEARTBEAT_S", "1")
    app = create_app({"WORKSPACE": workspace, "CONFIG_DIR": config_dir, "REDIS_URL": redis_url,
                      "CONTROL_LOOP": False})  # in-process: it must not run a dispatcher on the session's Redis
    assert app.config["SSE_HEARTBEAT_S"] == 1 and isinstance(app.config["SSE_HEARTBEAT_S"], int)


def test_twenty_clients_share_one_subscription_and_leave_no_trace(web, worker, redis_server):
    base_url = web[0]
    assert wait_for(lambda: stats(base_url)["clients"] == 0)  # the earlier tests' clients are gone
    readers = [SSEReader(base_url, "/events" if i % 2 else "/api/events") for i in range(20)]
    try:
        for reader in readers:
            reader.frame()
        assert stats(base_url)["clients"] == 20
        assert redis_server.pubsub_numsub(EVENTS_CHANNEL)[0][1] == 1
        event = worker()
        for reader in readers:
            assert seqs(reader.frames_until_id(event["seq"])) == [event["seq"]]
    finally:
        for reader in readers:
            reader.close()
    # a gone client is found on the next write (a heartbeat at the latest) and unregistered
    assert wait_for(lambda: stats(base_url)["clients"] == 0), stats(base_url)
    assert redis_server.pubsub_numsub(EVENTS_CHANNEL)[0][1] == 1


def test_redis_connection_lost_then_missed_events_come_from_sqlite(web, worker, redis_server):
    reader = SSEReader(web[0])
    try:
        reader.frame()
        assert redis_server.client_kill_filter(_type="pubsub") >= 1
        during = [worker() for _ in range(5)]  # published while the broker may be unsubscribed
        assert wait_for(lambda: redis_server.pubsub_numsub(EVENTS_CHANNEL)[0][1] == 1)
        after = worker()
        expected = [e["seq"] for e in during] + [after["seq"]]
        assert seqs(reader.frames_until_id(after["seq"])) == expected
    finally:
        reader.close()


def test_bad_stream_position_is_a_400(web):
    response = requests.get(web[0] + "/api/events?after=abc", timeout=5)
    assert response.status_code == 400 and response.json()["error"] == "invalid stream position"
    response = requests.get(web[0] + "/api/events", headers={"Last-Event-ID": "-3"}, timeout=5)
    assert response.status_code == 400


@pytest.mark.parametrize("field", ["type", "id"])
@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\r\nevent: forged", "a\0b"])
def test_line_breaks_in_event_or_id_are_refused(field, bad):
    with pytest.raises(ValueError):
        sse.Message("data", **{field: bad})
    message = sse.Message("data")
    with pytest.raises(ValueError):
        setattr(message, field, bad)


def test_publish_refuses_a_bad_event_name(redis_server):
    with pytest.raises(ValueError):
        eventlog.publish_event(redis_server, {"seq": 1, "run_id": 1, "event": "log\n\ndata: x", "data": {}})
    with pytest.raises(ValueError):
        eventlog.publish_event(redis_server, {"seq": None, "run_id": 1, "event": "log", "data": {}})


def test_message_framing_keeps_id_zero_and_every_data_line():
    assert str(sse.Message("x", type="log", id=0)) == "event: log\ndata: x\nid: 0\n\n"
    assert sse.Message("x", id=0).to_dict() == {"data": "x", "id": 0}
    assert str(sse.Message("a\r\nb\rc\n", id=7)) == "data: a\ndata: b\ndata: c\ndata: \nid: 7\n\n"
    # only CR/LF end an SSE line: other Unicode breaks stay in the data; a leading space survives
    assert str(sse.Message(" a\u2028b\x0bc")) == "data:  a\u2028b\x0bc\n\n"
    assert str(sse.Message("")) == "data: \n\n"  # an empty event is still dispatched
    assert str(sse.Message(None, id=3)) == "id: 3\n\n"
    assert str(sse.Message({"a": 1})) == 'data: {"a":1}\n\n'


def test_html_is_rendered_once_per_event_for_all_clients(app, redis_server, monkeypatch):
    broker = app.extensions["sse_broker"]
    real, calls = broker.render_fragments, []
    assert real is fragments.render_event_fragments  # the factory hands the broker its renderer
    monkeypatch.setattr(broker, "render_fragments", lambda e, replayed=False: calls.append(e["seq"]) or real(e, replayed))
    conn = store.connect(app.config["DATABASE"])
    streams = []
    try:
        with app.test_request_context("/events"):
            streams = [sse.stream(broker, lambda live: events_view.html_messages(broker, live), heartbeat_s=30,
                                  key=("html", "")) for _ in range(5)]
            assert all(next(s).startswith(b"retry:") for s in streams)
            event = store.append_event(conn, store.create_run(conn, "t", {}), make_event("log", text="hi"))
            eventlog.publish_event(redis_server, event)
            texts = [next(s) for s in streams]
        assert calls == [event["seq"]]
        assert (broker.renders, broker.framings) == (1, 1)  # not once per client
        assert len({id(t) for t in texts}) == 1  # one frame's bytes, shared
        assert texts[0].startswith(b"event: log\n") and texts[0].endswith(f"id: {event['seq']}\n\n".encode())
    finally:
        for s in streams:
            s.close()
        broker.stop()
        conn.close()
    assert broker.client_count == 0


def test_a_client_that_falls_behind_is_dropped(app, redis_server):
    broker = sse.EventBroker(app, queue_size=2)
    conn = store.connect(app.config["DATABASE"])
    try:
        with app.test_request_context("/api/events"):
            client = sse.stream(broker, events_view.json_messages, heartbeat_s=30)
            next(client)
            run_id = store.create_run(conn, "t", {})
            for _ in range(5):
                eventlog.publish_event(redis_server, store.append_event(conn, run_id, make_event("log", text="x")))
            assert wait_for(lambda: broker.client_count == 0)
            # its response ends; the browser reconnects with Last-Event-ID and replays from SQLite
            assert list(client) == []
    finally:
        broker.stop()
        conn.close()


def test_the_open_file_limit_is_raised_for_many_viewers():
    """At the usual soft limit of 1,024 open files a web process stops near 1,000 streams."""
    code = ("import resource\n"
            "from webapp.web.sse import raise_open_file_limit\n"
            "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
            "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
            "wanted = 65536 if hard == resource.RLIM_INFINITY else min(65536, hard)\n"
            "print(raise_open_file_limit() == wanted == resource.getrlimit(resource.RLIMIT_NOFILE)[0])")
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=str(Path(__file__).resolve().parents[2]))
    assert out.stdout.strip() == "True", out.stderr


def test_live_progress_carries_the_chart_only_when_it_changed(app, monkeypatch):
    drawn = iter(["<svg>1</svg>", "<svg>1</svg>", "<svg>2</svg>", "<svg>2</svg>"])
    monkeypatch.setattr(fragments, "live_chart", lambda run_id: next(drawn))
    event = {"event": "progress", "run_id": 7, "seq": 1,
             "data": {"global_step": 1, "max_step": 10, "loss": 0.5}}
    with app.test_request_context("/events"):
        kinds = [[kind for kind, _ in fragments.render_event_fragments(event)] for _ in range(3)]
        replayed = [kind for kind, _ in fragments.render_event_fragments(event, replayed=True)]
    assert kinds == [["progress", "chart"], ["progress"], ["progress", "chart"]]
    assert replayed == ["progress", "chart"]  # a client catching up gets it whatever was sent live

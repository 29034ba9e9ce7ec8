"""The fleet's parts on a real Redis and SQLite, without a trainer: the recorder records each entry
once (read twice, by two recorders, or after a restart), writes files only into the run's folder
and only whole; the worker's sink spools while Redis is away and replays in order; worker tokens."""
from __future__ import annotations

import os

import redis

from support.ports import free_port
from webapp import store
from webapp.eventlog import ENTRY_EVENT, ENTRY_FILE, decode_entry, encode_entry, file_chunks, sha256_of
from webapp.protocol import Event, make_event
from webapp.settings import NUDGE_STREAM, WORKERS_KEY, worker_stream
from webapp.control.recorder import Recorder
from webapp.worker.stream_sink import StreamSink


def _run(app, worker="w1"):
    conn = store.connect(app.config["DATABASE"])
    run_id = store.create_run(conn, "demo", {"a": 1})
    assert store.assignments.assign(conn, run_id, worker, f"as{run_id}")
    return conn, run_id, f"as{run_id}"


STREAM = worker_stream("w1")  # the stream of the worker the tests' runs are assigned to


def _recorder(app, conn, client, name="r1"):
    client.sadd(WORKERS_KEY, "w1")  # in the fleet: the recorder reads its stream
    return Recorder(conn, client, app.config["SETTINGS"].run_dir, name)


def test_an_entry_read_twice_is_recorded_once(app, redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    conn, run_id, source = _run(app)
    entries = [encode_entry(ENTRY_EVENT, run_id, source, n, event="log", data={"text": f"line {n}"}, time=1.0)
               for n in range(1, 51)]
    for fields in entries + entries[10:30]:        # a worker that sent a spooled batch again
        client.xadd(STREAM, fields)
    first, second = _recorder(app, conn, client, "r1"), _recorder(app, store.connect(app.config["DATABASE"]), client, "r2")
    while first.step(block_ms=10) + second.step(block_ms=10):
        pass
    texts = [e["data"]["text"] for e in store.events_since(conn, 0, run_id) if e["event"] == "log"]
    assert texts == [f"line {n}" for n in range(1, 51)]
    assert first.duplicates + second.duplicates == 20
    assert client.xlen(STREAM) == 0             # trimmed, and only past what is recorded


def test_pending_entries_of_a_dead_recorder_are_claimed(app, redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    conn, run_id, source = _run(app)
    client.xgroup_create(STREAM, "recorder", id="0", mkstream=True)
    client.xadd(STREAM, encode_entry(ENTRY_EVENT, run_id, source, 1, event="status", data={"text": "x"}))
    entry_id = client.xreadgroup("recorder", "dead", {STREAM: ">"}, count=10)[0][1][0][0]  # never acked
    recorder = _recorder(app, conn, client)
    recorder.claim_every_s = 0  # look for pending entries at every step
    assert recorder.step(block_ms=10) == 0            # not idle long enough yet: not taken from it
    client.execute_command("XCLAIM", STREAM, "recorder", "dead", 0, entry_id, "IDLE", 10_000, "JUSTID")
    recorder.step(block_ms=10)
    assert store.get_run(conn, run_id)["status_text"] == "x"


def test_files_are_placed_whole_and_only_in_the_run_folder(app, redis_url, tmp_path):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    conn, run_id, source = _run(app)
    data = os.urandom(700_000)                         # three chunks
    (tmp_path / "out.bin").write_bytes(data)
    chunks = list(file_chunks(tmp_path / "out.bin", "models/out.bin"))
    assert len(chunks) == 3 and chunks[-1]["last"]
    bad = dict(chunks[1], data=chunks[0]["data"])     # a corrupted chunk
    n = 0
    for body in chunks[:1] + [bad] + chunks[2:] + chunks + [dict(chunks[0], path="../escape.bin")]:
        n += 1
        client.xadd(STREAM, encode_entry(ENTRY_FILE, run_id, source, n, **body))
    recorder = _recorder(app, conn, client)
    while recorder.step(block_ms=10):
        pass
    folder = app.config["SETTINGS"].run_dir(run_id)
    assert (folder / "models" / "out.bin").read_bytes() == data
    assert not (folder.parent / "escape.bin").exists()
    warnings = [e["data"]["text"] for e in store.events_since(conn, 0, run_id) if e["event"] == "log"]
    assert any("did not match its sha256" in w for w in warnings)
    assert any("outside the run folder" in w for w in warnings)


def test_unknown_assignments_cannot_write(app, redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    conn, run_id, _ = _run(app)
    client.xadd(STREAM, encode_entry(ENTRY_EVENT, run_id, "forged", 1, event="status", data={"text": "pwned"}))
    recorder = _recorder(app, conn, client)
    recorder.step(block_ms=10)
    assert store.get_run(conn, run_id)["status_text"] != "pwned"


def test_the_sink_spools_while_redis_is_away_and_replays_in_order(app, redis_url, tmp_path):
    conn, run_id, source = _run(app)
    away = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2, decode_responses=True)
    sink = StreamSink(away, tmp_path / "spool", STREAM)
    sink.bind(run_id, source, tmp_path / "run")
    for n in range(30):
        sink.emit(run_id, make_event(Event.STATUS, text=f"s{n}"))
    assert not sink.connected and len(sink.spool) == 30
    # the worker dies here and starts again: the spool is on disk
    sink = StreamSink(redis.Redis.from_url(redis_url, decode_responses=True), tmp_path / "spool", STREAM)
    sink.bind(run_id, source, tmp_path / "run")
    assert len(sink.spool) == 30 and sink.drain() == 0 and not (tmp_path / "spool" / "entries.jsonl").exists()
    recorder = _recorder(app, conn, redis.Redis.from_url(redis_url, decode_responses=True))
    while recorder.step(block_ms=10):
        pass
    assert [e["data"]["text"] for e in store.events_since(conn, 0, run_id)] == [f"s{n}" for n in range(30)]


def test_worker_tokens_join_the_fleet_and_open_nothing_else(app, client):
    from click.testing import CliRunner
    from webapp.cli import main
    runner = CliRunner()
    result = runner.invoke(main, ["token", "create", "--worker", "gpu-7", "--workspace", str(app.config["WORKSPACE"])])
    assert result.exit_code == 0, result.output
    token = next(line for line in result.output.splitlines() if line.startswith("otw_"))
    assert "--name gpu-7 --token" in result.output and "otweb-worker-gpu-7" in result.output  # what to give it
    conn = store.accounts.connect(app.config["DATABASE"])
    found = store.accounts.find_token(conn, token)
    assert found["role"] == "worker" and found["name"] == "gpu-7"
    assert not store.accounts.has_principals(conn)     # a worker token does not switch accounts on
    assert runner.invoke(main, ["token", "create"]).exit_code != 0
    answer = client.get("/api/workers")
    assert answer.status_code == 200 and answer.get_json()["workers"] == []
    assert client.post("/api/workers/nobody/drain", json={}).status_code == 404


def test_a_run_marked_interrupted_by_a_lapse_is_corrected_when_its_worker_is_heard_again(app, redis_url):
    """The record never lies for long: the dispatcher marked the run interrupted (no heartbeat),
    then its worker's events arrive from the same assignment: the run is running again and the
    timeline says what happened."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    conn, run_id, source = _run(app)
    store.append_event(conn, run_id, make_event(Event.RUN, state="running"))
    store.append_event(conn, run_id, make_event(Event.PROGRESS, global_step=336, max_step=2000))
    store.append_event(conn, run_id, make_event(
        Event.RUN, state="interrupted", reason="worker w1 stopped sending heartbeats (16 s): its process died",
        reason_code="worker_lapsed"))
    client.xadd(STREAM, encode_entry(ENTRY_EVENT, run_id, source, 1, event="progress",
                                           data={"global_step": 1155, "max_step": 2000}, time=2.0))
    recorder = _recorder(app, conn, client)
    while recorder.step(block_ms=10):
        pass
    assert store.get_run(conn, run_id)["state"] == "running"
    texts = [e["data"].get("text") for e in store.timeline(conn, run_id)]
    assert "lost contact with worker w1 at step 336; back at step 1155: the run went on meanwhile" in texts
    # a run interrupted for another reason (its worker's own report) stays interrupted
    store.append_event(conn, run_id, make_event(Event.RUN, state="interrupted", reason="worker w1 stopped"))
    client.xadd(STREAM, encode_entry(ENTRY_EVENT, run_id, source, 2, event="log", data={"text": "x"}))
    while recorder.step(block_ms=10):
        pass
    assert store.get_run(conn, run_id)["state"] == "interrupted"


def test_a_file_too_large_to_upload_is_listed_with_its_host_and_path(app, client, redis_url, tmp_path):
    """OTWEB_UPLOAD_MAX_MB: a larger output stays on the worker; the run page lists where, instead
    of a download, and stops listing it once the worker says it was pruned there."""
    import socket
    from webapp.worker.uploads import FolderSync
    conn, run_id, source = _run(app)
    sink = StreamSink(redis.Redis.from_url(redis_url, decode_responses=True), tmp_path / "spool", STREAM)
    folder = tmp_path / "run"
    sink.bind(run_id, source, folder)
    (folder / "models").mkdir(parents=True)
    (folder / "models" / "big.safetensors").write_bytes(b"x" * 5000)
    (folder / "models" / "small.json").write_bytes(b"{}")
    uploads = FolderSync(sink, run_id, folder, max_bytes=1000)
    uploads.sync()
    recorder = _recorder(app, conn, redis.Redis.from_url(redis_url, decode_responses=True))
    while recorder.step(block_ms=10):
        pass
    assert (app.config["SETTINGS"].run_dir(run_id) / "models" / "small.json").exists()
    assert not (app.config["SETTINGS"].run_dir(run_id) / "models" / "big.safetensors").exists()
    files = client.get(f"/runs/{run_id}/files").text
    assert 'data-testid="kept-file"' in files and "models/big.safetensors" in files
    assert socket.gethostname() in files and str(folder / "models" / "big.safetensors") in files
    (folder / "models" / "big.safetensors").unlink()  # a rolling backup pruned on the worker
    uploads.sync()
    while recorder.step(block_ms=10):
        pass
    assert 'data-testid="kept-file"' not in client.get(f"/runs/{run_id}/files").text


def _backup(folder, name: str, step: int, weights: bytes, **extra: bytes) -> None:
    import json
    backup = folder / "backups" / name
    backup.mkdir(parents=True)
    (backup / "trained.safetensors").write_bytes(weights)
    (backup / "training_state.json").write_text("{}")
    for file_name, data in extra.items():
        (backup / file_name.replace("_", ".")).write_bytes(data)
    (backup / "progress.json").write_text(json.dumps({"global_step": step}))


def _upload(app, conn, client, run_id: int, source: str, folder) -> None:
    """What a worker's folder holds, uploaded as a worker does: chunks through the stream, recorded."""
    from webapp.worker.uploads import FolderSync
    worker = store.get_run(conn, run_id)["worker"]  # its own stream: the only one whose entries count
    sink = StreamSink(client, folder.parent / f"spool-{run_id}", worker_stream(worker))
    sink.bind(run_id, source, folder)
    FolderSync(sink, run_id, folder, max_bytes=10**9).sync()
    client.sadd(WORKERS_KEY, worker)
    recorder = _recorder(app, conn, client)
    while recorder.step(block_ms=10):
        pass


def _resume_with_other_worker(conn, client, settings, run_id: int):
    import json
    from webapp.settings import assign_key, heartbeat_key
    from webapp.control.dispatch import Dispatcher
    assert store.requeue_for_resume(conn, run_id)
    conn.commit()
    client.sadd(WORKERS_KEY, "other")
    client.set(heartbeat_key("other"), json.dumps({"devices": [0]}), ex=30)
    try:
        Dispatcher(conn, client, run_dir=settings.run_dir).step()
        raw = client.lpop(assign_key("other"))
        return json.loads(raw) if raw else None
    finally:
        client.srem(WORKERS_KEY, "other")
        client.delete(heartbeat_key("other"), assign_key("other"))


def test_a_resume_goes_to_another_worker_with_the_uploaded_backup(app, redis_url, tmp_path):
    """The run's worker is gone, its newest backup was uploaded: another worker takes the resume and
    gets that backup, whole and checked, in its own run folder; kept on the gone worker's host, the
    backup cannot travel and the resume waits for that worker."""
    from webapp.worker.backup_receive import receive_backup
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    settings = app.config["SETTINGS"]
    conn, run_id, source = _run(app, worker="gone")
    worker_folder = tmp_path / "gone-host" / "run"
    _backup(worker_folder, "2026-01-01_00-00-00-step6", 6, b"old" * 1000)
    weights = os.urandom(600_000)  # three chunks
    _backup(worker_folder, "2026-01-01_00-01-00-step12", 12, weights)
    _upload(app, conn, client, run_id, source, worker_folder)
    payload = _resume_with_other_worker(conn, client, settings, run_id)
    assert payload["resume"] and payload["backup"]["name"] == "2026-01-01_00-01-00-step12"
    here = tmp_path / "other-host" / "run"
    placed = receive_backup(client, payload["backup"], here)
    assert sorted(placed) == [f"backups/2026-01-01_00-01-00-step12/{name}" for name in
                              ("progress.json", "trained.safetensors", "training_state.json")]
    assert placed[-1].endswith("progress.json")  # the completion mark last
    assert (here / sorted(placed)[1]).read_bytes() == weights and not client.exists(payload["backup"]["key"])
    assert "from backup 2026-01-01_00-01-00-step12" in store.get_run(conn, run_id)["status_text"]

    # the same, but the newest backup's weights were too large to upload: it waits for its worker
    conn2, second, _ = _run(app, worker="gone")
    store.append_event(conn2, second, make_event(Event.LOG, text="kept", kept={
        "name": "backups/b/trained.safetensors", "host": "gone-host", "path": "/x", "size": 1}))
    _backup(settings.run_dir(second), "b", 6, b"w")
    assert _resume_with_other_worker(conn2, client, settings, second) is None
    assert "for worker gone" in store.get_run(conn2, second)["status_text"]


def test_a_planted_pickle_backup_never_leaves_its_host(app, client, redis_url, tmp_path):
    """Issue 26 §1: a hostile worker uploads a backup whose optimizer.pt is a pickle that would run
    code where it is loaded, and goes silent; the resume is not sent to another worker (the run
    waits for the host that wrote it, and says why), and nothing on the web loads it."""
    import pickle
    redis_client = redis.Redis.from_url(redis_url, decode_responses=True)
    settings = app.config["SETTINGS"]
    conn, run_id, source = _run(app, worker="hostile")
    marker = tmp_path / "pwned"
    planted = pickle.dumps(_Planted(marker))
    worker_folder = tmp_path / "hostile-host" / "run"
    _backup(worker_folder, "2026-01-01_00-01-00-step12", 12, b"w" * 100, optimizer_pt=planted)
    _upload(app, conn, redis_client, run_id, source, worker_folder)
    backup = settings.run_dir(run_id) / "backups" / "2026-01-01_00-01-00-step12"
    assert (backup / "optimizer.pt").read_bytes() == planted  # it came up, as any upload does
    assert _resume_with_other_worker(conn, redis_client, settings, run_id) is None
    status = store.get_run(conn, run_id)["status_text"]
    assert "for worker hostile" in status and "holds optimizer.pt" in status and "only on the host" in status
    assert "loaded only on the host that wrote it" in client.get(f"/runs/{run_id}").text  # the run page says so
    assert not marker.exists()


def test_a_carried_backup_altered_after_upload_is_refused_on_arrival(app, redis_url, tmp_path):
    """Issue 26 §1: the sums recorded at upload go with the assignment; bytes changed on the web's
    disk since (same size) are refused by the receiving worker before anything is read, and nothing
    of the backup is left there."""
    import pytest
    from webapp.worker.backup_receive import CarryError, receive_backup
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    settings = app.config["SETTINGS"]
    conn, run_id, source = _run(app, worker="gone")
    worker_folder = tmp_path / "gone-host" / "run"
    _backup(worker_folder, "2026-01-01_00-01-00-step12", 12, os.urandom(300_000))
    _upload(app, conn, client, run_id, source, worker_folder)
    recorded = store.uploads.of_run(conn, run_id)
    path = "backups/2026-01-01_00-01-00-step12/trained.safetensors"
    assert recorded[path]["sha256"] == sha256_of(worker_folder / path)
    on_web = settings.run_dir(run_id) / path
    on_web.write_bytes(os.urandom(300_000))  # altered after upload
    payload = _resume_with_other_worker(conn, client, settings, run_id)
    here = tmp_path / "other-host" / "run"
    with pytest.raises(CarryError, match="not the one the web recorded"):
        receive_backup(client, payload["backup"], here)
    assert not (here / "backups" / "2026-01-01_00-01-00-step12").exists()


class _Planted:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_one_batch_records_as_one_by_one_would(app, redis_url):
    """The recorder's batch (one transaction, progress folded once, events published together)
    leaves the record and the pub/sub stream as recording each entry alone would: every event
    once and in order, a key twice in one batch once, a save versioned with the progress before it."""
    from webapp.eventlog import decode_event, split_events
    from webapp.settings import EVENTS_CHANNEL
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    conn, run_id, source = _run(app)
    listener = client.pubsub()
    listener.subscribe(EVENTS_CHANNEL)
    bodies = [dict(event="progress", data={"global_step": n, "max_step": 600, "loss": 1.0 / n}, time=float(n))
              for n in range(1, 301)]
    bodies.insert(100, dict(event="log", data={"text": "saved: models/step100.safetensors"}, time=100.5))
    numbered = [encode_entry(ENTRY_EVENT, run_id, source, n, **body) for n, body in enumerate(bodies, 1)]
    for fields in numbered[:150] + numbered[140:160] + numbered[150:]:  # 20 sent twice, inside one read
        client.xadd(STREAM, fields)
    recorder = _recorder(app, conn, client)
    while recorder.step(block_ms=10):
        pass
    recorded = store.events_since(conn, 0, run_id)
    assert [(e["event"], e["data"], e["time"]) for e in recorded] == [(b["event"], b["data"], b["time"])
                                                                      for b in bodies]
    assert recorder.recorded == 301 and recorder.duplicates == 20
    assert store.get_run(conn, run_id)["progress"]["global_step"] == 300
    (version,) = store.model_versions.list_versions(conn, {"run": run_id})
    assert version["global_step"] == 100 and version["loss"] == 1.0 / 100
    published = []
    while (message := listener.get_message(timeout=0.5)) is not None:
        if message["type"] == "message":
            published += [decode_event(wire) for wire in split_events(message["data"])]
    assert published == recorded


def test_entries_sent_together_keep_their_order_and_spool_whole(app, redis_url, tmp_path):
    conn, run_id, source = _run(app)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    away = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2, decode_responses=True)
    for sink in (StreamSink(client, tmp_path / "live", STREAM), StreamSink(away, tmp_path / "away", STREAM)):
        sink.bind(run_id, source, tmp_path / "run")
        with sink.together():
            sink.metrics(run_id, [(1, 0.5, 1e-3, 1.0)])
            sink.emit(run_id, make_event(Event.PROGRESS, global_step=1))
            assert sink.sent == 0 and not len(sink.spool)  # nothing out before the block ends
        sink.emit(run_id, make_event(Event.STATUS, text="after"))
    sent = [decode_entry(fields) for _, fields in client.xrange(STREAM)]
    spooled = list(StreamSink(away, tmp_path / "away", STREAM).spool.entries)
    assert [(e["k"], e["n"]) for e in sent] == [("metrics", 1), ("event", 2), ("event", 3)]
    assert [decode_entry(fields)["n"] for fields in spooled] == [1, 2, 3]


def test_a_queue_change_nudges_the_recorder_and_nothing_is_recorded_for_it(app, client, redis_url):
    redis_client = redis.Redis.from_url(redis_url, decode_responses=True)
    conn, run_id, source = _run(app)
    recorder = _recorder(app, conn, redis_client)
    recorder.step(block_ms=10)  # the group exists before the nudge comes
    assert client.post("/api/queue/pause", json={"paused": False}).status_code == 200  # nudges the dispatcher
    redis_client.xadd(STREAM, encode_entry(ENTRY_EVENT, run_id, source, 1, event="status", data={"text": "x"}))
    before = len(store.events_since(conn, 0, run_id))
    assert recorder.step(block_ms=100) == 2 and recorder.nudged  # the control loop dispatches at once
    assert len(store.events_since(conn, 0, run_id)) == before + 1 and recorder.recorded == 1
    assert redis_client.xlen(STREAM) == redis_client.xlen(NUDGE_STREAM) == 0  # the nudge is read once
    recorder.step(block_ms=10)
    assert not recorder.nudged

"""The worker's journal of files it still owes the web (issue 33, "nothing lost"), on a real Redis:
written atomically while a run's files are uploaded, kept when its last files could not be sent
by its end, resumed by the next worker process (the rest only, under a source of its own), removed
once sent; dropped when too old or when its run folder is gone. The run page says what is still owed."""
from __future__ import annotations

import json
import logging
import threading
import time

import redis

from webapp import store
from webapp.eventlog import ENTRY_FILE, decode_entry, sha256_of
from webapp.protocol import Event, make_event
from webapp.settings import heartbeat_key, worker_stream
from webapp.worker.owed import Owed, OwedJournal
from webapp.worker.owing import Owing
from webapp.worker.stream_sink import FILE_BACKLOG, StreamSink
from webapp.worker.uploads import FolderSync

STREAM = worker_stream("owed-test")


def test_an_entry_is_written_whole_and_a_write_cut_short_leaves_the_last_whole_one(tmp_path):
    journal = OwedJournal(tmp_path / "owed", max_age_days=7)
    (tmp_path / "run").mkdir()
    owed = Owed(3, "as3", str(tmp_path / "run"), sent={"models/a.bin": [10, 123]}, log_offset=40)
    journal.write(owed)
    owed.sent["models/b.bin"] = [20, 456]
    # a worker killed while writing the next version leaves its temporary file, never a half entry
    (tmp_path / "owed" / f".{owed.name}.tmp").write_text('{"run_id": 3, "sen')
    [read] = journal.pending()
    assert (read.run_id, read.assignment, read.sent, read.log_offset) == (3, "as3", {"models/a.bin": [10, 123]}, 40)
    journal.write(owed)
    assert journal.pending()[0].sent == owed.sent
    assert [p.name for p in (tmp_path / "owed").iterdir()] == ["3-as3.json"]
    journal.remove(owed)
    assert journal.pending() == []


def test_old_unreadable_and_folderless_entries_are_dropped_with_a_log_line(tmp_path, caplog):
    journal = OwedJournal(tmp_path / "owed", max_age_days=2)
    (tmp_path / "kept").mkdir()
    (tmp_path / "old").mkdir()
    now = time.time()
    journal.write(Owed(1, "a1", str(tmp_path / "kept"), since=now - 86400))
    journal.write(Owed(2, "a2", str(tmp_path / "old"), since=now - 3 * 86400))
    journal.write(Owed(3, "a3", str(tmp_path / "gone")))
    (tmp_path / "owed" / "4-a4.json").write_text("{not json")
    with caplog.at_level(logging.WARNING):
        assert [owed.run_id for owed in journal.pending(now)] == [1]
    said = caplog.text
    assert "2-a2.json" in said and "older than 2 days" in said
    assert "3-a3.json" in said and "is gone" in said
    assert "4-a4.json" in said and "cannot be read" in said
    assert sorted(p.name for p in (tmp_path / "owed").iterdir()) == ["1-a1.json"]


def _file_entries(client, name: str) -> list[dict]:
    entries = [decode_entry(fields) for _, fields in client.xrange(STREAM) if "x" not in fields]
    return [entry for entry in entries if entry["k"] == ENTRY_FILE and entry.get("path") == name]


def test_a_run_whose_last_files_were_not_sent_when_its_worker_exited_sends_the_rest_at_the_next_start(
        redis_url, redis_server, tmp_path):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.delete(STREAM)
    journal = OwedJournal(tmp_path / "owed", max_age_days=7)
    folder = tmp_path / "run"
    (folder / "models").mkdir(parents=True)
    (folder / "models" / "early.bin").write_bytes(b"e" * 500)
    sink = StreamSink(client, tmp_path / "spool", STREAM)
    sink.bind(7, "as7", folder)
    uploads = FolderSync(sink, 7, folder, max_bytes=10**9, finish_wait_s=0.3, journal=journal, assignment="as7")
    uploads.start()
    uploads.sync()  # sent while the run trains
    assert journal.pending()[0].sent.keys() == {"models/early.bin"}
    (folder / "models" / "final.bin").write_bytes(b"f" * 3000)
    filler = [client.xadd(STREAM, {"x": "1"}) for _ in range(FILE_BACKLOG)]  # no room: nobody records
    finishing = threading.Thread(target=uploads.finish)
    finishing.start()
    finishing.join(timeout=15)
    assert uploads.following() and not _file_entries(client, "models/final.bin")
    uploads.cancelled.set()  # the worker exits (its follower dies with it): the journal stays
    uploads.follower.join(timeout=5)
    [owed] = journal.pending()
    assert owed.run_id == 7 and "models/final.bin" not in owed.sent
    client.xdel(STREAM, *filler)  # room again
    # the next worker process: a new sink, the journal resumed
    owing = Owing(StreamSink(client, tmp_path / "spool", STREAM), journal, 10**9)
    owing.resume()
    deadline = time.monotonic() + 15
    while journal.pending() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert journal.pending() == [], "the journal entry outlived the files it owed"
    chunks = _file_entries(client, "models/final.bin")
    assert chunks and chunks[-1]["last"] and chunks[0]["src"].startswith("as7:owed-")
    assert chunks[0]["sha256"] == sha256_of(folder / "models" / "final.bin")
    assert len(_file_entries(client, "models/early.bin")) == 1, "a file sent before the exit was sent again"


def test_a_run_started_again_here_takes_over_what_was_still_owed(redis_url, redis_server, tmp_path):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    journal = OwedJournal(tmp_path / "owed", max_age_days=7)
    (tmp_path / "run").mkdir()
    journal.write(Owed(9, "as8", str(tmp_path / "run"), since=time.time() - 60))  # its earlier assignment
    journal.write(Owed(9, "as9", str(tmp_path / "run")))
    filler = [client.xadd(STREAM, {"x": "1"}) for _ in range(FILE_BACKLOG)]
    try:
        (tmp_path / "run" / "out.bin").write_bytes(b"o" * 100)
        owing = Owing(StreamSink(client, tmp_path / "spool", STREAM), journal, 10**9)
        owing.resume()
        assert [p.name for p in (tmp_path / "owed").iterdir()] == ["9-as9.json"]  # the newest sends the folder
        assert owing.backlog() == [{"run_id": 9, "files": 1, "bytes": 100}]
        owing.settle(9)  # resumed here: its new upload sends the folder
        assert journal.pending() == [] and owing.backlog() == []
    finally:
        client.xdel(STREAM, *filler)


def test_the_run_page_says_what_its_worker_still_owes(app, client, redis_url):
    conn = store.connect(app.config["DATABASE"])
    run_id = store.create_run(conn, "demo", {"a": 1})
    assert store.assignments.assign(conn, run_id, "gpu-1", f"as{run_id}")
    store.append_event(conn, run_id, make_event(Event.RUN, state="running"))
    store.append_event(conn, run_id, make_event(Event.RUN, state="completed"))
    client_redis = redis.Redis.from_url(redis_url, decode_responses=True)
    beat = {"name": "gpu-1", "run_id": None, "owed": [{"run_id": run_id, "files": 2, "bytes": 210_000_000}]}
    client_redis.set(heartbeat_key("gpu-1"), json.dumps(beat), ex=30)
    said = "2 files (210 MB) still on worker gpu-1, being sent"
    assert client.get(f"/api/runs/{run_id}").json["run"]["files_owed"] == said
    assert said in client.get(f"/runs/{run_id}").text
    client_redis.set(heartbeat_key("gpu-1"), json.dumps({**beat, "owed": []}), ex=30)  # all sent
    assert client.get(f"/api/runs/{run_id}").json["run"]["files_owed"] is None
    assert "still on worker" not in client.get(f"/runs/{run_id}").text

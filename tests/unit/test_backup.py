"""`otweb backup` / `otweb restore` (store.backup) without servers: a copy while the record is being
written is consistent, the manifest holds every run file's size and sha256, a restore goes only into
an empty workspace and refuses a backup that does not match its manifest, putting nothing in place."""
from __future__ import annotations

import hashlib
import json
import threading

import pytest
from click.testing import CliRunner

from webapp import store
from webapp.cli import main
from webapp.store import backup as backups


@pytest.fixture
def recorded(tmp_path):
    """A workspace with two runs, their events and loss rows, and files in their folders."""
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    conn = store.connect(workspace / "otweb.sqlite3")
    store.init_schema(conn)
    for n in range(2):
        run_id = store.create_run(conn, f"run{n}", {})
        store.append_event(conn, run_id, {"event": "run", "data": {"state": "running"}})
        store.append_metrics(conn, run_id, [(step, 0.1, 1e-3, 1000.0 + step) for step in range(50)])
        folder = workspace / "runs" / str(run_id)
        (folder / "samples").mkdir(parents=True)
        (folder / "samples" / "0.png").write_bytes(bytes(range(256)) * (n + 1))
        (folder / "trainer.log").write_text(f"log of {run_id}\n")
    conn.close()
    return workspace


def counts(path) -> dict:
    conn = store.connect(path)
    try:
        return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("runs", "events", "metrics")}
    finally:
        conn.close()


def cli(*args):
    return CliRunner().invoke(main, list(map(str, args)), catch_exceptions=False)


def test_back_up_and_restore_through_the_cli(recorded, tmp_path):
    answer = cli("backup", tmp_path / "b", "--workspace", recorded)
    assert answer.exit_code == 0, answer.output
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert {f["path"] for f in manifest["files"]} == {"runs/1/samples/0.png", "runs/1/trainer.log",
                                                     "runs/2/samples/0.png", "runs/2/trainer.log"}
    for entry in manifest["files"]:
        data = (recorded / entry["path"]).read_bytes()
        assert entry["size"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()
    answer = cli("restore", tmp_path / "b", "--workspace", tmp_path / "restored")
    assert answer.exit_code == 0, answer.output
    assert counts(tmp_path / "restored" / "otweb.sqlite3") == counts(recorded / "otweb.sqlite3")
    for entry in manifest["files"]:
        assert (tmp_path / "restored" / entry["path"]).read_bytes() == (recorded / entry["path"]).read_bytes()
    assert sorted(p.name for p in (tmp_path / "restored").iterdir()) == ["otweb.sqlite3", "runs"]


def test_refusals_leave_everything_as_it_was(recorded, tmp_path):
    assert cli("backup", tmp_path / "b", "--workspace", recorded).exit_code == 0
    again = cli("backup", tmp_path / "b", "--workspace", recorded)  # over a backup
    assert again.exit_code != 0 and "not empty" in again.output
    answer = cli("restore", tmp_path / "b", "--workspace", recorded)  # over a workspace in use
    assert answer.exit_code != 0 and "not empty" in answer.output
    assert counts(recorded / "otweb.sqlite3")["runs"] == 2
    (tmp_path / "b" / "runs" / "2" / "trainer.log").write_text("changed\n")
    answer = cli("restore", tmp_path / "b", "--workspace", tmp_path / "restored")
    assert answer.exit_code != 0 and "does not match the manifest" in answer.output
    assert list((tmp_path / "restored").iterdir()) == []  # nothing put in place
    (tmp_path / "b" / "manifest.json").unlink()
    answer = cli("restore", tmp_path / "b", "--workspace", tmp_path / "restored")
    assert answer.exit_code != 0 and "not a complete backup" in answer.output


def test_a_backup_taken_while_the_record_is_written_is_one_moment_of_it(recorded, tmp_path):
    stop = threading.Event()

    def write():  # the recorder: an event and ten loss rows per transaction, all the time
        conn = store.connect(recorded / "otweb.sqlite3")
        step = 1000
        while not stop.is_set():
            with store.transaction(conn):
                store.append_event(conn, 1, {"event": "progress", "data": {"global_step": step}})
                store.append_metrics(conn, 1, [(step + i, 0.1, 1e-3, 2000.0 + step + i) for i in range(10)])
            step += 10
        conn.close()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        backups.PAGES_PER_STEP, pages = 1, backups.PAGES_PER_STEP  # many steps, commits between them
        manifest = backups.backup(recorded, tmp_path / "b")
    finally:
        backups.PAGES_PER_STEP = pages
        stop.set()
        writer.join()
    assert manifest["database"]["sha256"] == hashlib.sha256((tmp_path / "b" / "otweb.sqlite3").read_bytes()).hexdigest()
    copy = store.connect(tmp_path / "b" / "otweb.sqlite3")
    assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    progress = copy.execute("SELECT COUNT(*) FROM events WHERE name = 'progress'").fetchone()[0]
    metrics = copy.execute("SELECT COUNT(*) FROM metrics WHERE run_id = 1").fetchone()[0]
    assert metrics == 50 + 10 * progress  # every transaction whole or not at all
    copy.close()

"""The queue (order, pause, cancel), the run history and run pages, downloads and the loss series,
over a real SQLite and Redis with no worker: runs are written as the worker would write them."""
from __future__ import annotations

import hashlib
import io
import json
import time
import zipfile

import pytest

from test_api import write_config
from webapp import store
from webapp.protocol import Event, RunState, make_event


@pytest.fixture
def db(app):
    conn = store.connect(app.config["DATABASE"])
    yield conn
    conn.close()


@pytest.fixture
def tiny(config_dir, workspace):
    return write_config(config_dir, workspace)


def queue(client, **body) -> list[int]:
    answer = client.post("/api/queue", json={"config_name": "tiny", **body})
    assert answer.status_code == 202, answer.json
    return answer.json["run_ids"]


def finish(db, run_id: int, state: RunState = RunState.COMPLETED, steps: int = 0, **data) -> None:
    """What a worker records: claimed, running, some loss values, ended."""
    db.execute("UPDATE runs SET state = 'running', worker = 'gone', started_at = ? WHERE id = ?", (time.time() - 5, run_id))
    store.append_metrics(db, run_id, [(s, 1.0 / (s + 1), 1e-4, time.time()) for s in range(1, steps + 1)])
    if steps:
        store.append_event(db, run_id, make_event(Event.PROGRESS, global_step=steps, max_step=steps, loss=0.5,
                                                  smooth_loss=0.25))
    store.append_event(db, run_id, make_event(Event.RUN, state=state.value, **data))


def test_queue_with_overrides_and_who_started_it(client, db, tiny):
    ids = queue(client, count=2, overrides={"learning_rate": 0.5})
    ids += queue(client, items=[{"config_name": "tiny"}])
    assert len(ids) == 3
    runs = client.get("/api/queue").json["queue"]
    assert [r["id"] for r in runs] == ids and all(r["started_by"] == "local" for r in runs)
    assert json.loads(store.get_run(db, ids[0])["config_json"])["learning_rate"] == 0.5
    assert json.loads(store.get_run(db, ids[2])["config_json"])["learning_rate"] == 1e-4
    # REMOTE_USER (set by an authenticating proxy / server) is recorded
    answer = client.post("/api/queue", json={"config_name": "tiny"}, environ_base={"REMOTE_USER": "ana"})
    assert client.get(f"/api/runs/{answer.json['run_ids'][0]}").json["run"]["started_by"] == "ana"


@pytest.mark.parametrize("body, field", [
    ({"config_name": "tiny", "count": 0}, "count"), ({"config_name": "tiny", "count": "2"}, "count"),
    ({"items": []}, "items"), ({"items": ["tiny"]}, "items"),
    ({"config_name": "tiny", "overrides": [1]}, "overrides")])
def test_queue_refuses_bad_input(client, tiny, body, field):
    answer = client.post("/api/queue", json=body)
    assert answer.status_code == 400 and answer.json["detail"][0]["field"] == field


def test_one_bad_item_queues_nothing(client, db, tiny):
    answer = client.post("/api/queue", json={"items": [{"config_name": "tiny"}, {"config_name": "nope"}]})
    assert answer.status_code == 404 and store.queued_runs(db) == []


def test_reorder_pause_and_cancel_decide_what_a_worker_claims(client, db, tiny):
    a, b, c = queue(client, count=3)
    assert client.post("/api/queue/order", json={"order": [c, a]}).json["order"] == [c, a, b]
    later = queue(client)[0]  # queued after a reorder: last
    assert [r["id"] for r in store.queued_runs(db)] == [c, a, b, later]
    assert client.post("/api/queue/pause", json={"paused": True}).json == {"paused": True}
    assert store.queue_paused(db)  # paused: the dispatcher hands nothing out (control/dispatch.py)
    client.post("/api/queue/pause", json={"paused": False})
    assert client.delete(f"/api/queue/{c}").json["state"] == "canceled"
    assert not store.queue_paused(db) and store.queued_runs(db)[0]["id"] == a  # what it hands out next
    assert store.assignments.assign(db, a, "w", "assignment-1")
    # a canceled or claimed run is not in the queue any more
    assert client.delete(f"/api/queue/{c}").status_code == 409
    assert client.delete(f"/api/queue/{a}").status_code == 409
    assert client.delete("/api/queue/999").status_code == 404
    assert client.get(f"/api/runs/{c}").json["run"]["state"] == "canceled"
    assert not RunState.CANCELED.is_active and RunState.QUEUED.is_active


def test_queue_order_from_the_page_forms(client, db, tiny):
    a, b = queue(client, count=2)
    panel = client.get("/queue/panel").text
    assert panel.count("disabled") == 2  # the first can't go up, the last can't go down
    answer = client.post(f"/queue/{b}/move/up", headers={"HX-Request": "true"})
    assert answer.status_code == 200 and answer.text.index(f'data-run-id="{b}"') < answer.text.index(f'data-run-id="{a}"')
    assert [r["id"] for r in store.queued_runs(db)] == [b, a]
    assert 'data-testid="queue-paused"' in client.post("/queue/pause", data={"paused": "1"}).text
    assert store.queue_paused(db)
    client.post("/queue/pause", data={"paused": "0"})
    assert "canceled" in client.post(f"/queue/{a}/cancel").text
    assert "Queued runs" in client.post("/queue/add", data={"config_name": "tiny", "count": "2"}).text


def test_history_filters_and_summary(client, db, tiny):
    first, second = queue(client, count=2)
    finish(db, first, steps=30)
    finish(db, second, RunState.FAILED, reason="boom")
    runs = client.get("/api/runs").json["runs"]
    done = next(r for r in runs if r["id"] == first)
    assert done["steps"] == 30 and done["final_loss"] == 0.25 and done["model_type"] == "STABLE_DIFFUSION_15"
    assert done["training_method"] == "LORA" and done["duration_s"] > 0 and done["started_by"] == "local"
    assert [r["id"] for r in client.get("/api/runs?state=failed").json["runs"]] == [second]
    assert client.get("/api/runs?method=FINE_TUNE").json["runs"] == []
    assert client.get("/api/runs?limit=0").status_code == 400
    page = client.get("/runs?state=completed")
    assert page.status_code == 200 and f'data-run-id="{first}"' in page.text and f'data-run-id="{second}"' not in page.text


def test_a_running_run_of_a_dead_worker_shows_interrupted_and_resumable(client, db, tiny):
    run_id = queue(client)[0]
    db.execute("UPDATE runs SET state = 'running', worker = 'nobody', started_at = ? WHERE id = ?", (time.time(), run_id))
    run = client.get(f"/api/runs/{run_id}").json["run"]
    assert run["state"] == "interrupted" and run["can"]["resume"]
    assert 'data-action="resume"' in client.get(f"/runs/{run_id}").text


def test_events_after(client, db, tiny):
    run_id = queue(client)[0]
    finish(db, run_id, steps=3)
    events = client.get(f"/api/runs/{run_id}/events?after=0").json["events"]
    assert [e["event"] for e in events] == ["run", "progress", "run"]
    later = client.get(f"/api/runs/{run_id}/events?after={events[0]['seq']}").json
    assert [e["seq"] for e in later["events"]] == [e["seq"] for e in events[1:]] and later["last_seq"] == events[-1]["seq"]
    assert client.get("/api/runs/99/events").status_code == 404
    assert client.get(f"/api/runs/{run_id}/events?after=-1").status_code == 400


def test_loss_keeps_spikes_and_respects_max_points(client, db, tiny):
    run_id = queue(client)[0]
    finish(db, run_id, steps=5000)
    db.execute("UPDATE metrics SET loss = 50 WHERE run_id = ? AND step = 2345", (run_id,))
    answer = client.get(f"/api/runs/{run_id}/loss?max_points=100").json
    assert answer["total"] == 5000 and len(answer["points"]) <= 100
    assert max(p["loss"] for p in answer["points"]) == 50
    assert min(p["loss"] for p in answer["points"]) == pytest.approx(1 / 5001)
    steps = [p["step"] for p in answer["points"]]
    assert steps == sorted(steps) and steps[0] == 1 and steps[-1] == 5000
    assert all(p["smooth"] is not None and p["lr"] == pytest.approx(1e-4) for p in answer["points"])
    small = client.get(f"/api/runs/{run_id}/loss?max_points=20000").json
    assert len(small["points"]) == 5000
    assert client.get(f"/api/runs/{run_id}/loss?max_points=1").status_code == 400


def run_folder(app, run_id):
    folder = app.config["SETTINGS"].run_dir(run_id)
    backup = folder / "backups" / "2026-01-01_00-00-00-step20"
    backup.mkdir(parents=True)
    (backup / "lora.safetensors").write_bytes(b"w" * 3_000_000)
    (backup / "progress.json").write_text('{"global_step": 20}')
    (folder / "saves").mkdir()
    (folder / "saves" / "2026-01-01_00-00-01-step25.safetensors").write_bytes(b"s" * 1000)
    (folder / "models").mkdir()
    (folder / "models" / "lora.safetensors").write_bytes(b"o" * 2000)
    (folder / "trainer.log").write_text("loading model\nstep 1 loss 0.5\nWARNING something odd\nstep 2 loss 0.4\n")
    (folder / "config.json").write_text(json.dumps({"as_run": True, "training_method": "LORA"}))
    record_uploads(app, run_id, folder)
    return folder


def record_uploads(app, run_id, folder):
    """The sums the recorder keeps as a worker's uploads arrive (the files panel shows only these)."""
    conn = store.connect(app.config["DATABASE"])
    for path in (p for p in folder.rglob("*") if p.is_file()):
        store.uploads.record(conn, run_id, path.relative_to(folder).as_posix(), path.stat().st_size,
                             hashlib.sha256(path.read_bytes()).hexdigest())
    conn.commit()
    conn.close()


def test_run_page_files_downloads_and_checksums(client, app, db, tiny):
    run_id = queue(client)[0]
    folder = run_folder(app, run_id)
    finish(db, run_id, steps=30)
    store.append_event(db, run_id, make_event(Event.FINISHED, stopped=False, output=str(folder / "models" / "lora.safetensors")))
    page = client.get(f"/runs/{run_id}")
    assert page.status_code == 200
    for text in ("step20", "step25.safetensors", "lora.safetensors", "WARNING something odd", "&#34;as_run&#34;: true",
                 'class="loss-chart"', "marker-backup", "marker-save", 'data-action="delete"', 'data-action="clone"'):
        assert text in page.text, text
    assert "<script>" not in page.text

    log = client.get(f"/runs/{run_id}/log?q=warning").text
    assert "something odd" in log and "loss 0.5" not in log

    archive = client.get(f"/runs/{run_id}/files/backup/2026-01-01_00-00-00-step20")
    assert archive.status_code == 200 and archive.mimetype == "application/zip"
    with zipfile.ZipFile(io.BytesIO(archive.data)) as zf:
        assert sorted(zf.namelist()) == ["lora.safetensors", "progress.json"]
        assert zf.read("lora.safetensors") == b"w" * 3_000_000
    sums = client.get(f"/runs/{run_id}/files/backup/2026-01-01_00-00-00-step20/sha256").json["files"]
    assert sums == {"lora.safetensors": hashlib.sha256(b"w" * 3_000_000).hexdigest(),
                    "progress.json": hashlib.sha256(b'{"global_step": 20}').hexdigest()}

    output = client.get(f"/runs/{run_id}/files/output/lora.safetensors")
    assert output.data == b"o" * 2000
    assert client.get(f"/runs/{run_id}/files/output/lora.safetensors/sha256").json["sha256"] == hashlib.sha256(b"o" * 2000).hexdigest()
    short = client.get(f"/runs/{run_id}/files/save/2026-01-01_00-00-01-step25.safetensors/sha256",
                       headers={"HX-Request": "true"}).text  # the page's: 12 digits shown, the whole to copy
    whole = hashlib.sha256((folder / "saves" / "2026-01-01_00-00-01-step25.safetensors").read_bytes()).hexdigest()
    assert f'data-copy="{whole}"' in short and f">{whole[:12]}…<" in short
    # only what the listing holds: no paths from the request
    for bad in ("backup/..", "output/trainer.log", "save/..%2Fconfig.json", "nope/lora.safetensors"):
        assert client.get(f"/runs/{run_id}/files/{bad}").status_code == 404, bad


def test_clone_and_delete(client, app, db, tiny, config_dir):
    run_id = queue(client)[0]
    folder = run_folder(app, run_id)
    assert client.delete(f"/api/runs/{run_id}").status_code == 409  # queued: cancel it first
    finish(db, run_id, steps=10)
    answer = client.post(f"/runs/{run_id}/clone", headers={"HX-Request": "true"})
    assert answer.status_code == 204 and "/configs/" in answer.headers["HX-Redirect"]
    assert json.loads((config_dir / f"tiny from run {run_id}.json").read_text())["as_run"] is True
    assert client.post(f"/runs/{run_id}/delete", data={}, headers={"HX-Request": "true"}).status_code == 400
    assert folder.exists()
    answer = client.post(f"/runs/{run_id}/delete", data={"confirm": str(run_id)}, headers={"HX-Request": "true"})
    assert answer.status_code == 204 and not folder.exists()
    assert client.get(f"/api/runs/{run_id}").status_code == 404
    assert db.execute("SELECT COUNT(*) FROM metrics WHERE run_id = ?", (run_id,)).fetchone()[0] == 0


def test_dashboard_shows_the_queue_and_last_finished(client, db, tiny):
    first, second = queue(client, count=2)
    finish(db, first, steps=4)
    assert 'id="queue-box"' in client.get("/").text
    panel = client.get("/queue/panel").text
    assert f'data-run-id="{second}"' in panel and f"#{first} tiny" in panel and "state-completed" in panel


def test_schema_migration_adds_the_new_columns(tmp_path):
    conn = store.connect(tmp_path / "old.sqlite3")
    conn.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, config_name TEXT NOT NULL,"
                 " config_json TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'queued', status_text TEXT NOT NULL DEFAULT '',"
                 " progress_json TEXT, worker TEXT, pid INTEGER, reason TEXT, output_path TEXT,"
                 " stop_requested INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL, started_at REAL, finished_at REAL)")
    store.init_schema(conn)
    columns = {row["name"] for row in conn.execute("PRAGMA table_info(runs)")}
    assert {"resume_requested", "queue_position", "started_by"} <= columns

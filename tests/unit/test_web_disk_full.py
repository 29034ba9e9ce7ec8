"""Issue 33 §2: a full disk on the web host. The web's workspace (the record's SQLite and the runs'
copies) on an 8 MiB tmpfs, filled while a worker's entries arrive: token-authenticated reads still
answer, /api/health answers 503 saying why, the recorder acknowledges nothing it has not written
(the entries wait in the stream) and the run's page says why it is not recorded; once space is
freed, everything is recorded once, in order, the samples whole, the final state and step right."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import redis

from support.disk import fill
from webapp import store
from webapp.control import record_state
from webapp.control.recorder import Recorder
from webapp.eventlog import ENTRY_EVENT, ENTRY_FILE, encode_entry, file_chunks
from webapp.settings import RECORDER_GROUP, WORKERS_KEY, worker_stream

EVENT_STREAM = worker_stream("w1")  # the stream of the worker the run is assigned to
from webapp.store import accounts

pytestmark = pytest.mark.slow


@pytest.fixture
def workspace(tmp_path):
    """The web's workspace on its own small disk (overrides conftest's)."""
    path = tmp_path / "workspace"
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8M", "tmpfs", str(path)],
                             capture_output=True, text=True)
    assert mounted.returncode == 0, f"this test needs root to mount a tmpfs: {mounted.stderr}"
    yield path
    subprocess.run(["umount", "-l", str(path)], check=False)


def _png(seed: int) -> bytes:
    """A 256x256 image of noise: ~200 KB as PNG, like a sample (the disk fills between its chunks)."""
    import io
    import random

    from PIL import Image
    noise = random.Random(seed).randbytes(256 * 256 * 3)
    out = io.BytesIO()
    Image.frombytes("RGB", (256, 256), noise).save(out, format="PNG")
    return out.getvalue()


def test_a_full_disk_on_the_web_host_holds_the_record_and_loses_nothing(auth_app, redis_url, workspace, tmp_path):
    client, web = redis.Redis.from_url(redis_url, decode_responses=True), auth_app.test_client()
    conn = store.connect(auth_app.config["DATABASE"])
    _, token = accounts.create_token(conn, "script", role="viewer")
    headers = {"Authorization": f"Bearer {token}"}
    run_id = store.create_run(conn, "demo", {"a": 1})
    assert store.assignments.assign(conn, run_id, "w1", "as1")
    client.sadd(WORKERS_KEY, "w1")  # in the fleet: its stream is read
    recorder = Recorder(conn, client, auth_app.config["SETTINGS"].run_dir, "r1")
    images = [_png(seed) for seed in range(4)]  # real images: a sample is checked from its header on arrival
    before = [("run", {"state": "running"}), ("progress", {"global_step": 100, "max_step": 2400})]
    after = [*_samples(images, tmp_path), ("progress", {"global_step": 2400, "max_step": 2400}),
             ("finished", {"stopped": False}), ("run", {"state": "completed"}),
             ("progress", {"global_step": 1790, "max_step": 2400})]  # stale progress, arriving late
    n = _send(client, run_id, before, 0)
    _drain(recorder)
    assert web.get(f"/api/runs/{run_id}", headers=headers).status_code == 200

    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the next write needs new room on the disk
    fill(workspace)
    _send(client, run_id, after, n)
    for _ in range(3):
        recorder.step(block_ms=10)
    pending = client.xpending(EVENT_STREAM, RECORDER_GROUP)["pending"]
    assert recorder.held and pending == len(recorder.held[0]) == client.xlen(EVENT_STREAM)  # nothing acked
    assert "the web host's disk is full" in recorder.blocked and str(workspace) in recorder.blocked
    assert store.get_run(conn, run_id)["state"] == "running"

    answer = web.get(f"/api/runs/{run_id}", headers=headers)   # a read needs no write
    assert answer.status_code == 200 and "disk is full" in answer.get_json()["run"]["record_blocked"]
    assert "disk is full" in web.get(f"/runs/{run_id}", headers=headers).get_data(as_text=True)
    assert "Not recording: the web host&#39;s disk is full" in web.get("/system", headers=headers).get_data(as_text=True)
    health = web.get("/api/health")
    assert health.status_code == 503 and not health.get_json()["record"]
    assert "the web host's disk is full" in health.get_json()["record_error"]

    (workspace / "ballast").unlink()
    while recorder.step(block_ms=10):
        pass
    assert recorder.held is None and client.xlen(EVENT_STREAM) == 0
    assert record_state.blocked(client) is None and web.get("/api/health").status_code == 200
    run = store.get_run(conn, run_id)
    assert run["state"] == "completed" and run["progress"]["global_step"] == 2400
    folder = auth_app.config["SETTINGS"].run_dir(run_id)
    assert [(folder / f"samples/s{i}.png").read_bytes() for i in range(4)] == images
    names = [e["event"] for e in store.events_since(conn, 0, run_id)]
    assert names == [name for name, _ in before + after if name != "file"]  # once each, in order
    assert [s["path"] for s in store.list_samples(conn, run_id)] and len(store.list_samples(conn, run_id)) == 4


def _send(client, run_id: int, entries: list, n: int) -> int:
    for name, body in entries:
        n += 1
        if name == ENTRY_FILE:
            client.xadd(EVENT_STREAM, encode_entry(ENTRY_FILE, run_id, "as1", n, **body))
        else:
            client.xadd(EVENT_STREAM, encode_entry(ENTRY_EVENT, run_id, "as1", n, event=name, data=body, time=float(n)))
    return n


def _drain(recorder):
    while recorder.step(block_ms=10):
        pass


def _samples(images: list[bytes], folder: Path) -> list:
    """Each image's chunks, then its sample event: as a worker sends a sample."""
    entries = []
    for index, image in enumerate(images):
        (folder / f"s{index}.png").write_bytes(image)
        entries += [(ENTRY_FILE, body) for body in file_chunks(folder / f"s{index}.png", f"samples/s{index}.png")]
        entries.append(("sample_default", {"path": f"samples/s{index}.png", "prompt": f"p{index}"}))
    return entries


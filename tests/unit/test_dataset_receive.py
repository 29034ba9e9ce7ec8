"""A dataset sent from the web's library to a worker through Redis (issue 28, delivery): the web's
sender and the worker's receiver on a real Redis, in threads. Only files the worker lacks travel;
its own folder with the same content is used as it is; a corrupted file, the web's error or a web
that never sends are each a clear failure, never a hang."""
from __future__ import annotations

import hashlib
import json
import os

import pytest
import redis

from webapp import store
from webapp.config import paths
from webapp.control.dataset_delivery import DatasetDelivery
from webapp.eventlog import file_chunks
from webapp.settings import dataset_key
from webapp.worker import dataset_receive
from webapp.worker.dataset_cache import DatasetCache
from webapp.worker.dataset_receive import DatasetReceiver, DeliveryError


def _dataset(folder, count=6):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"img{i}.png").write_bytes(os.urandom(300_000 + i))   # two chunks each
        (folder / f"img{i}.txt").write_text(f"caption {i}")
    return folder


@pytest.fixture
def fleet(app, workspace, redis_url, tmp_path):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    worker_dir = tmp_path / "worker-host"
    worker_dir.mkdir()
    statuses: list[str] = []
    receiver = DatasetReceiver(client, "courier", DatasetCache(worker_dir / "dataset-cache", 10**9), worker_dir,
                               paths.read_roots(worker_dir), statuses.append)
    return {"client": client, "web": DatasetDelivery(client, app.config["DATABASE"], workspace), "receiver": receiver,
            "statuses": statuses, "worker_dir": worker_dir, "conn": store.connect(app.config["DATABASE"])}


def _deliver(fleet, config: dict, aid: str):
    run_id = store.create_run(fleet["conn"], "demo", config)
    assignment = {"id": aid, "run_id": run_id, "dataset": fleet["web"].offer("courier", aid, run_id, config)}
    assert assignment["dataset"]
    return run_id, fleet["receiver"].receive(assignment, config)


def test_only_missing_files_travel_and_a_second_run_sends_nothing(fleet, workspace):
    source = _dataset(workspace / "datasets" / "shapes")
    config = {"concepts": [{"path": "datasets/shapes", "include_subdirectories": False}]}
    run_id, (given, outcome) = _deliver(fleet, config, "a1")
    folder = given["concepts"][0]["path"]
    assert outcome["sent"] == 12 and outcome["bytes_sent"] > 1_800_000
    assert sorted(os.listdir(folder)) == sorted(os.listdir(source))
    assert (source / "img3.png").read_bytes() == open(os.path.join(folder, "img3.png"), "rb").read()
    assert any(s.startswith("sending dataset: 12 / 12 files") for s in fleet["statuses"]), fleet["statuses"]
    (recorded,) = store.dataset_manifests.of_run(fleet["conn"], run_id)
    assert recorded["count"] == 12 and recorded["path"] == "datasets/shapes"
    fleet["receiver"].cache.release(run_id)

    (source / "img0.txt").write_text("a better caption")                 # one caption fixed since
    _, (_, again) = _deliver(fleet, config, "a2")
    assert again["sent"] == 1 and again["bytes_sent"] == len("a better caption")
    _, (_, third) = _deliver(fleet, config, "a3")
    assert third["sent"] == 0 and third["bytes_sent"] == 0
    assert fleet["statuses"][-1] == "dataset ready: 12 files, 0 of 12 distinct sent (0.0 MB)"
    assert fleet["client"].llen(dataset_key("courier", "a3", "chunks")) == 0


def test_a_worker_folder_with_the_same_content_is_used_as_it_is(fleet, workspace):
    source = _dataset(workspace / "datasets" / "shapes", count=2)
    own = fleet["worker_dir"] / "datasets" / "shapes"
    own.mkdir(parents=True)
    for path in source.iterdir():
        (own / path.name).write_bytes(path.read_bytes())
    _, (given, outcome) = _deliver(fleet, {"concepts": [{"path": "datasets/shapes"}]}, "b1")
    assert outcome["sent"] == 0 and outcome["local"] == [0] and given["concepts"][0]["path"] == str(own.resolve())


def test_a_corrupted_file_fails_the_delivery_with_a_clear_reason(fleet):
    client, aid = fleet["client"], "c1"
    content = b"x" * 1000
    sha = hashlib.sha256(content).hexdigest()
    client.set(dataset_key("courier", aid, "manifest"), json.dumps(
        {"concepts": [{"concept": 0, "path": "elsewhere", "fingerprint": "f", "files": {"a.png": [1000, sha]}}]}))
    source = fleet["worker_dir"] / "src"
    source.write_bytes(b"y" * 1000)                                      # not what the manifest says
    for chunk in file_chunks(source, sha, digest=sha):
        client.rpush(dataset_key("courier", aid, "chunks"), json.dumps(chunk))
    with pytest.raises(DeliveryError, match="corrupted"):
        fleet["receiver"].receive({"id": aid, "run_id": 1}, {"concepts": [{"path": "elsewhere"}]})
    assert fleet["receiver"].cache.missing([sha]) == [sha]


def test_the_webs_error_or_its_silence_ends_the_wait(fleet, monkeypatch):
    client = fleet["client"]
    client.set(dataset_key("courier", "d1", "error"), "the web could not send the dataset: disk gone")
    with pytest.raises(DeliveryError, match="disk gone"):
        fleet["receiver"].receive({"id": "d1", "run_id": 1}, {"concepts": []})
    monkeypatch.setattr(dataset_receive, "MANIFEST_WAIT_S", 0.3)
    with pytest.raises(DeliveryError, match="no manifest"):
        fleet["receiver"].receive({"id": "d2", "run_id": 1}, {"concepts": []})


def test_a_delivery_error_fails_the_run_with_its_reason_code_and_no_trainer_starts(workspace, config_dir, redis_url):
    from webapp.eventlog import decode_entry
    from webapp.protocol import Reason, RunState
    from webapp.settings import Settings, worker_stream
    from webapp.worker.loop import Worker
    settings = Settings.from_env(workspace=workspace, config_dir=config_dir, redis_url=redis_url,
                                 worker_name="courier-fail")
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.delete(worker_stream("courier-fail"))
    client.set(dataset_key("courier-fail", "e1", "error"), "the web could not send the dataset: img3.png is gone")
    worker = Worker(settings)
    assignment = {"id": "e1", "run_id": 434343, "config_name": "demo", "dataset": {"manifest": "x"},
                  "config": {"concepts": [{"path": "datasets/shapes"}]}}
    assert worker.run_one(assignment) == RunState.FAILED
    assert not (settings.worker_run_dir(434343) / "config.json").exists()   # no trainer was started for it
    entries = [decode_entry(fields) for _, fields in client.xrange(worker_stream("courier-fail"))]
    (failed,) = [e["data"] for e in entries if e.get("event") == "run" and e["data"]["state"] == "failed"]
    assert failed["reason_code"] == Reason.DATASET_DELIVERY.value and "img3.png is gone" in failed["reason"]

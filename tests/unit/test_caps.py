"""Issue 16, point 2: nothing a user does may stall everyone. Dataset scans run off the request
path, bounded and cached; streams, queued runs, submissions and body sizes are capped, each with a
clear 429/503 (Retry-After) or 413 in the API's error shape."""
from __future__ import annotations

import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from support.accounts import login
from support.apps import make_app
from support.demo import short_run


def big_tree(root, folders: int = 40, per_folder: int = 500):
    for n in range(folders):
        folder = root / f"part{n:03d}"
        folder.mkdir(parents=True)
        for i in range(per_folder):
            (folder / f"{i:05d}.png").touch()


def test_a_huge_dataset_is_scanned_off_the_request_and_cached(workspace, config_dir, redis_url, redis_server):
    redis_server.flushall()
    big_tree(workspace / "datasets" / "huge")
    (config_dir / "huge.json").write_text(json.dumps({"concepts": [{"path": "datasets/huge",
                                                                    "include_subdirectories": True}]}))
    client = make_app(workspace, config_dir, redis_url).test_client()
    started = time.monotonic()
    page = client.get("/configs/huge/edit").get_data(as_text=True)
    first_s = time.monotonic() - started
    # the request did not walk 20,000 files: it answered with a placeholder that asks again
    assert "scanning…" in page and "20000 images" not in page
    url = page.split('hx-get="')[1].split('"')[0].replace("&amp;", "&")
    deadline = time.monotonic() + 60
    while "scanning…" in (part := client.get(url).get_data(as_text=True)):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert "20000 images" in part
    started = time.monotonic()
    again = client.get("/configs/huge/edit").get_data(as_text=True)
    assert "20000 images" in again and "scanning…" not in again  # cached: no second walk
    assert time.monotonic() - started < max(first_s * 3, 2.0)


def test_scans_are_bounded_in_depth(workspace, config_dir, redis_url):
    from webapp.config.datasets import MAX_DEPTH, folder_stats
    deep = workspace / "datasets" / "deep"
    folder = deep
    for level in range(MAX_DEPTH + 3):
        folder = folder / f"l{level}"
    folder.mkdir(parents=True)
    (folder / "bottom.png").touch()
    (deep / "top.png").touch()
    stats = folder_stats({"path": "datasets/deep", "include_subdirectories": True}, workspace)
    assert stats.images == 1 and stats.truncated


def test_live_streams_are_capped_per_user_and_per_process(auth_app):
    auth_app.config.update(MAX_STREAMS_PER_USER=2, MAX_STREAMS=3)
    clients = {}
    for name in ("vera", "otto"):
        clients[name] = auth_app.test_client()
        login(clients[name], name)

    threads = []

    def open_stream(name, url="/api/events"):
        # each in its own thread, as each stream is its own greenlet under gunicorn: the test
        # client would otherwise reuse the open stream's app context (and its g) for the next request
        pool = ThreadPoolExecutor(1)
        threads.append(pool)
        response = pool.submit(clients[name].get, url, buffered=False, headers={"Accept": "application/json"}).result()
        response.close_here = lambda: pool.submit(response.close).result()  # closed where it was opened
        return response

    held = [open_stream("vera"), open_stream("vera")]
    assert all(r.status_code == 200 for r in held)
    refused = open_stream("vera")
    assert refused.status_code == 429 and refused.headers["Retry-After"] and refused.get_json()["error"]
    held.append(open_stream("otto"))
    full = open_stream("otto", "/events")
    assert full.status_code == 503 and full.headers["Retry-After"], full.get_data(as_text=True)
    held.pop(0).close_here()  # a closed stream gives its place back
    again = open_stream("vera")
    assert again.status_code == 200
    for response in held + [again]:
        response.close_here()
    for pool in threads:
        pool.shutdown()
    auth_app.extensions["sse_broker"].stop()  # its Redis subscription would outlive the test

@pytest.fixture
def runnable(workspace, config_dir, demo_workspace, demo_config):
    for folder in ("models", "datasets"):
        shutil.copytree(demo_workspace[0] / folder, workspace / folder)
    (config_dir / "demo.json").write_text(json.dumps(short_run(demo_config)))
    return workspace


def test_queued_runs_are_capped_per_user_and_in_all(runnable, config_dir, redis_url, redis_server):
    redis_server.flushall()
    app = make_app(runnable, config_dir, redis_url, MAX_QUEUED_PER_USER=2, MAX_QUEUED=3)
    client = app.test_client()
    assert client.post("/api/queue/pause", json={"paused": True}).status_code == 200  # nothing leaves the queue
    assert client.post("/api/queue", json={"config_name": "demo", "count": 2}).status_code == 202
    mine = client.post("/api/queue", json={"config_name": "demo"})
    assert mine.status_code == 429 and mine.headers["Retry-After"] and mine.get_json()["error"] == "too many queued runs"
    assert client.post("/api/training/start", json={"config_name": "demo"}).status_code == 429
    app.config["MAX_QUEUED_PER_USER"] = 10
    assert client.post("/api/queue", json={"config_name": "demo"}).status_code == 202
    full = client.post("/api/queue", json={"config_name": "demo"})
    assert full.status_code == 503 and full.get_json()["error"] == "the queue is full"


def test_submissions_per_minute_are_capped(runnable, config_dir, redis_url, redis_server):
    redis_server.flushall()
    app = make_app(runnable, config_dir, redis_url, SUBMIT_RATE="2 per minute")
    client = app.test_client()
    client.post("/api/queue/pause", json={"paused": True})
    answers = [client.post("/api/queue", json={"config_name": "demo"}).status_code for _ in range(3)]
    assert answers == [202, 202, 429]


def test_request_bodies_are_capped_at_one_megabyte(client):
    body = b'{"config": {"x": "' + b"a" * 1_100_000 + b'"}}'
    for url in ("/api/training/start", "/api/config/validate", "/api/queue"):
        answer = client.post(url, data=body, content_type="application/json")
        assert answer.status_code == 413 and set(answer.get_json()) == {"error", "detail"}, url

"""The system page and API: what the machine is, how busy it is, our processes; no torch on the web side."""
from __future__ import annotations

import json
import os



def test_info(client):
    info = client.get("/api/system/info").json
    assert info["python"]["version"] and info["cpu"]["logical"] >= 1 and info["ram"]["total"] > 0
    assert info["disk"]["total"] > 0 and info["os"]["system"]
    assert "torch" in info["libraries"] and info["libraries"]["flask"]
    if not info["gpus"]:
        assert info["gpu_note"].startswith("no GPU")


def test_resources(client):
    now = client.get("/api/system/resources").json
    assert 0 <= now["cpu_percent"] <= 100 and 0 < now["ram"]["percent"] <= 100
    assert now["disk"]["free"] > 0
    assert now["gpus"] or now["gpu_note"].startswith("no GPU")


def test_processes_name_the_web_and_redis(client, redis_server):
    found = {p["role"]: p for p in client.get("/api/system/processes").json["processes"]}
    assert found["web"]["pid"] == os.getpid() and found["web"]["rss"] > 0
    assert "redis" in found


def test_processes_find_a_worker_and_its_trainer_by_heartbeat(client, app):
    from webapp.extensions import get_redis
    from webapp.settings import heartbeat_key
    with app.app_context():
        get_redis().set(heartbeat_key("gpu-test"), json.dumps({"pid": os.getpid(), "trainer_pid": os.getppid(),
                                                               "run_id": 7}))
    roles = {p["role"] for p in client.get("/api/system/processes").json["processes"]}
    assert "trainer (run 7)" in roles


def test_page_and_its_live_partial_with_history(client):
    page = client.get("/system")
    assert page.status_code == 200 and 'hx-trigger="every 1s"' in page.text and "<script>" not in page.text
    live = ""
    for _ in range(3):  # history: one point a second at most, so the sparkline needs a second or two
        live = client.get("/system/live").text
        if 'class="spark"' in live:
            break
        import time
        time.sleep(1)
    assert 'data-testid="cpu"' in live and 'class="spark"' in live and "Processes" in live

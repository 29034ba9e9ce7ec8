"""The system page and API: what the machine is, how busy it is, our processes; no torch on the web side."""
from __future__ import annotations

import json
import os
import sys



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
    from webapp.web.extensions import get_redis
    from webapp.settings import WORKERS_KEY, heartbeat_key, joined_key
    with app.app_context():
        client_redis = get_redis()
        client_redis.sadd(WORKERS_KEY, "gpu-test")  # joined, as a worker does before it beats
        client_redis.set(joined_key("gpu-test"), "{}")
        client_redis.set(heartbeat_key("gpu-test"), json.dumps({"pid": os.getpid(), "trainer_pid": os.getppid(),
                                                                "run_id": 7}))
        try:
            roles = {p["role"] for p in client.get("/api/system/processes").json["processes"]}
        finally:  # a joined worker with a beat would be given the next tests' runs
            client_redis.srem(WORKERS_KEY, "gpu-test")
            client_redis.delete(heartbeat_key("gpu-test"), joined_key("gpu-test"))
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



class FakeNVML:
    """Stands in for pynvml (nvidia-ml-py) on a machine without it: one GPU, one field unsupported."""
    class NVMLError(Exception):
        pass

    nvmlInit = nvmlShutdown = staticmethod(lambda: None)
    nvmlDeviceGetCount = staticmethod(lambda: 1)
    nvmlDeviceGetHandleByIndex = staticmethod(lambda index: f"gpu{index}")
    nvmlDeviceGetName = staticmethod(lambda handle: b"NVIDIA Test GPU")
    nvmlSystemGetDriverVersion = staticmethod(lambda: "550.1")
    nvmlDeviceGetMemoryInfo = staticmethod(lambda handle: type("M", (), {"used": 2 << 30, "total": 8 << 30})())
    nvmlDeviceGetUtilizationRates = staticmethod(lambda handle: type("U", (), {"gpu": 37})())
    nvmlDeviceGetTemperature = staticmethod(lambda handle, sensor: 61)

    @staticmethod
    def nvmlDeviceGetPowerUsage(handle):
        raise FakeNVML.NVMLError("Not Supported")


def test_gpus_through_nvml_when_it_is_there(client, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", FakeNVML)
    gpu = client.get("/api/system/resources").json["gpus"][0]
    assert gpu == {"index": 0, "name": "NVIDIA Test GPU", "driver": "550.1", "utilization": 37, "memory_used": 2 << 30,
                   "memory_total": 8 << 30, "temperature": 61, "power_w": None}
    assert client.get("/api/system/info").json["gpus"][0]["name"] == "NVIDIA Test GPU"
    live = client.get("/system/live").text
    assert 'data-testid="gpu0"' in live and "61 °C" in live and "no GPU" not in live


def test_no_nvml_says_no_gpu(client, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    now = client.get("/api/system/resources").json
    assert now["gpus"] == [] and now["gpu_note"].startswith("no GPU")
    assert 'data-testid="no-gpu"' in client.get("/system/live").text

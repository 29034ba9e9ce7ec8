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


STAND_IN_WORKER = ("import subprocess, sys, time\n"
                   "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
                   "print(child.pid, flush=True)\n"
                   "time.sleep(60)\n")


def _beat(app, client, beat: dict) -> dict:
    """The System page's processes while a joined worker "gpu-test" beats ``beat``."""
    from webapp.web.extensions import get_redis
    from webapp.settings import WORKERS_KEY, heartbeat_key, joined_key
    with app.app_context():
        client_redis = get_redis()
        client_redis.sadd(WORKERS_KEY, "gpu-test")  # joined, as a worker does before it beats
        client_redis.set(joined_key("gpu-test"), "{}")
        client_redis.set(heartbeat_key("gpu-test"), json.dumps(beat))
        try:
            return {p["role"]: p for p in client.get("/api/system/processes").json["processes"]}
        finally:  # a joined worker with a beat would be given the next tests' runs
            client_redis.srem(WORKERS_KEY, "gpu-test")
            client_redis.delete(heartbeat_key("gpu-test"), joined_key("gpu-test"))


def test_processes_find_a_worker_and_its_trainer_by_heartbeat(client, app):
    """A process whose command line is a worker's (``-m webapp.cli worker``) and its child."""
    import subprocess
    import sys
    worker = subprocess.Popen([sys.executable, "-c", STAND_IN_WORKER, "-m", "webapp.cli", "worker"],
                              stdout=subprocess.PIPE, text=True)
    try:
        trainer = int(worker.stdout.readline())
        found = _beat(app, client, {"pid": worker.pid, "trainer_pid": trainer, "run_id": 7})
    finally:
        worker.kill()
        worker.wait()
    assert found["worker gpu-test"]["running"] is True and found["worker gpu-test"]["rss"] > 0
    assert found["trainer (run 7)"]["running"] is True and found["trainer (run 7)"]["pid"] == trainer


def test_a_heartbeat_cannot_make_the_page_describe_other_processes(client, app):
    """A worker's heartbeat names process ids; a hostile one named processes of the web's host
    (here the test's parent and init): neither is described (name, memory, start time) as the
    worker or its trainer; one naming the web's own process leaves it the web's."""
    found = _beat(app, client, {"pid": os.getppid(), "trainer_pid": 1, "run_id": 7})
    assert found["worker gpu-test"] == {"pid": os.getppid(), "role": "worker gpu-test", "running": None,
                                        "note": "not looked up: not a worker process of this host"}
    assert set(found["trainer (run 7)"]) == {"pid", "role", "running", "note"}
    found = _beat(app, client, {"pid": os.getpid(), "run_id": 7})
    assert "worker gpu-test" not in found
    assert found["web"]["pid"] == os.getpid()  # still itself


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

"""The machine: what it is (info), how busy it is (resources, with a short history), and our processes.

psutil for the host; NVIDIA's management library (``pynvml``, package nvidia-ml-py) only when it is
installed and finds a driver. Library versions come from importlib.metadata: nothing heavy is imported.
"""
from __future__ import annotations

import json
import platform
import socket
import sys
import time
from importlib import metadata

import psutil
import redis
from flask import current_app

from webapp.web.charts import percent_sparkline
from webapp.web.extensions import get_redis
from webapp.control import record_state
from webapp.control.heartbeats import read_beats
from webapp.web.fleet.workers import live_workers

LIBRARIES = ("torch", "diffusers", "transformers", "peft", "accelerate", "safetensors", "nvidia-ml-py",
             "flask", "gunicorn", "gevent", "redis", "psutil")
HISTORY_KEY = "otweb:system:history"
HISTORY_LENGTH = 120          # two minutes at 1 Hz
SAMPLE_EVERY_S = 0.9
NO_GPU = "no GPU: NVIDIA's management library (nvidia-ml-py) is not installed or finds no driver"



# -- what the machine is --------------------------------------------------------------------

def library_versions() -> dict:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def system_info() -> dict:
    workspace = current_app.config["WORKSPACE"]
    memory, disk = psutil.virtual_memory(), psutil.disk_usage(str(workspace))
    gpus = gpu_status()
    return {
        "os": {"system": platform.system(), "release": platform.release(), "version": platform.version(),
               "machine": platform.machine(), "hostname": platform.node()},
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation(),
                   "executable": sys.executable},
        "cpu": {"model": platform.processor() or _cpu_model(), "logical": psutil.cpu_count(),
                "physical": psutil.cpu_count(logical=False)},
        "ram": {"total": memory.total},
        "disk": {"path": str(workspace), "total": disk.total, "free": disk.free},
        "gpus": [{k: g[k] for k in ("index", "name", "memory_total", "driver")} for g in gpus["gpus"]],
        "gpu_note": gpus["note"],
        # the workers' own GPUs (otweb worker --gpus): a run asks for up to that many
        "workers": [{k: w[k] for k in ("name", "gpus", "run_id")} for w in live_workers()],
        # the trainer runs in this Python environment (otweb worker): versions as installed, not imported
        "libraries": library_versions(),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


# -- how busy it is ------------------------------------------------------------------------

def gpu_status() -> dict:
    """{"gpus": [...], "note": None} or no GPUs and a note saying why."""
    try:
        import pynvml
    except ImportError:
        return {"gpus": [], "note": NO_GPU}
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - NVMLError_*: no driver, no device
        return {"gpus": [], "note": f"no GPU: {exc}"}
    try:
        return {"gpus": [_one_gpu(pynvml, i) for i in range(pynvml.nvmlDeviceGetCount())], "note": None}
    finally:
        pynvml.nvmlShutdown()


def _one_gpu(nvml, index: int) -> dict:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)

    def read(call, *args):
        try:
            return call(handle, *args)
        except Exception:  # noqa: BLE001 - a field this board does not report
            return None
    name = read(nvml.nvmlDeviceGetName)
    memory, util = read(nvml.nvmlDeviceGetMemoryInfo), read(nvml.nvmlDeviceGetUtilizationRates)
    power = read(nvml.nvmlDeviceGetPowerUsage)
    try:
        driver = nvml.nvmlSystemGetDriverVersion()
    except Exception:  # noqa: BLE001
        driver = None
    return {"index": index, "name": name.decode() if isinstance(name, bytes) else name,
            "driver": driver.decode() if isinstance(driver, bytes) else driver,
            "utilization": util.gpu if util else None,
            "memory_used": memory.used if memory else None, "memory_total": memory.total if memory else None,
            "temperature": read(nvml.nvmlDeviceGetTemperature, 0),  # 0: NVML_TEMPERATURE_GPU
            "power_w": power / 1000 if power is not None else None}


def resources() -> dict:
    memory = psutil.virtual_memory()
    disk = psutil.disk_usage(str(current_app.config["WORKSPACE"]))
    gpus = gpu_status()
    return {"time": time.time(), "cpu_percent": psutil.cpu_percent(interval=None),
            "ram": {"used": memory.total - memory.available, "total": memory.total, "percent": memory.percent},
            "disk": {"path": str(current_app.config["WORKSPACE"]), "used": disk.used, "free": disk.free,
                     "total": disk.total, "percent": disk.percent},
            "gpus": gpus["gpus"], "gpu_note": gpus["note"]}


def sample_with_history() -> tuple[dict, list[dict]]:
    """Now, plus the last two minutes (kept in Redis so every web process shares one history)."""
    now = resources()
    client = get_redis()
    try:
        raw = client.lrange(HISTORY_KEY, 0, HISTORY_LENGTH - 1)
        history = [json.loads(item) for item in reversed(raw)]
        if not history or now["time"] - history[-1]["time"] >= SAMPLE_EVERY_S:
            point = {"time": now["time"], "cpu": now["cpu_percent"], "ram": now["ram"]["percent"],
                     "gpu": [g["utilization"] for g in now["gpus"]],
                     "gpu_mem": [100 * g["memory_used"] / g["memory_total"] if g["memory_total"] else None
                                 for g in now["gpus"]]}
            client.lpush(HISTORY_KEY, json.dumps(point))
            client.ltrim(HISTORY_KEY, 0, HISTORY_LENGTH - 1)
            history.append(point)
    except redis.RedisError:
        history = []
    return now, history[-HISTORY_LENGTH:]


# -- the record: entries set aside, and whether it can be written ---------------------------------

def record_status() -> dict:
    """{"blocked": why the recorder cannot write the record now, or None; "dead_letters": the
    count of malformed entries set aside and the newest few}."""
    try:
        client = get_redis()
        return {"blocked": record_state.blocked(client), "dead_letters": record_state.dead_letters(client)}
    except redis.RedisError as exc:
        return {"blocked": None, "dead_letters": None, "note": f"Redis cannot be asked: {exc}"}


# -- our processes ---------------------------------------------------------------------------

def processes() -> list[dict]:
    found: dict[int, str] = {}
    unverified: dict[int, str] = {}
    me = psutil.Process()
    found[me.pid] = "web"
    parent = me.parent()
    if parent is not None and "gunicorn" in " ".join(_cmdline(parent)):
        found[parent.pid] = "web (gunicorn master)"
        for child in parent.children():
            found.setdefault(child.pid, "web")
    client = get_redis()
    try:
        for worker, beat in read_beats(client).items():
            _beat_processes(worker, beat, found, unverified)
        redis_pid = client.info("server").get("process_id")
        if redis_pid:
            found[int(redis_pid)] = "redis"
    except redis.RedisError:
        pass
    return ([_describe(pid, role) for pid, role in found.items()]
            + [{"pid": pid, "role": role, "running": None, "note": NOT_LOOKED_UP} for pid, role in unverified.items()
               if pid not in found])


NOT_LOOKED_UP = "not looked up: not a worker process of this host"


def _beat_processes(worker: str, beat: dict, found: dict, unverified: dict) -> None:
    """A heartbeat's process ids are the worker's word: described here only when they are what it
    says, the worker's an otweb worker process on this host and the trainer's a descendant of it.
    Otherwise a worker could make this page show any process of the web's host (its name, memory,
    start time)."""
    pid, trainer = _pid(beat.get("pid")), _pid(beat.get("trainer_pid"))
    process = _worker_process(pid) if beat.get("host") in (None, socket.gethostname()) else None
    for claimed, role, ours in ((pid, f"worker {worker}", process is not None),
                                (trainer, f"trainer (run {beat.get('run_id')})", _descends(trainer, process))):
        if claimed:
            (found if ours else unverified)[claimed] = role


def _pid(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**22 else None


def _worker_process(pid: int | None) -> psutil.Process | None:
    """The process at ``pid`` when it runs an otweb worker (``otweb worker`` or ``-m webapp.cli worker``)."""
    if pid is None:
        return None
    try:
        process = psutil.Process(pid)
    except psutil.Error:
        return None
    words = _cmdline(process)
    named = any(w.endswith("otweb") or w == "webapp.cli" for w in words)
    return process if named and "worker" in words else None


def _descends(pid: int | None, ancestor: psutil.Process | None) -> bool:
    if pid is None or ancestor is None:
        return False
    try:
        return any(parent.pid == ancestor.pid for parent in psutil.Process(pid).parents())
    except psutil.Error:
        return False


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def _describe(pid: int, role: str) -> dict:
    # kept between requests: cpu_percent(None) is the share since the previous call, without a wait
    known = current_app.extensions.setdefault("system_processes", {})
    try:
        process = known.get(pid)
        if process is None or not process.is_running():
            process = known[pid] = psutil.Process(pid)
        with process.oneshot():
            return {"pid": pid, "role": role, "name": process.name(), "running": True,
                    "rss": process.memory_info().rss, "cpu_percent": process.cpu_percent(interval=None),
                    "threads": process.num_threads(), "started": process.create_time()}
    except psutil.NoSuchProcess:
        known.pop(pid, None)
        return {"pid": pid, "role": role, "running": False, "note": "not running"}
    except psutil.Error as exc:  # e.g. Redis on another host, or another user's process
        return {"pid": pid, "role": role, "running": None, "note": f"not readable here: {type(exc).__name__}"}


# -- routes ------------------------------------------------------------------------------------

def sparklines(history: list[dict]) -> dict:
    lines = {"cpu": percent_sparkline([p["cpu"] for p in history]),
             "ram": percent_sparkline([p["ram"] for p in history])}
    for index in range(max((len(p["gpu"]) for p in history), default=0)):
        lines[f"gpu{index}"] = percent_sparkline([(p["gpu"] + [None] * 8)[index] for p in history])
        lines[f"gpu_mem{index}"] = percent_sparkline([(p["gpu_mem"] + [None] * 8)[index] for p in history])
    return lines

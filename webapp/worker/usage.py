"""What each rank of the running trainer uses: memory and CPU of its process (psutil), and its
GPU's memory and utilisation when NVIDIA's management library is installed. Sent in the worker's
heartbeat; the run page shows it per rank."""
from __future__ import annotations

import psutil

_processes: dict[int, psutil.Process] = {}  # kept, so cpu_percent measures since the last beat


def rank_usage(pids: list[int]) -> list[dict]:
    usage = []
    for rank, pid in enumerate(pids or []):
        entry = {"rank": rank, "pid": pid, "rss": None, "cpu_percent": None}
        try:
            process = _processes.setdefault(pid, psutil.Process(pid))
            entry.update(rss=process.memory_info().rss, cpu_percent=process.cpu_percent(None))
        except (psutil.Error, OSError):
            _processes.pop(pid, None)
        usage.append(entry)
    for pid in set(_processes) - set(pids or []):
        _processes.pop(pid, None)
    _add_gpu_usage(usage)
    return usage


def _add_gpu_usage(usage: list[dict]) -> None:
    """Per rank, the memory its process holds on a GPU and that GPU's utilisation."""
    try:
        import pynvml
        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no library or no driver: CPU figures only
        return
    by_pid = {entry["pid"]: entry for entry in usage}
    for index in range(pynvml.nvmlDeviceGetCount()):
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            entry = by_pid.get(proc.pid)
            if entry is not None:
                entry.update(gpu=index, gpu_memory=proc.usedGpuMemory,
                             gpu_util=pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)

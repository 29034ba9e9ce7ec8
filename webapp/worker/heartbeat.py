"""What a worker tells the fleet every second: who and where it is, its GPUs, its run, and
whether its events wait in the spool. A Redis key with a TTL: when it lapses, the control plane
marks the worker's run interrupted."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from functools import cache
from importlib import metadata

GPU_QUERY_EVERY_S = 5.0
NVIDIA_SMI_FIELDS = "name,memory.total,memory.used,utilization.gpu"


@cache  # read once: parsing the package's metadata every beat was most of an idle worker's CPU
def version() -> str:
    try:
        return metadata.version("onetrainer-web")
    except metadata.PackageNotFoundError:
        return "dev"


class GpuProbe:
    """nvidia-smi, asked at most every few seconds (it takes ~50 ms); nothing where it is absent."""

    def __init__(self):
        self.command = shutil.which("nvidia-smi")
        self.cached: list[dict] = []
        self.asked_at = 0.0

    def gpus(self) -> list[dict]:
        if self.command is None or time.monotonic() - self.asked_at < GPU_QUERY_EVERY_S:
            return self.cached
        self.asked_at = time.monotonic()
        try:
            out = subprocess.run([self.command, f"--query-gpu={NVIDIA_SMI_FIELDS}", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=5, check=True).stdout
        except (OSError, subprocess.SubprocessError):
            self.cached = []
            return self.cached
        self.cached = [gpu for line in out.strip().splitlines() if (gpu := parse_gpu_line(line))]
        return self.cached


def parse_gpu_line(line: str) -> dict | None:
    parts = [part.strip() for part in line.split(",")]
    if len(parts) != 4:
        return None

    def number(text):
        try:
            return float(text)
        except ValueError:
            return None  # "[N/A]" on some boards
    return {"name": parts[0], "memory_total_mb": number(parts[1]), "memory_used_mb": number(parts[2]),
            "utilization": number(parts[3])}


def beat(name: str, labels, host, spooled: int, connected: bool, gpus: list[dict], draining: bool) -> dict:
    # no token: the worker's Redis user is what proves who wrote it (control/identities.py)
    return {"name": name, "host": socket.gethostname(), "pid": os.getpid(), "version": version(),
            "labels": list(labels), "gpus": gpus, "time": time.time(),
            "run_id": host.run_id if host else None, "trainer_pid": host.pid if host else None,
            "catching_up": host.catching_up() if host else 0, "step": host.bridge.newest_step if host else None,
            "spooled": spooled, "reconnecting": bool(spooled) or not connected, "draining": draining}

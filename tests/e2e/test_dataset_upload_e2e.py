"""Issue 28, upload: a chunked upload through gunicorn (gevent) whose connection drops half-way
through a chunk resumes from what arrived: the client (`otweb dataset push`'s code) asks, and only
the missing chunks are sent; then `otweb dataset push` itself, with an API token."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from urllib.parse import urlsplit

import pytest

from support import dataset_files as df
from support.servers import serve_web
from webapp.cli import dataset as push
from webapp.store import accounts

CHUNK = 256 * 1024


class Recording(push.Api):
    """The CLI's client, keeping each chunk's (file, offset) it sends."""

    def __init__(self, url, token):
        super().__init__(url, token)
        self.sent = []

    def call(self, method, path, body=None, json_body=None):
        if method == "PUT":
            self.sent.append(tuple(int(part) for part in path.rsplit("/", 2)[1:]))
        return super().call(method, path, body, json_body)


def dropped_put(url: str, path: str, token: str, body: bytes, declared: int) -> None:
    """A PUT whose connection closes after part of its body, as a link that drops."""
    where = urlsplit(url)
    with socket.create_connection((where.hostname, where.port), timeout=10) as conn:
        conn.sendall((f"PUT {path} HTTP/1.1\r\nHost: {where.netloc}\r\nAuthorization: Bearer {token}\r\n"
                      f"Content-Type: application/octet-stream\r\nContent-Length: {declared}\r\n\r\n").encode() + body)


@pytest.fixture(scope="module")
def server(tmp_path_factory, redis_url, redis_server):
    workspace = tmp_path_factory.mktemp("ws")
    (workspace / "configs").mkdir()
    conn = accounts.connect(workspace / "otweb.sqlite3")
    _, token = accounts.create_token(conn, "pusher", role="operator")
    conn.close()
    env = {"OTWEB_WORKSPACE": str(workspace), "OTWEB_CONFIG_DIR": str(workspace / "configs"), "REDIS_URL": redis_url}
    with serve_web(env) as url:
        yield url, token, workspace


def test_a_dropped_upload_resumes_with_only_the_missing_chunks(server, tmp_path):
    url, token, workspace = server
    source = tmp_path / "faces"
    source.mkdir()
    (source / "big.png").write_bytes(df.image_bytes(600, 600))  # about 1 MB of noise: 5 chunks
    (source / "big.txt").write_text("a noisy square")
    found = push.listed(source)
    files = [{"path": rel, "size": path.stat().st_size} for rel, path in found]
    api, memory = push.Api(url, token), tmp_path / "memory.json"
    assert api.call("POST", "/api/datasets", json_body={"name": "faces"})[0] == 201
    state = push.opened(api, "faces", files, memory)
    big = (source / "big.png").read_bytes()
    base = f"/api/datasets/faces/uploads/{state['id']}/0"
    assert api.call("PUT", f"{base}/0", body=big[:CHUNK])[1]["received"] == CHUNK
    dropped_put(url, f"{base}/{CHUNK}", token, big[CHUNK:CHUNK + CHUNK // 2], CHUNK)

    resumed = Recording(url, token)
    state = push.opened(resumed, "faces", files, memory)  # the same files: the same upload
    assert state["files"][0]["received"] in (CHUNK, CHUNK + CHUNK // 2)  # what arrived, whole or not
    push.send(resumed, "faces", state, dict(found), chunk=CHUNK)
    received = state["files"][0]["received"]
    assert resumed.sent == [(0, offset) for offset in range(received, len(big), CHUNK)] + [(1, 0)]
    final = push.checked(api, "faces", state["id"])
    assert final["complete"] and final["stored"] == 2
    assert (workspace / "datasets" / "faces" / "big.png").read_bytes() == big


def test_otweb_dataset_push(server, tmp_path):
    url, token, workspace = server
    df.write_dataset(tmp_path / "set", 3)
    (tmp_path / "set" / "broken.png").write_bytes(df.broken_image())
    env = {**os.environ, "HOME": str(tmp_path), "OTWEB_TOKEN": token}
    done = subprocess.run([sys.executable, "-m", "webapp.cli", "dataset", "push", str(tmp_path / "set"), "people", "--url", url],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr  # the broken image is reported
    assert "6 files stored in people" in done.stdout and "broken.png" in done.stderr
    assert sorted(os.listdir(workspace / "datasets" / "people")) == [f"img000{n}.{s}" for n in range(3) for s in ("png", "txt")]

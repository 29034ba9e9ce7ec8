"""A hostile worker for the noisy-neighbour benchmark (issue 26 §4): it holds one valid assignment,
as a compromised GPU host would, and sends what could cost the web most: image bombs as samples
(a 13000x13000 PNG, ~160 KB), file chunks far past a file's end (a 5 GB sparse file before) and past
OTWEB_UPLOAD_MAX_MB, malformed entries, and JUNK_PER_S entries a second of junk. The web's recorder
reads all of it from Redis; the benchmark measures what everyone else sees meanwhile.

Its malformed entries are those the recorder of this version sets aside; issue 26 §3 (entry
validation, a dead-letter stream) covers the shapes that still stop it, and adds them here.
"""
from __future__ import annotations

import base64
import hashlib
import json
import struct
import threading
import time
import zlib

JUNK_PER_S = 1000
BATCH = 100           # junk entries per XADD pipeline (10 a second)
BOMB_SIDE = 13000


def png_bomb(side: int = BOMB_SIDE) -> bytes:
    """A grayscale PNG of side x side zero pixels: ~160 KB on disk, side² bytes decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    squeeze, row = zlib.compressobj(9), b"\0" * (side + 1)
    body = b"".join(squeeze.compress(row * 100) for _ in range(side // 100)) + squeeze.compress(row * (side % 100))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", body + squeeze.flush()) + chunk(b"IEND", b""))


WORKER = "hostile"


def plant(conn, run_id: int, worker: str = WORKER, redis_url: str | None = None) -> str:
    """The hostile worker's one valid assignment (the dispatcher would have made it), and its place in
    the fleet (the recorder reads its stream: only the stream of the worker a run is assigned to)."""
    from webapp import store
    source = f"hostile{run_id}"
    assert store.assignments.assign(conn, run_id, worker, source)
    if redis_url:
        from redis import Redis

        from webapp.settings import WORKERS_KEY
        Redis.from_url(redis_url).sadd(WORKERS_KEY, worker)
    return source


class HostileWorker:
    """Runs in a thread of the benchmark process: ``start``, then ``stop`` returns what it sent."""

    def __init__(self, redis_url: str, run_id: int, source: str, worker: str = WORKER):
        from redis import Redis

        from webapp.settings import worker_stream
        self.redis = Redis.from_url(redis_url, decode_responses=True)
        self.stream = worker_stream(worker)  # its own stream: the only one its Redis user may write
        self.run_id, self.source, self.n = run_id, source, 0
        self.sent = {"junk": 0, "bombs": 0, "sparse": 0, "oversized": 0}
        bomb = png_bomb()
        self.bomb = {"k": "file", "mode": "whole", "offset": 0, "size": len(bomb), "last": True,
                     "sha256": hashlib.sha256(bomb).hexdigest(), "data": base64.b64encode(bomb).decode("ascii")}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="hostile-worker", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> dict:
        self.stopping.set()
        self.thread.join(timeout=60)
        return dict(self.sent)

    def _loop(self) -> None:
        started, second = time.monotonic(), -1
        for i in range(10**9):
            due = started + i * BATCH / JUNK_PER_S
            if self.stopping.wait(max(0.0, due - time.monotonic())):
                return
            if int(due - started) != second:  # once a second: a bomb, a sparse chunk, an oversized file
                second = int(due - started)
                self._attacks(second)
            self._junk(BATCH)

    def _entry(self, body: dict, raw: bool = False) -> dict:
        from webapp.eventlog import FIELD
        self.n += 1
        if raw:
            return {FIELD: body} if isinstance(body, str) else body
        return {FIELD: json.dumps({"run": self.run_id, "src": self.source, "n": self.n, **body})}

    def _xadd(self, entries: list[dict]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for fields in entries:
            pipe.xadd(self.stream, fields)
        pipe.execute()

    def _attacks(self, second: int) -> None:
        path = f"samples/default/bomb-{second}.png"
        far = {"k": "file", "mode": "whole", "offset": 5_000_000_000, "size": 5_000_000_004, "sha256": "0" * 64,
               "last": True, "data": "AAAAAA=="}
        self._xadd([self._entry({**self.bomb, "path": path}),
                    self._entry({"k": "event", "event": "sample_default", "data": {"path": path, "prompt": "boom"},
                                 "time": time.time()}),
                    self._entry({**far, "path": f"models/sparse-{second}.safetensors"}),
                    self._entry({**far, "path": "trainer.log", "mode": "append"}),
                    self._entry({**far, "path": f"models/huge-{second}.bin", "offset": 0})])
        self.sent["bombs"] += 1
        self.sent["sparse"] += 2
        self.sent["oversized"] += 1

    def _junk(self, count: int) -> None:
        shapes = [lambda: self._entry("not json", raw=True),
                  lambda: self._entry({"x": "no field e"}, raw=True),
                  lambda: self._entry({"k": "nonsense"}),
                  lambda: self._entry({"k": "event", "event": "log", "data": {"text": "x" * 200}, "time": 1.0,
                                       "src": "forged-assignment"}),
                  lambda: self._entry({"k": "file", "path": "../../escape", "mode": "whole", "offset": 0, "size": 1,
                                       "sha256": "0", "last": True, "data": "QQ=="}),
                  lambda: self._entry({"k": "file", "path": "models/b.bin", "mode": "whole", "offset": 0, "size": 4,
                                       "sha256": "0", "last": True, "data": "!!not base64!!"})]
        self._xadd([shapes[i % len(shapes)]() for i in range(count)])
        self.sent["junk"] += count

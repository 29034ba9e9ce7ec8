"""Noisy neighbour: what one busy or greedy user costs everyone else (issue #16, point 2).

One gunicorn gevent worker (the product's command line), accounts on. Three phases of SECONDS each,
in the same run:
  A (baseline): a probe requests the dashboard at RATE/s (open loop: latency from each request's
    due time), and a watcher's SSE stream receives a log event every 1/EVENTS_PER_S s, emitted by
    this process through the event log (latency = received - emitted).
  B (noise): the same probe and watcher while 10 sessions open the config editor on a concept of
    FILES files (recursive) over and over, each following the editor's "scanning…" placeholder as
    htmx does, one client opens 100 live streams at once, and one sends issue 27's hostile requests
    (1 MB of ``{}`` concepts to validate, a run queued on the huge folder, a 1 MB prompt) once a second.
Reported: dashboard p50/p99 and SSE delivery p50/p99 in each phase and B/A; how many of the 100
  C (hostile worker, issue 26 §4): the same probe and watcher while a worker holding one valid
    assignment sends a 13000x13000 PNG bomb sample, chunks at offset 5e9 and a file past
    OTWEB_UPLOAD_MAX_MB every second, and 1,000 malformed or junk entries a second
    (hostile_worker.py); the web's recorder reads them all.
Reported: dashboard p50/p99 and SSE delivery p50/p99 in each phase, B/A and C/A; how many of the 100
streams were accepted (the per-user cap) and refused with 429; how long the scan took; and, for
scale, how long the same scan blocks when done inline (what each editor view cost before); gevent's
monitor thread's reports of the event loop blocked over 50 ms (goal 0), in phase C on its own.

    .venv/bin/python benchmarks/bench_noisy_neighbour.py [--seconds 10] [--files 50000]
"""
from __future__ import annotations

import argparse
import http.client
import json
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Bench, machine, pct, table, wait_http, write_results  # noqa: E402
from hostile_worker import WORKER, HostileWorker, plant  # noqa: E402

NAME = "bench_noisy_neighbour"
RATE, EVENTS_PER_S, EDITORS, GREEDY_STREAMS = 20, 10, 10, 100
THINK_S = 1.0  # between one session's editor views
BLOCKED_S = 0.05


def make_dataset(workspace: Path, files: int) -> Path:
    root = workspace / "datasets" / "huge"
    per_folder = 1000
    for n in range(0, files, per_folder):
        folder = root / f"part{n // per_folder:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(min(per_folder, files - n)):
            (folder / f"{i:04d}.png").touch()
    return root


def accounts(bench: Bench) -> dict:
    from webapp.store import accounts as store
    conn = store.connect(bench.database)
    tokens = {}
    for name, role in (("probe", "viewer"), ("editor", "operator"), ("greedy", "viewer")):
        store.add_user(conn, name, "bench password", role)
        tokens[name] = store.create_token(conn, f"{name}-token", user=name)[1]
    conn.close()
    return tokens


def get(host: str, port: int, path: str, token: str, timeout: float = 30) -> tuple[int, str]:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}", "Accept": "text/html"})
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        conn.close()


def probe(host, port, token, seconds, out: list) -> None:
    start = time.monotonic()
    for i in range(int(seconds * RATE)):
        due = start + i / RATE
        time.sleep(max(0.0, due - time.monotonic()))
        status, _ = get(host, port, "/", token)
        out.append((time.monotonic() - due, status, due - start))


def watcher(host, port, token, stop: threading.Event, out: list, ready: threading.Event) -> None:
    sock = socket.create_connection((host, port))
    sock.sendall((f"GET /api/events HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
                  "Accept: text/event-stream\r\n\r\n").encode())
    sock.settimeout(0.5)
    buffer = b""
    ready.set()
    while not stop.is_set():
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            break
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.startswith(b"data: {") and b'"bench"' in line:
                data = json.loads(line[6:])
                out.append(time.time() - data["data"]["sent"])
    sock.close()


def emitter(sink, run_id: int, seconds: float) -> None:
    from webapp.protocol import Event, make_event
    start = time.monotonic()
    for i in range(int(seconds * EVENTS_PER_S)):
        time.sleep(max(0.0, start + i / EVENTS_PER_S - time.monotonic()))
        sink.emit(run_id, make_event(Event.LOG, message=f"bench {i}", level="info", bench=True, sent=time.time()))


def editor_session(host, port, token, stop: threading.Event, out: dict) -> None:
    while not stop.is_set():
        started = time.monotonic()
        status, page = get(host, port, "/configs/huge/edit", token, timeout=120)
        out["views"] += 1
        out["statuses"][status] = out["statuses"].get(status, 0) + 1
        while 'hx-get="' in page and "scanning…" in page and not stop.is_set():
            time.sleep(0.4)  # the placeholder's hx-trigger delay
            url = page.split('hx-get="')[1].split('"')[0].replace("&amp;", "&")
            status, page = get(host, port, url, token, timeout=120)
        if "images" in page:
            out["figures_s"].append(time.monotonic() - started)
        stop.wait(THINK_S)  # a person reads the page before opening it again


def greedy(host, port, token) -> tuple[list, dict]:
    socks, statuses = [], {}
    for _ in range(GREEDY_STREAMS):
        sock = socket.create_connection((host, port))
        sock.sendall((f"GET /api/events HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
                      "Accept: text/event-stream\r\n\r\n").encode())
        sock.settimeout(10)
        status = int(sock.recv(1024).split(b" ", 2)[1])
        statuses[status] = statuses.get(status, 0) + 1
        socks.append(sock)
    return socks, statuses


def send(host, port, method: str, path: str, token: str, body: bytes) -> tuple[int, float]:
    conn = http.client.HTTPConnection(host, port, timeout=120)
    started = time.monotonic()
    try:
        conn.request(method, path, body=body, headers={"Authorization": f"Bearer {token}",
                                                       "Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        return response.status, time.monotonic() - started
    finally:
        conn.close()


def hostile_requests(host, port, tokens, stop: threading.Event, out: dict) -> None:
    """Issue 27's requests that each did unbounded work before an answer, over and over: a viewer's
    1 MB of ``{}`` concepts to validate (15 s of the loop before), an operator queuing a run on the
    huge folder (its dataset fingerprint: 0.8-1.2 s of the loop before), a 1 MB sample prompt."""
    empty = b'{"concepts": [' + b",".join([b"{}"] * 349_000) + b"]}"
    queue = json.dumps({"config_name": "huge"}).encode()
    prompt = json.dumps({"prompt": "x" * 1_000_000}).encode()
    requests = (("validate 1 MB of {}", "POST", "/api/config/validate", "probe", empty),
                ("queue on the huge folder", "POST", "/api/queue", "editor", queue),
                ("1 MB prompt", "POST", "/api/samples/custom", "editor", prompt))
    while not stop.is_set():
        for name, method, path, who, body in requests:
            status, took = send(host, port, method, path, tokens[who], body)
            seen = out.setdefault(name, {"statuses": {}, "max_s": 0.0})
            seen["statuses"][status] = seen["statuses"].get(status, 0) + 1
            seen["max_s"] = max(seen["max_s"], took)
        stop.wait(THINK_S)


def phase(bench, url, tokens, sink, run_id, seconds, noisy: bool, hostile=None) -> dict:
    host, port = url.split("//")[1].split(":")
    port = int(port)
    pages, deliveries, stop, ready = [], [], threading.Event(), threading.Event()
    watch = threading.Thread(target=watcher, args=(host, port, tokens["probe"], stop, deliveries, ready), daemon=True)
    watch.start()
    ready.wait(10)
    time.sleep(0.5)
    editors, socks, greedy_statuses = {"views": 0, "statuses": {}, "figures_s": []}, [], {}
    threads, hostile_seen = [], {}
    if noisy:
        socks, greedy_statuses = greedy(host, port, tokens["greedy"])
        threads = [threading.Thread(target=editor_session, args=(host, port, tokens["editor"], stop, editors),
                                    daemon=True) for _ in range(EDITORS)]
        threads.append(threading.Thread(target=hostile_requests, args=(host, port, tokens, stop, hostile_seen), daemon=True))
        for thread in threads:
            thread.start()
    if hostile is not None:
        hostile.start()
    probing = threading.Thread(target=probe, args=(host, port, tokens["probe"], seconds, pages))
    probing.start()
    emitter(sink, run_id, seconds)
    probing.join()
    sent = hostile.stop() if hostile is not None else None
    time.sleep(1.0)
    stop.set()
    for thread in threads + [watch]:
        thread.join(timeout=120)
    for sock in socks:
        sock.close()
    latencies = [lat for lat, _, _ in pages]
    # the tail's shape: the slowest requests and when in the phase they were due
    slowest = sorted(((round(lat * 1e3, 1), round(at, 2)) for lat, _, at in pages), reverse=True)[:5]
    return {"page_p50": pct(latencies, 50), "page_p99": pct(latencies, 99), "page_errors": sum(s >= 500 for _, s, _ in pages),
            # after the first second: the greedy client's 100 connections and the 10 sessions' first
            # views all land in the phase's first 0.3 s
            "page_p99_after_1s": pct([lat for lat, _, at in pages if at >= 1.0], 99),
            "slowest_pages_ms_at_s": slowest,
            "sse_p50": pct(deliveries, 50), "sse_p99": pct(deliveries, 99), "sse_received": len(deliveries),
            "sse_expected": int(seconds * EVENTS_PER_S), "editor_views": editors["views"],
            "editor_statuses": editors["statuses"], "figures_s_max": max(editors["figures_s"], default=None),
            "greedy_streams": greedy_statuses, "hostile_requests": hostile_seen, "hostile_sent": sent}



def hostile_phase(bench, url, tokens, sink, conn, seconds, log_path: Path) -> dict:
    """C: the probe and the watcher while a hostile worker (hostile_worker.py) sends bombs, sparse and
    oversized files, malformed entries and 1,000 junk entries a second into its own run; with the
    event-loop blocks gevent's monitor reported during this phase alone, what the web refused, the
    disk its run folder takes, and the stream's backlog at the end (whether the recorder kept up)."""
    from redis import Redis

    from webapp import store
    from webapp.settings import worker_stream
    run_id = store.create_run(conn, "hostile", {"resolution": "512"})
    worker = HostileWorker(bench.env["REDIS_URL"], run_id, plant(conn, run_id, redis_url=bench.env["REDIS_URL"]))
    at = log_path.stat().st_size
    result = phase(bench, url, tokens, sink, run_id, seconds, noisy=False, hostile=worker)
    with open(log_path, "rb") as fh:
        fh.seek(at)
        result["loop_blocked_over_50ms"] = blocking_reports(fh.read().decode("utf-8", "replace"))
    warnings = conn.execute("SELECT count(*) FROM events WHERE run_id = ? AND name = 'log' AND "
                            "json_extract(data, '$.text') LIKE 'refused%'", (run_id,)).fetchone()[0]
    folder = bench.workspace / "runs" / str(run_id)
    result.update(refused_warnings=warnings, run_folder_disk_bytes=sum(
        p.stat().st_blocks * 512 for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0,
        stream_backlog_at_end=Redis.from_url(bench.env["REDIS_URL"]).xlen(worker_stream(WORKER)))
    return result


def blocking_reports(log: str) -> dict:
    """gevent's monitor reports about the event loop: how many, how many in a dataset scan's file
    I/O, and where in our code (the innermost frame of webapp/ or templates/) the loop was each time.
    Reports whose "blocked stack" is the monitor thread itself or a pool thread are about the hub of a
    pool thread (a scan or a thumbnail doing its blocking work where it should), not the event loop:
    they are counted apart."""
    reports = log.split("appears to be blocked")[1:]
    where: dict[str, int] = {}
    scans = pool_threads = 0
    for text in reports:
        # only the blocked thread's stack: the report goes on to dump every thread (the scans' too)
        blocked = text.split("Blocked Stack", 1)[-1].split("\nInfo:", 1)[0]
        frames = [line.strip() for line in blocked.split("\n") if line.strip().startswith("File ")]
        if frames and ("gevent/_monitor.py" in frames[-1] or any("gevent/threadpool.py" in f for f in frames)):
            pool_threads += 1
            continue
        ours = [line for line in frames if "/webapp/" in line or "/templates/" in line]
        scans += any("datasets.py" in line or "os.walk" in line for line in ours)
        key = ours[-1].split("/")[-1][:90] if ours else (frames[-1].split("site-packages/")[-1][:90] if frames else "?")
        where[key] = where.get(key, 0) + 1
    top = dict(sorted(where.items(), key=lambda item: -item[1])[:5])
    return {"reports": len(reports) - pool_threads, "in_file_io": scans, "where": top,
            "pool_thread_reports": pool_threads}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--files", type=int, default=50_000)
    args = parser.parse_args()
    from redis import Redis

    from webapp import store
    from webapp.config.datasets import folder_stats
    from webapp.eventlog import EventSink
    with Bench() as bench:
        make_dataset(bench.workspace, args.files)
        (bench.workspace / "models" / "stand-in").mkdir(parents=True)  # a run on it can be queued (no worker)
        (bench.config_dir / "huge.json").write_text(json.dumps(
            {"base_model_name": "models/stand-in", "concepts": [{"path": "datasets/huge", "include_subdirectories": True}]}))
        tokens = accounts(bench)
        # gevent's monitor thread reports every stretch the event loop stays blocked longer than this
        bench.env.update(GEVENT_MONITOR_THREAD_ENABLE="1", GEVENT_MAX_BLOCKING_TIME=str(BLOCKED_S))
        bench.redis()
        web, url = bench.web()
        wait_http(url + "/api/health", proc=web)
        conn = store.connect(bench.database)
        run_id = store.create_run(conn, "noisy", {})
        sink = EventSink(conn, Redis.from_url(bench.env["REDIS_URL"], decode_responses=True))
        started = time.monotonic()
        inline = folder_stats({"path": "datasets/huge", "include_subdirectories": True}, bench.workspace)
        inline_s = time.monotonic() - started
        quiet = phase(bench, url, tokens, sink, run_id, args.seconds, noisy=False)
        noisy = phase(bench, url, tokens, sink, run_id, args.seconds, noisy=True)
        port = url.rsplit(":", 1)[1]
        blocked = blocking_reports((bench.tmp / f"web-{port}.log").read_text(errors="replace"))
        hostile = hostile_phase(bench, url, tokens, sink, conn, args.seconds, bench.tmp / f"web-{port}.log")
        conn.close()
    ratio = {key: (noisy[key] / quiet[key]) if quiet[key] else None
             for key in ("page_p99", "page_p99_after_1s", "sse_p99")}
    hostile_ratio = {key: (hostile[key] / quiet[key]) if quiet[key] else None for key in ("page_p99", "sse_p99")}
    result = {"machine": machine(), "files": args.files, "seconds": args.seconds, "inline_scan_s": inline_s,
              "inline_scan_images": inline.images, "quiet": quiet, "noisy": noisy, "ratio": ratio,
              "loop_blocked_over_50ms": blocked, "hostile": hostile, "hostile_ratio": hostile_ratio}
    print(table(["phase", "page p50", "page p99", "SSE p50", "SSE p99", "SSE got", "editor views", "100 streams"],
                [[name, f"{r['page_p50'] * 1e3:.1f} ms", f"{r['page_p99'] * 1e3:.1f} ms",
                  f"{(r['sse_p50'] or 0) * 1e3:.1f} ms", f"{(r['sse_p99'] or 0) * 1e3:.1f} ms",
                  f"{r['sse_received']}/{r['sse_expected']}", r["editor_views"], r["greedy_streams"]]
                 for name, r in (("quiet", quiet), ("noisy", noisy), ("hostile worker", hostile))]))
    print(f"B/A: page p99 {ratio['page_p99']:.2f}x ({ratio['page_p99_after_1s']:.2f}x after the first second: "
          f"{quiet['page_p99_after_1s'] * 1e3:.1f} -> {noisy['page_p99_after_1s'] * 1e3:.1f} ms), SSE p99 {ratio['sse_p99']:.2f}x; "
          f"one inline scan of {inline.images} images: {inline_s * 1e3:.0f} ms; event loop blocked "
          f"> {BLOCKED_S * 1e3:.0f} ms: {blocked['reports']} times, {blocked['in_file_io']} of them in a dataset scan")
    for name, seen in noisy["hostile_requests"].items():
        print(f"hostile: {name}: {seen['statuses']}, slowest answer {seen['max_s'] * 1e3:.0f} ms")
    print(f"C/A (hostile worker, sent {hostile['hostile_sent']}): page p99 {hostile_ratio['page_p99']:.2f}x, "
          f"SSE p99 {hostile_ratio['sse_p99']:.2f}x; event loop blocked > {BLOCKED_S * 1e3:.0f} ms: "
          f"{hostile['loop_blocked_over_50ms']['reports']} times {hostile['loop_blocked_over_50ms']['where']}; "
          f"refused with a warning: {hostile['refused_warnings']}; its run folder on disk: "
          f"{hostile['run_folder_disk_bytes'] / 1e6:.1f} MB; stream backlog at the end: {hostile['stream_backlog_at_end']}")
    print(write_results(NAME, result))


if __name__ == "__main__":
    main()

"""Page latency at a constant 100 requests/s: dashboard, run page, config editor, against a static file.

The web is the product's own gunicorn gevent command line (one worker), on a workspace that holds
realistic data, written through webapp.store and the config library (no training): a finished run
with RUN_LOSSES loss values, samples, log lines and a final output; a running run with its own
history, progress, samples and log (the dashboard shows it); QUEUED runs waiting; CONFIGS configs.

The load comes from a process of its own (this file, ``--load``): an OPEN-LOOP generator in
asyncio with raw HTTP/1.1 keep-alive sockets. Request i is due at t0 + i / rate whatever happened
to the earlier ones (a new connection when no idle one is free), and its latency is measured from
that DUE time, not from when it was sent, so a stall shows up in every request it delays (no
coordinated omission). Each URL: a short warm-up, then SECONDS at RATE; the static file
``/static/app.css`` first, as the baseline of the same run (same server, same sockets, no app code).
Also per URL: the mean service time of sequential requests (what one request costs), the web
worker's CPU, and the machine's foreign load (CPU used by processes that are not ours).

    .venv/bin/python benchmarks/bench_pages.py [--rate 100] [--seconds 15]

Goal (issue #10, 4): dashboard, run page and config editor p99 < 25 ms at 100 requests/s.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

NAME = "bench_pages"
GOAL_P99_S = 0.025
RUN_LOSSES, RUNNING_LOSSES, SAMPLES, LOG_LINES, QUEUED, CONFIGS = 5000, 2000, 48, 300, 3, 4
WARMUP, SEQUENTIAL = 30, 50


# -- the load generator (a process of its own) -----------------------------------------------------

async def _read_response(reader: asyncio.StreamReader) -> tuple[int, int, bool]:
    """(status, body bytes, keep-alive) of one HTTP/1.1 response."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    if "content-length" in headers:
        size = int(headers["content-length"])
        await reader.readexactly(size)
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        size = 0
        while True:
            chunk = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(chunk + 2)
            size += chunk
            if chunk == 0:
                break
    else:
        size = len(await reader.read())
        return status, size, False
    return status, size, headers.get("connection", "").lower() != "close"


async def _load(url: str, path: str, rate: float, seconds: float, warmup: int, sequential: int) -> dict:
    host, port = url.split("//")[1].split(":")
    request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/html,*/*\r\n"
               "Accept-Encoding: identity\r\nUser-Agent: bench_pages\r\n\r\n").encode()
    loop = asyncio.get_running_loop()
    idle: list = []

    async def fetch() -> tuple[int, int]:
        for attempt in (0, 1):  # a kept-alive socket the server closed meanwhile: once more, on a new one
            reused = attempt == 0 and bool(idle)
            reader, writer = idle.pop() if reused else await asyncio.open_connection(host, int(port))
            try:
                writer.write(request)
                status, size, keep = await _read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()
                if reused and attempt == 0:
                    continue
                raise
            if keep:
                idle.append((reader, writer))
            else:
                writer.close()
            return status, size
        raise ConnectionError("unreachable")

    for _ in range(warmup):
        await fetch()
    service = []
    for _ in range(sequential):  # one at a time: what a request costs when nothing waits
        started = loop.time()
        await fetch()
        service.append(loop.time() - started)

    count = int(rate * seconds)
    t0 = loop.time() + 0.05
    results: list = [None] * count

    async def one(i: int) -> None:
        due = t0 + i / rate
        await asyncio.sleep(max(0.0, due - loop.time()))
        try:
            status, size = await fetch()
            results[i] = [loop.time() - due, status, size]
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            results[i] = [loop.time() - due, f"{type(exc).__name__}: {exc}", 0]

    started_wall = time.time()
    await asyncio.gather(*(one(i) for i in range(count)))
    elapsed = loop.time() - t0
    for reader, writer in idle:
        writer.close()
    return {"results": results, "service": service, "elapsed_s": elapsed, "started": started_wall,
            "connections_at_end": len(idle)}


def load_main(args) -> None:
    out = asyncio.run(_load(args.load[0], args.load[1], args.rate, args.seconds, WARMUP, SEQUENTIAL))
    Path(args.out).write_text(json.dumps(out))


# -- the workspace ------------------------------------------------------------------------------

def populate(bench) -> dict:
    """Configs, a finished run, a running run and queued runs, as the worker and library write them."""
    from webapp import store
    from webapp.config.library import ConfigLibrary
    from webapp.trainer.demo import demo_config  # plain dicts: no torch
    from webapp.protocol import Event, make_event

    library = ConfigLibrary(bench.config_dir)
    names = ["demo"] + [f"demo-variant-{i}" for i in range(1, CONFIGS)]
    for i, name in enumerate(names):
        config = demo_config()
        config["learning_rate"] = 1e-4 * (i + 1)
        library.save(name, config, create=True)
    conn = store.connect(bench.database)
    store.init_schema(conn)

    def emit(run_id, name, **data):
        return store.append_event(conn, run_id, make_event(name, **data))

    def history(run_id: int, steps: int, finished: bool) -> None:
        run_dir = bench.workspace / "runs" / str(run_id)
        (run_dir / "samples").mkdir(parents=True, exist_ok=True)
        started = time.time() - steps / 20
        emit(run_id, Event.RUN, state="running", pid=os.getpid())
        store.append_metrics(conn, run_id, [(s, 1.0 / s ** 0.5 + 0.01 * (s % 7), 1e-4 * (1 - s / (steps * 2)),
                                             started + s / 20) for s in range(1, steps + 1)])
        for i in range(LOG_LINES):
            emit(run_id, Event.LOG, text=f"step {i * steps // LOG_LINES}: loss {1.0 / (i + 1):.4f} some trainer output")
        for i in range(SAMPLES):
            path = run_dir / "samples" / f"{i:04d}.png"
            path.write_bytes(b"\x89PNG\r\n\x1a\n")  # the pages link images; they do not read them
            emit(run_id, Event.SAMPLE_DEFAULT, path=str(path), prompt=f"a photo of sks dog, sample {i}",
                 global_step=(i + 1) * steps // SAMPLES, epoch=0, seed=i, cfg_scale=7.0, steps=20)
        step = steps
        emit(run_id, Event.PROGRESS, global_step=step, max_step=steps * (1 if finished else 2), epoch=0, max_epoch=1,
             epoch_step=step, epoch_length=steps, loss=1.0 / step ** 0.5, lr=1e-4, speed=20.0, eta_s=steps / 20,
             smooth_loss=1.0 / step ** 0.5)
        if finished:
            output = run_dir / "output.safetensors"
            output.write_bytes(b"\0" * 1024)
            emit(run_id, Event.FINISHED, output=str(output))
            emit(run_id, Event.RUN, state="completed")

    finished = store.create_run(conn, "demo", demo_config())
    history(finished, RUN_LOSSES, True)
    running = store.create_run(conn, "demo-variant-1", demo_config())
    history(running, RUNNING_LOSSES, False)
    queued = [store.create_run(conn, names[i % len(names)], demo_config()) for i in range(QUEUED)]
    counts = {table: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
              for table in ("runs", "events", "metrics", "samples")}
    conn.close()
    return {"finished_run": finished, "running_run": running, "queued_runs": queued, "configs": names,
            "rows": counts}


# -- the benchmark ------------------------------------------------------------------------------

def measure(bench, url: str, worker, path: str, rate: float, seconds: float) -> dict:
    import psutil

    from common import PY, pct
    from cpu import busy_cpu_s
    out = bench.tmp / f"load-{time.monotonic_ns()}.json"
    ours = [worker, psutil.Process(worker.ppid()), psutil.Process(bench.redis_pid), psutil.Process()]
    proc = subprocess.Popen([PY, __file__, "--load", url, path, "--rate", str(rate), "--seconds", str(seconds),
                             "--out", str(out)], cwd=Path(__file__).parent)
    loader = psutil.Process(proc.pid)

    def cpu(processes) -> float:
        total = 0.0
        for p in processes:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    machine0, ours0, web0, start = busy_cpu_s(), cpu(ours + [loader]), cpu([worker]), time.monotonic()
    ours_last = ours0
    while proc.poll() is None:  # the loader's own CPU, read while it lives
        ours_last = cpu(ours + [loader])
        time.sleep(0.2)
    window = time.monotonic() - start
    if proc.returncode != 0:
        raise RuntimeError(f"the load generator failed for {path} ({proc.returncode})")
    web_cpu = cpu([worker]) - web0
    foreign = max(0.0, (busy_cpu_s() - machine0) - (ours_last - ours0)) / (window * (os.cpu_count() or 1))
    data = json.loads(out.read_text())
    results = data["results"]
    latencies = [r[0] for r in results]
    statuses: dict = {}
    for r in results:
        statuses[str(r[1])] = statuses.get(str(r[1]), 0) + 1
    ok = sum(1 for r in results if r[1] == 200)
    return {"path": path, "rate_per_s": rate, "seconds": seconds, "requests": len(results), "ok": ok,
            "statuses": statuses, "bytes": max((r[2] for r in results), default=0),
            "p50": pct(latencies, 50), "p90": pct(latencies, 90), "p99": pct(latencies, 99),
            "max": max(latencies, default=None), "achieved_per_s": len(results) / data["elapsed_s"],
            "service_mean": sum(data["service"]) / len(data["service"]), "service_p50": pct(data["service"], 50),
            "web_cpu_percent": 100 * web_cpu / window, "foreign_load_percent": 100 * foreign,
            "p99_by_second": [pct(latencies[i:i + int(rate)], 99) for i in range(0, len(latencies), int(rate))]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--load", nargs=2, metavar=("URL", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--only", action="append", help="measure only these pages (dashboard, run, editor, static)")
    args = parser.parse_args()
    if args.load:
        return load_main(args)

    import psutil

    from common import Bench, machine, ms, table, wait_http, write_results
    started = time.monotonic()
    with Bench() as bench:
        bench.redis()
        web, url = bench.web()
        wait_http(url + "/api/health", proc=web)
        data = populate(bench)
        worker = psutil.Process(web.pid).children()[0]
        pages = {"static": "/static/app.css", "dashboard": "/", "run": f"/runs/{data['finished_run']}",
                 "editor": f"/configs/{data['configs'][0]}/edit"}
        runs = {}
        for name, path in pages.items():
            if not args.only or name in args.only:
                runs[name] = measure(bench, url, worker, path, args.rate, args.seconds)
        rss = worker.memory_info().rss / 2 ** 20
    elapsed = time.monotonic() - started
    base = runs.get("static")
    print(f"\n## {NAME}\n\none gunicorn gevent worker; open-loop load at {args.rate:g} requests/s for "
          f"{args.seconds:g} s per URL (latency from each request's due time); workspace: {data['rows']}\n")
    print(table(["page", "URL", "ok / requests", "body bytes", "p50 ms", "p90 ms", "p99 ms", "max ms",
                 "p99 / static", "sequential mean ms", "web worker CPU %", "foreign load %"],
                [[name, r["path"], f"{r['ok']}/{r['requests']}", r["bytes"], ms(r["p50"]), ms(r["p90"]), ms(r["p99"]),
                  ms(r["max"]), f"{r['p99'] / base['p99']:.1f}" if base else "-", ms(r["service_mean"]),
                  f"{r['web_cpu_percent']:.0f}", f"{r['foreign_load_percent']:.0f}"] for name, r in runs.items()]))
    pages_measured = [r for name, r in runs.items() if name != "static"]
    worst = max((r["p99"] for r in pages_measured), default=None)
    met = bool(pages_measured) and all(r["ok"] == r["requests"] for r in pages_measured) and worst < GOAL_P99_S
    print(f"\ngoal p99 < 25 ms at {args.rate:g}/s: worst page p99 {ms(worst)} ms "
          f"(static baseline {ms(base and base['p99'])} ms) -> {'met' if met else 'NOT met'}; web worker RSS at the "
          f"end {rss:.1f} MB; load average {os.getloadavg()[0]:.1f}; took {elapsed:.0f} s")
    path = write_results(NAME, {
        "benchmark": NAME, "machine": machine(), "rate_per_s": args.rate, "seconds": args.seconds,
        "workspace": data, "pages": runs, "web_worker_rss_mb": rss,
        "goal": "dashboard, run page, config editor p99 < 25 ms at 100 requests/s", "met": met,
        "loadavg_at_end": os.getloadavg(), "elapsed_s": elapsed})
    print(f"results: {path}")


if __name__ == "__main__":
    if str(Path(__file__).resolve().parent) not in sys.path:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()

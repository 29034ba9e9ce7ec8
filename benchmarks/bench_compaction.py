"""The record's size per 1,000 demo runs before and after compaction, and what the one-time switch
to auto_vacuum costs a workspace made before it.

One real demo run (configs/demo.json as the demo builds it, trained by a worker under the web; or a
database holding one, --from), then its record copied by SQL until the workspace holds --runs runs
(the way issue 29 grew its 2,001-run workspace), then:
- the file's size (WAL checkpointed) before compaction;
- `VACUUM` to switch auto_vacuum on, timed, on the grown record made without it (as a workspace from
  before issue 29: what `otweb db compact` or the opening migration does);
- every run compacted (store.compaction.compact_all), timed, and the file's size after.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import tempfile
import time
import urllib.request
from pathlib import Path

from common import Bench, build_demo, machine, wait_demo, wait_for, wait_http, write_results

NAME = "compaction"
COPIED = {"events": "run_id, name, data, time", "metrics": "run_id, step, loss, lr, time, attempt, superseded",
          "samples": "run_id, kind, path, prompt, settings_json, global_step, epoch, created_at",
          "uploads": "run_id, path, size, sha256, at"}


def train_one(out: Path) -> Path:
    """A finished demo run's database, copied to ``out``."""
    with Bench() as bench:
        demo = build_demo(bench)
        bench.redis()
        wait_demo(bench, demo, timeout=300)
        bench.worker()
        web, url = bench.web()
        wait_http(url + "/api/health", proc=web)
        config = json.loads((bench.config_dir / "demo.json").read_text())
        request = urllib.request.Request(url + "/api/training/start", data=json.dumps({"config": config}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            run_id = json.loads(answer.read())["run_id"]

        def ended():
            with urllib.request.urlopen(f"{url}/api/runs/{run_id}", timeout=30) as answer:
                return json.loads(answer.read())["run"]["state"] not in ("queued", "running")
        wait_for(ended, 1800, every=2)
        time.sleep(3)  # the last uploads
        source = sqlite3.connect(bench.database)
        target = sqlite3.connect(out)
        source.backup(target)
        source.close()
        target.close()
    return out


def grow(path: Path, runs: int) -> dict:
    """Copies of run 1 until there are ``runs`` runs; returns one run's row counts."""
    from webapp import store
    conn = store.connect(path)
    store.init_schema(conn)
    one = {table: conn.execute(f"SELECT COUNT(*) FROM {table} WHERE run_id = 1").fetchone()[0] for table in COPIED}
    columns = [r[1] for r in conn.execute("PRAGMA table_info(runs)") if r[1] != "id"]
    with store.transaction(conn):
        for _ in range(runs - conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]):
            new = conn.execute(f"INSERT INTO runs ({', '.join(columns)}) SELECT {', '.join(columns)} FROM runs"
                               " WHERE id = 1").lastrowid
            for table, names in COPIED.items():
                order = "" if table == "uploads" else " ORDER BY rowid"  # uploads has no rowid (nor an order)
                conn.execute(f"INSERT INTO {table} ({names}) SELECT ?, {names.split(', ', 1)[1]} FROM {table}"
                             f" WHERE run_id = 1{order}", (new,))
    conn.execute("UPDATE runs SET finished_at = ? WHERE state NOT IN ('queued', 'running')", (time.time() - 3600,))
    conn.close()
    return one


def size(path: Path) -> int:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--from", dest="source", type=Path, help="a database whose run 1 is a finished demo run")
    args = parser.parse_args()
    from webapp import store
    from webapp.store import compaction
    with tempfile.TemporaryDirectory(prefix="otweb-compaction-") as tmp:
        path = Path(tmp) / "otweb.sqlite3"
        if args.source:
            shutil.copyfile(args.source, path)
        else:
            train_one(path)
            shutil.copyfile(path, Path(tempfile.gettempdir()) / "otweb-one-demo-run.sqlite3")  # for --from
        one = grow(path, args.runs)
        conn = store.connect(path)
        conn.execute("PRAGMA auto_vacuum = NONE")
        conn.execute("VACUUM")  # as a workspace made before issue 29
        before = size(path)
        switch_s = compaction.switch_auto_vacuum(conn)
        events_before = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        started = time.monotonic()
        compacted = compaction.compact_all(conn, now=time.time())
        compact_s = time.monotonic() - started
        events_after = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        conn.close()
        after = size(path)
    result = {"benchmark": NAME, "machine": machine(), "runs": args.runs, "one_run_rows": one,
              "bytes_before": before, "bytes_after": after, "events_before": events_before,
              "events_after": events_after, "runs_compacted": compacted, "compact_s": compact_s,
              "switch_auto_vacuum_s": switch_s}
    mb = 1 << 20
    print(f"\n## {NAME}\n\n{args.runs} copies of one demo run ({one}):\n"
          f"- before compaction: {before / mb:.1f} MB, {events_before} events\n"
          f"- after:             {after / mb:.1f} MB, {events_after} events ({compact_s:.1f} s to compact)\n"
          f"- switching auto_vacuum on (VACUUM) the record from before: {switch_s:.1f} s")
    print(f"results: {write_results(NAME, result)}")


if __name__ == "__main__":
    main()

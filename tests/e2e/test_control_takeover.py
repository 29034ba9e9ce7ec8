"""Several web processes, one leader: gunicorn with two workers on a real Redis; SIGKILL the one
that records and dispatches (its lock is not released), and another takes over within the lock's
TTL and records what a worker sends, once."""
from __future__ import annotations

import os
import signal
import time

import psutil
import pytest
import redis

from support.polling import wait_for
from support.servers import serve_web
from webapp import store
from webapp.eventlog import ENTRY_EVENT, encode_entry
from webapp.settings import DISPATCH_LOCK, WORKERS_KEY, worker_stream
from webapp.control.loop import LOCK_TTL_S

pytestmark = pytest.mark.slow


def leader(client: redis.Redis) -> int | None:
    """The pid of the web process holding the lock: its value is "<host>-<pid>/<token>"."""
    value = client.get(DISPATCH_LOCK)
    return int(value.split("/")[0].rsplit("-", 1)[1]) if value else None


def test_another_web_process_takes_over_when_the_leader_dies(workspace, config_dir, redis_url, redis_server):
    env = {"OTWEB_WORKSPACE": str(workspace), "OTWEB_CONFIG_DIR": str(config_dir), "REDIS_URL": redis_url}
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.delete(DISPATCH_LOCK)  # a lock an earlier test's web left behind lapses only after LOCK_TTL_S
    with serve_web(env, workers=2):
        first = wait_for(lambda: leader(client) if psutil.pid_exists(leader(client) or 0) else None, 30)
        assert "gunicorn" in " ".join(psutil.Process(first).parent().cmdline())  # one of this test's two
        conn = store.connect(workspace / "otweb.sqlite3")
        run_id = store.create_run(conn, "takeover", {"a": 1})
        assert store.assignments.assign(conn, run_id, "w1", "as1")
        conn.commit()
        os.kill(first, signal.SIGKILL)  # no release: the lock lapses after LOCK_TTL_S
        killed = time.monotonic()
        second = wait_for(lambda: leader(client) not in (None, first) and leader(client), LOCK_TTL_S + 15)
        took = time.monotonic() - killed
        client.sadd(WORKERS_KEY, "w1")
        for n in (1, 2, 1):  # the third is the first sent again: recorded once
            client.xadd(worker_stream("w1"), encode_entry(ENTRY_EVENT, run_id, "as1", n, event="status",
                                                   data={"text": f"from the worker {n}"}))

        def recorded():
            return [e["data"]["text"] for e in store.events_since(conn, 0, run_id) if e["event"] == "status"]
        wait_for(lambda: len(recorded()) >= 2, 10)
        time.sleep(0.5)
        print(f"leader {first} killed; {second} led after {took:.1f} s")
        assert second != first and took < LOCK_TTL_S + 15
        assert recorded() == ["from the worker 1", "from the worker 2"]
        conn.close()

"""Each worker its own Redis identity (issue 26 §2): an ACL user made from the stored hash of its
token, reaching only its own keys; the recorder takes a run's entries only from the stream of the
worker the run is assigned to; the embedded Redis keeps its files to the service user. And a
two-worker fleet on a real redis-server with ACLs where one worker is hostile."""
from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys

import pytest
import redis

from support.demo import short_run
from support.fleet import entry_numbers, host_folder, record, redis_server
from support.paths import ROOT
from support.servers import serve_web
from support.stack import Stack, run_worker
from webapp import store
from webapp.control.identities import Identities
from webapp.settings import heartbeat_key, worker_prefix, worker_stream, worker_user
from webapp.store import accounts
from webapp.worker.loop import redis_client


def _acl_line(client, user: str) -> str | None:
    return next((line for line in client.acl_list() if line.split()[1] == user), None)


def test_a_worker_token_is_kept_as_its_hash_only_and_opens_only_its_own_keys(app, redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    conn = accounts.connect(app.config["DATABASE"])
    token_id, token = accounts.create_worker_token(conn, "gpu-a")
    accounts.create_worker_token(conn, "gpu-b")
    identities = Identities(conn, client)
    try:
        assert sorted(identities.sync()) == ["gpu-a", "gpu-b"]
        digest = hashlib.sha256(token.encode()).hexdigest()
        dump = "\n".join(conn.iterdump())
        assert digest in dump and token not in dump                   # SQLite: the hash only
        line = _acl_line(client, worker_user("gpu-a"))
        assert f"#{digest}" in line and token not in line              # Redis: the hash only
        assert f"~{worker_prefix('gpu-a')}*" in line and "~*" not in line.replace(f"~{worker_prefix('gpu-a')}*", "")

        worker = redis_client(redis_url, "gpu-a", token)
        worker.set(heartbeat_key("gpu-a"), "{}")                       # its own keys: yes
        worker.xadd(worker_stream("gpu-a"), {"e": "1"})
        for refused in (lambda: worker.get(heartbeat_key("gpu-b")),
                        lambda: worker.xadd(worker_stream("gpu-b"), {"e": "1"}), lambda: worker.keys("*"), lambda: worker.acl_list(), lambda: worker.config_get("*"),
                        lambda: worker.publish("otweb:events", "x"), lambda: worker.flushall()):
            with pytest.raises(redis.exceptions.NoPermissionError):
                refused()
        with pytest.raises(redis.AuthenticationError):
            redis_client(redis_url, "gpu-b", token).ping()             # another worker's name: no

        accounts.revoke_token(conn, token_id)                          # revoked: its user goes
        assert identities.sync() == ["gpu-b"] and _acl_line(client, worker_user("gpu-a")) is None
        with pytest.raises(redis.ConnectionError):                     # its connection ended with it
            worker.get(heartbeat_key("gpu-a"))
    finally:
        conn.execute("UPDATE api_tokens SET revoked_at = 1 WHERE role = 'worker'")
        identities.sync()
        conn.close()


def test_revoking_one_of_a_workers_tokens_ends_the_connections_made_with_it(app, redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    conn = accounts.connect(app.config["DATABASE"])
    old_id, old = accounts.create_worker_token(conn, "gpu-c")
    new = accounts.create_worker_token(conn, "gpu-c")[1]
    identities = Identities(conn, client)
    try:
        identities.sync()
        stolen = redis_client(redis_url, "gpu-c", old)
        stolen.set(heartbeat_key("gpu-c"), "{}")
        accounts.revoke_token(conn, old_id)
        identities.sync()
        with pytest.raises(redis.ConnectionError):                     # cut off, and cannot log in again
            stolen.get(heartbeat_key("gpu-c"))
        assert redis_client(redis_url, "gpu-c", new).get(heartbeat_key("gpu-c")) == "{}"  # the live one can
    finally:
        conn.execute("UPDATE api_tokens SET revoked_at = 1 WHERE role = 'worker'")
        identities.sync()
        conn.close()


def test_a_worker_name_that_would_widen_its_key_pattern_is_refused(app):
    conn = accounts.connect(app.config["DATABASE"])
    for name in ("*", "a*", "gpu[1]", "a:b", "x y", "-a", "a" * 65):
        with pytest.raises(accounts.AuthError):
            accounts.create_worker_token(conn, name)
    conn.close()


def test_the_recorder_takes_a_runs_entries_only_from_its_workers_stream(app, redis_url):
    from webapp.control.recorder import Recorder
    from webapp.eventlog import ENTRY_EVENT, encode_entry
    from webapp.settings import WORKERS_KEY
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    conn = store.connect(app.config["DATABASE"])
    run_id = store.create_run(conn, "demo", {"a": 1})
    assert store.assignments.assign(conn, run_id, "honest", "as1")
    client.sadd(WORKERS_KEY, "honest", "mallory")
    client.xadd(worker_stream("mallory"), encode_entry(ENTRY_EVENT, run_id, "as1", 1, event="status",
                                                       data={"text": "pwned"}))
    client.xadd(worker_stream("honest"), encode_entry(ENTRY_EVENT, run_id, "as1", 2, event="status",
                                                      data={"text": "honest"}))
    recorder = Recorder(conn, client, app.config["SETTINGS"].run_dir, "r1")
    while recorder.step(block_ms=10):
        pass
    texts = [e["data"].get("text") for e in store.events_since(conn, 0, run_id) if e["event"] == "status"]
    assert texts == ["honest"] and client.xlen(worker_stream("mallory")) == 0  # read, and dropped


def test_the_embedded_redis_keeps_its_folder_and_files_to_itself(tmp_path):
    from webapp.cli.serve import PRIVATE_UMASK, Child, EmbeddedRedis
    embedded = EmbeddedRedis(tmp_path)
    embedded.folder.mkdir(mode=0o755)
    (embedded.folder / "appendonly.aof").write_text("")                # an older start's file, 0644
    (embedded.folder / "appendonly.aof").chmod(0o644)
    embedded.prepare()
    child = Child("redis", embedded.command(), dict(os.environ), umask=PRIVATE_UMASK)
    child.start()
    try:
        assert embedded.ready(timeout=15)
        client = redis.Redis(unix_socket_path=str(embedded.socket_file))
        client.set("k", "v")
        client.save()                                                  # the RDB file too
        assert stat.S_IMODE(embedded.folder.stat().st_mode) == 0o700
        files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in embedded.folder.iterdir() if p.is_file()}
        assert {"appendonly.aof", "otweb.rdb", "redis.pid"} <= set(files) and set(files.values()) == {0o600}, files
    finally:
        child.process.terminate()
        child.process.wait(10)


@pytest.mark.slow
def test_a_hostile_worker_spoils_nothing_of_an_honest_workers_run(tmp_path, demo_workspace, demo_config):
    """Two workers with tokens on a redis-server whose default user has a password (as
    deploy/otweb-fleet-redis.service): mallory, holding a valid token of its own, attacks alpha's run."""
    with redis_server(tmp_path / "redis", password="web-only-secret") as server:
        web = host_folder(tmp_path, "web", demo_workspace[0])
        conn = accounts.connect(web / "otweb.sqlite3")
        tokens = {name: accounts.create_worker_token(conn, name)[1] for name in ("alpha", "mallory")}
        conn.close()
        env = {"OTWEB_WORKSPACE": str(web), "OTWEB_CONFIG_DIR": str(demo_workspace[1]), "REDIS_URL": server.url}
        bare_url = f"redis://127.0.0.1:{server.port}/0"                # what a worker is given: no password
        alpha = {**env, "OTWEB_WORKSPACE": str(host_folder(tmp_path, "alpha", demo_workspace[0])),
                 "OTWEB_WORKER_NAME": "alpha", "OTWEB_WORKER_TOKEN": tokens["alpha"], "REDIS_URL": bare_url}
        with serve_web(env) as url, run_worker(alpha):
            stack = Stack(url, env, None)
            run_id = stack.api("POST", "/api/queue", json={"config": short_run(demo_config, epochs=20),
                                                           "target": {"worker": "alpha"}}).json()["run_ids"][0]
            stack.wait_for(lambda: (stack.api("GET", f"/api/runs/{run_id}").json()["run"]["steps"] or 0) >= 2,
                           timeout=180)
            (assignment,) = record(web, "SELECT assignment FROM runs WHERE id = ?", run_id)[0]
            args = {"url": bare_url, "name": "mallory", "token": tokens["mallory"], "victim": "alpha",
                    "run_id": run_id, "assignment": assignment}
            done = subprocess.run([sys.executable, str(ROOT / "tests" / "support" / "hostile_worker.py"), json.dumps(args)],
                                  cwd=ROOT, capture_output=True, text=True, timeout=60, env={**os.environ, **env})
            assert done.returncode == 0, done.stderr
            outcome = json.loads(done.stdout)
            got_through = {attack: said for attack, said in outcome.items()
                           if attack != "forged" and not said.startswith("refused")}
            assert not got_through, got_through
            assert outcome["anonymous get"].startswith("refused: Authentication required")
            web_redis = redis.Redis.from_url(server.url, decode_responses=True)
            # the recorder read mallory's forged entries (its stream is empty) and recorded none
            stack.wait_for(lambda: web_redis.xlen(worker_stream("mallory")) == 0, timeout=30)
            assert tokens["alpha"] not in (web_redis.get(heartbeat_key("alpha")) or "")  # no token in the beat
            stack.wait_for(lambda: stack.api("GET", f"/api/runs/{run_id}").json()["run"]["state"] == "completed",
                           timeout=300, every=1)
        events = json.dumps([tuple(r) for r in record(web, "SELECT name, data FROM events WHERE run_id = ?", run_id)])
        assert "pwned" not in events
        assert [r[0] for r in record(web, "SELECT worker FROM assignments WHERE run_id = ?", run_id)] == ["alpha"]
        numbers = entry_numbers(web, run_id)
        assert list(numbers) == [assignment] and numbers[assignment] == list(range(1, len(numbers[assignment]) + 1))
        web_copy, alpha_copy = web / "runs" / str(run_id), tmp_path / "alpha" / "worker" / "runs" / str(run_id)
        assert (web_copy / "config.json").read_bytes() == (alpha_copy / "config.json").read_bytes()
        assert not (web_copy / "pwned.txt").exists()

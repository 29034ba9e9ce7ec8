"""A hostile worker for tests/test_worker_identity.py: a process holding one valid worker token of
its own (and the Redis address every worker has) that tries to reach another worker's run.

    python tests/support/hostile_worker.py '{"url": ..., "name": ..., "token": ..., "victim": ..., "run_id": ...,
                                      "assignment": ...}'

It logs in the way a worker does (webapp.worker.loop.redis_client) and prints one JSON object:
attack -> "refused: <Redis' answer>" or "done: <result>", plus "forged": how many entries it sent
into its own stream in the victim's run's name.
"""
from __future__ import annotations

import json
import sys

import redis

from webapp.eventlog import ENTRY_EVENT, ENTRY_FILE, ENTRY_REMOVE, encode_entry
from webapp.settings import (EVENTS_CHANNEL, NUDGE_STREAM, WORKERS_KEY, assign_key, commands_key, drain_key,
                             heartbeat_key, joined_key, taken_key, worker_stream)
from webapp.worker.loop import redis_client

FORGED_FROM = 1_000_000  # the forged entries' numbers: far above anything the honest worker sends


def attempts(me: redis.Redis, victim: str, run_id: int, assignment: str) -> dict:
    """Each attack on the victim's keys and on the web's (none may work)."""
    entry = encode_entry(ENTRY_EVENT, run_id, assignment, FORGED_FROM - 1, event="status", data={"text": "pwned"})
    return {
        "xadd victim stream": lambda: me.xadd(worker_stream(victim), entry),
        "blmove victim inbox": lambda: me.blmove(assign_key(victim), taken_key("x"), 0.1, "RIGHT", "LEFT"),
        "lpop victim taken": lambda: me.lpop(taken_key(victim)),
        "lrange victim taken": lambda: me.lrange(taken_key(victim), 0, -1),
        "get victim heartbeat": lambda: me.get(heartbeat_key(victim)),
        "get victim joined": lambda: me.get(joined_key(victim)),
        "set victim drain": lambda: me.set(drain_key(victim), "1"),
        "push victim command": lambda: me.rpush(commands_key(victim, run_id), '{"command": "stop"}'),
        "read fleet": lambda: me.smembers(WORKERS_KEY),
        "nudge": lambda: me.xadd(NUDGE_STREAM, {"nudge": "1"}),
        "publish": lambda: me.publish(EVENTS_CHANNEL, "pwned"),
        "subscribe": lambda: subscribe(me),
        "keys": lambda: me.keys("*"),
        "scan": lambda: me.scan(0),
        "acl list": lambda: me.acl_list(),
        "config get": lambda: me.config_get("requirepass"),
        "client list": lambda: me.client_list(),
        "flushall": lambda: me.flushall(),
        "monitor": lambda: me.execute_command("MONITOR"),
        "xread victim stream": lambda: me.xrange(worker_stream(victim)),
    }


def subscribe(me: redis.Redis):
    """The web's live events: the answer to SUBSCRIBE comes with the first message read."""
    listener = me.pubsub()
    listener.subscribe(EVENTS_CHANNEL)
    return listener.get_message(timeout=2)


def forge(me: redis.Redis, name: str, run_id: int, assignment: str) -> int:
    """Entries in the victim's run's name, into this worker's own stream (which it may write)."""
    bodies = [
        (ENTRY_EVENT, {"event": "status", "data": {"text": "pwned"}}),
        (ENTRY_EVENT, {"event": "log", "data": {"text": "pwned"}}),
        (ENTRY_EVENT, {"event": "run", "data": {"state": "completed"}}),
        (ENTRY_REMOVE, {"path": "config.json"}),
        (ENTRY_FILE, {"path": "pwned.txt", "mode": "append", "offset": 0, "size": 5, "sha256": None, "last": True,
                      "length": 5, "data": "cHduZWQ="}),  # "pwned"
    ]
    for n, (kind, body) in enumerate(bodies, FORGED_FROM):
        me.xadd(worker_stream(name), encode_entry(kind, run_id, assignment, n, **body))
    return len(bodies)


def main(args: dict) -> dict:
    me = redis_client(args["url"], args["name"], args["token"])
    me.ping()  # logged in as its own user: the token is valid
    outcome = {}
    for attack, call in attempts(me, args["victim"], args["run_id"], args["assignment"]).items():
        try:
            outcome[attack] = f"done: {call()!r}"[:200]
        except redis.RedisError as exc:
            outcome[attack] = f"refused: {exc}"[:200]
    anonymous = redis.Redis.from_url(args["url"], socket_timeout=5)
    try:
        outcome["anonymous get"] = f"done: {anonymous.get(heartbeat_key(args['victim']))!r}"[:200]
    except redis.RedisError as exc:
        outcome["anonymous get"] = f"refused: {exc}"[:200]
    outcome["forged"] = forge(me, args["name"], args["run_id"], args["assignment"])
    return outcome


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))), flush=True)

"""Notifications: how soon a webhook follows a run's end, delivery through a failing receiver, and
what 100 subscriptions cost the recorder.

1. latency: the web under gunicorn (its control loop runs the notifier) and a real local receiver
   (http.server, 127.0.0.1; OTWEB_WEBHOOK_ALLOW_LOOPBACK on, as for tests). --ends runs are ended one
   after another by a run event appended to the record (eventlog.EventSink, as the web appends its
   own; a worker's end adds the recorder's lag, measured by bench_event_latency.py); the time from
   the event's time to the receiver's request: median and max. Goal < 1 s.
2. recovery: the same web, the receiver answering 500 three times then 200; 5 run ends: each event
   accepted once and in order, the first one's retries' gaps (back-off doubling from
   OTWEB_WEBHOOK_BACKOFF_S = 0.25 s).
3. recorder: the Recorder draining a backlog of --events progress entries (every 500th a "save
   written" log event) while a Notifier thread turns beside it on the same SQLite file, with 0 and
   with 100 subscriptions (browser ones, matching every save): events/s, --pairs pairs alternating
   which goes first, median and spread of each.

    .venv/bin/python benchmarks/bench_notifications.py [--ends 10] [--events 10000] [--pairs 5]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time

from common import Bench, api, machine, ms, table, wait_http, write_results  # noqa: E402
from support.polling import wait_for  # noqa: E402
from support.receiver import Receiver  # noqa: E402

NAME = "bench_notifications"
GOAL_S = 1.0


def end_runs(bench: Bench, client, count: int) -> list[tuple[int, float]]:
    """count runs made and ended through the record, one at a time: (run id, end time)."""
    from webapp import store
    from webapp.eventlog import EventSink
    conn = store.connect(bench.database)
    sink, ended = EventSink(conn, client), []
    for _ in range(count):
        run_id = store.create_run(conn, "bench", {})
        store.set_started_by(conn, run_id, "local")
        sink.emit(run_id, {"event": "run", "data": {"state": "running"}, "time": time.time()})
        at = time.time()
        sink.emit(run_id, {"event": "run", "data": {"state": "completed"}, "time": at})
        ended.append((run_id, at))
        time.sleep(0.3)
    conn.close()
    return ended


def arrivals(receiver: Receiver) -> dict[int, float]:
    return {json.loads(r["body"])["run_id"]: r["at"] for r in receiver.accepted()}


def latency(bench: Bench, url: str, client, count: int) -> dict:
    with Receiver() as receiver:
        sub = api(url, "POST", "/api/notifications", {"events": ["run_completed"], "channel": "webhook",
                                                       "url": receiver.url()})
        time.sleep(1.0)  # the notifier's cursor has passed the subscription's start
        ended = end_runs(bench, client, count)
        wait_for(lambda: len(receiver.accepted()) >= count, 30, "every webhook")
        got = arrivals(receiver)
        api(url, "DELETE", f"/api/notifications/{sub['id']}")
    delays = [got[run_id] - at for run_id, at in ended]
    return {"ends": count, "median_s": statistics.median(delays), "max_s": max(delays), "min_s": min(delays),
            "met": max(delays) < GOAL_S}


def recovery(bench: Bench, url: str, client) -> dict:
    with Receiver(statuses=(500, 500, 500, 200)) as receiver:
        sub = api(url, "POST", "/api/notifications", {"events": ["run_completed"], "channel": "webhook",
                                                       "url": receiver.url()})
        time.sleep(1.0)
        ended = end_runs(bench, client, 5)
        wait_for(lambda: len(receiver.accepted()) >= 5, 60, "every webhook after the receiver recovered")
        time.sleep(1.0)
        order = [json.loads(r["body"])["run_id"] for r in receiver.accepted()]
        first = [r["at"] for r in receiver.requests[:4]]
        log = api(url, "GET", f"/api/notifications/{sub['id']}/deliveries")["deliveries"]
        api(url, "DELETE", f"/api/notifications/{sub['id']}")
    return {"requests": len(receiver.requests), "accepted": len(order), "in_order": order == [r for r, _ in ended],
            "duplicates": len(order) - len(set(order)), "lost": len({r for r, _ in ended} - set(order)),
            "retry_gaps_s": [b - a for a, b in zip(first, first[1:])], "attempts": sorted(d["attempts"] for d in log)}


def recorder_rate(bench: Bench, client, tag: str, events: int, subscriptions: int) -> float:
    """Events/s of the recorder draining a backlog while a notifier turns beside it."""
    from bench_recorder import entries, setup
    from webapp import store
    from webapp.control.notifier import TURN_S, Notifier
    from webapp.eventlog import ENTRY_EVENT, encode_entry
    from webapp.settings import worker_stream
    from webapp.store import notifications as subs
    conn, run_id, recorder = setup(bench, client, tag)
    notify_conn = store.connect(bench.tmp / f"{tag}.sqlite3")
    for n in range(subscriptions):
        subs.add_subscription(notify_conn, f"user{n}", ["saved"], "browser", scope="all")
    notifier, stopping = Notifier(notify_conn, base_url=""), threading.Event()
    notifier.step()
    thread = threading.Thread(target=lambda: [notifier.step() for _ in iter(lambda: stopping.wait(TURN_S), True)])
    todo = entries(run_id, f"{tag}-a", 1, events)
    for n in range(500, events, 500):  # a save written now and then: 100 deliveries each with 100 subscriptions
        todo[n - 1] = encode_entry(ENTRY_EVENT, run_id, f"{tag}-a", n, event="log",
                                   data={"text": "saved", "artifact": {"kind": "save", "path": f"save/{n}"}},
                                   time=time.time())
    pipe = client.pipeline(transaction=False)
    for fields in todo:
        pipe.xadd(worker_stream("w"), fields)
    pipe.execute()
    thread.start()
    started = time.perf_counter()
    while recorder.step(block_ms=1):
        pass
    wall = time.perf_counter() - started
    stopping.set()
    thread.join()
    assert recorder.recorded == events, recorder.stats()
    conn.close()
    notify_conn.close()
    return events / wall


def recorder_pairs(bench: Bench, client, events: int, pairs: int) -> dict:
    rates = {0: [], 100: []}
    for n in range(pairs):
        for subscriptions in ((0, 100) if n % 2 == 0 else (100, 0)):
            rates[subscriptions].append(recorder_rate(bench, client, f"p{n}s{subscriptions}", events, subscriptions))
    summary = {f"subs_{k}": {"median": statistics.median(v), "min": min(v), "max": max(v), "all": v}
               for k, v in rates.items()}
    summary["ratio"] = summary["subs_100"]["median"] / summary["subs_0"]["median"]
    return summary


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ends", type=int, default=10)
    parser.add_argument("--events", type=int, default=10000)
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args()
    import redis
    started = time.monotonic()
    with Bench() as bench:
        bench.env.update(OTWEB_WEBHOOK_HOSTS="127.0.0.1", OTWEB_WEBHOOK_ALLOW_LOOPBACK="1",
                         OTWEB_WEBHOOK_BACKOFF_S="0.25")
        client = redis.Redis.from_url(bench.redis(), decode_responses=True)
        web, url = bench.web()
        wait_http(url + "/api/health", proc=web)
        fast = latency(bench, url, client, args.ends)
        failing = recovery(bench, url, client)
        server = bench.tcp_redis()
        recorder = recorder_pairs(bench, redis.Redis.from_url(server.url, decode_responses=True), args.events, args.pairs)
    report(fast, failing, recorder, time.monotonic() - started)


def report(fast: dict, failing: dict, recorder: dict, elapsed: float) -> None:
    print(f"\n## {NAME}\n")
    print(table(["what", "result"], [
        [f"run end -> webhook request ({fast['ends']} ends)",
         f"median {ms(fast['median_s'])} ms, max {ms(fast['max_s'])} ms (goal < {GOAL_S:.0f} s: "
         f"{'met' if fast['met'] else 'NOT met'})"],
        ["receiver 500 x3 then 200, 5 ends", f"{failing['accepted']} accepted, {failing['duplicates']} duplicates, "
         f"{failing['lost']} lost, in order: {failing['in_order']}; {failing['requests']} requests; first event's "
         f"retry gaps {', '.join(f'{g:.2f}' for g in failing['retry_gaps_s'])} s"],
        *[[f"recorder with {n} subscriptions", f"{recorder[f'subs_{n}']['median']:,.0f} events/s median "
           f"({recorder[f'subs_{n}']['min']:,.0f}-{recorder[f'subs_{n}']['max']:,.0f})"] for n in (0, 100)],
        ["100 subscriptions / none", f"{recorder['ratio']:.2f}"]]))
    print(f"\nload average {os.getloadavg()[0]:.1f}; took {elapsed:.0f} s")
    path = write_results(NAME, {"benchmark": NAME, "machine": machine(), "latency": fast, "recovery": failing,
                                "recorder": recorder, "elapsed_s": elapsed})
    print(f"results: {path}")


if __name__ == "__main__":
    main()

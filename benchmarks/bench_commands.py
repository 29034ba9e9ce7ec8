"""Command latency, full stack: from the JSON API request to the trainer acting on it.

Worker + web (gunicorn -k gevent, the product's command line) + this process reading /api/events
(JSON SSE) in a thread. A command travels: POST /api/training/<command> -> the web pushes it on the
run's Redis list -> the worker's relay thread (BLPOP) -> the trainer's multiprocessing queue -> the
trainer polls it before each step.

1. During training (the demo, batch 1, no scheduled samples/saves): `sample`, `save` (alternating,
   REPEAT times each, sent at a random moment of a step), then `stop`. Acknowledged = the trainer's
   status event for it ("sampling", "saving"; for stop the "saving" of the final save). Latency =
   the event's `time` (set in the trainer process when it acts) - the request's start; and when this
   process received it on the SSE feed. In steps: the training steps the trainer completed between
   the request and the acknowledgement (from the metrics rows' times, every step is one), and the
   latency over the median step duration measured in the same run (the baseline).
   Goal: acknowledged within one training step.
2. Stop while the run is starting (the trainer process importing torch), loading the model, and
   filling the latent cache (cache cleared; the concept's images repeated as image variations so
   that caching lasts seconds): request -> the run's final state (the worker's `run` event).
   Goal: < 2 s.

    .venv/bin/python benchmarks/bench_commands.py [--repeat 8] [--stops 1]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import threading
import time

from common import Bench, api, build_demo, machine, table, wait_demo, wait_http, write_results
from support.polling import wait_for
from support.sse import parse_frame

NAME = "bench_commands"
TERMINAL = ("completed", "stopped", "failed", "interrupted", "canceled")
ACK = {"sample": "sampling", "save": "saving", "stop": "saving"}


class Feed:
    """One JSON SSE client on /api/events in a thread; every event with its receive time."""

    def __init__(self, url: str):
        host, port = url.split("//")[1].split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=None)
        self.sock.sendall(f"GET /api/events HTTP/1.0\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n"
                          .encode())
        self.events: list[dict] = []
        self.cond = threading.Condition()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        buffer = b""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return
                received = time.time()
                buffer += chunk
                while b"\n\n" in buffer:
                    frame, buffer = buffer.split(b"\n\n", 1)
                    self._frame(frame.decode(errors="replace"), received)
        except OSError:
            return

    def _frame(self, raw: str, received: float) -> None:
        frame = parse_frame(raw)
        if "retry" in frame:
            self.ready.set()
        if not frame["data"] or "id" not in frame:
            return
        try:
            event = json.loads(frame["data"])
        except ValueError:
            return
        event["received"] = received
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def wait(self, match, timeout: float = 60, start: int = 0) -> tuple[dict, int]:
        """The first event from index ``start`` on that ``match``es, and its index."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for index in range(start, len(self.events)):
                    if match(self.events[index]):
                        return self.events[index], index
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no matching event on the feed")
                self.cond.wait(left)

    def mark(self) -> int:
        with self.cond:
            return len(self.events)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def is_status(run_id: int, text: str, prefix: bool = False):
    def match(e):
        if e.get("run_id") != run_id or e.get("event") != "status":
            return False
        value = (e.get("data") or {}).get("text", "")
        return value.startswith(text) if prefix else value == text
    return match


def is_end(run_id: int):
    return lambda e: e.get("run_id") == run_id and e.get("event") == "run" and e["data"].get("state") in TERMINAL


def is_progress(run_id: int):
    return lambda e: e.get("run_id") == run_id and e.get("event") == "progress"


def step_times(bench: Bench, run_id: int) -> list[tuple[int, float]]:
    from webapp import store
    conn = store.connect(bench.database)
    try:
        return [(r[0], r[1]) for r in conn.execute("SELECT step, time FROM metrics WHERE run_id = ? ORDER BY time",
                                                   (run_id,))]
    finally:
        conn.close()


def during_training(bench: Bench, url: str, feed: Feed, demo: dict, repeat: int, rng: random.Random) -> dict:
    config = {**demo, "batch_size": 1, "epochs": 10_000, "sample_after": 0, "sample_after_unit": "NEVER",
              "save_every": 0, "save_every_unit": "NEVER", "backup_after_unit": "NEVER", "tensorboard": False}
    mark = feed.mark()
    run_id = api(url, "POST", "/api/training/start", {"config": config})["run_id"]
    first, _ = feed.wait(is_progress(run_id), timeout=120, start=mark)
    time.sleep(2.0)  # a steady pace first
    commands = []
    for name in ["sample", "save"] * repeat + ["stop"]:
        # a random moment of a step (about 20-40 ms each on the demo): not always just after a progress
        time.sleep(0.3 + rng.random() * 0.1)
        mark = feed.mark()
        sent = time.time()
        answer = api(url, "POST", f"/api/training/{name}", {"run_id": run_id})
        answered = time.time()
        ack, index = feed.wait(lambda e: is_status(run_id, ACK[name])(e) and e["time"] >= sent, start=mark)
        # the web's own status event ("... requested", "stopping: ..."), made right after it pushed
        # the command to Redis: splits the web's share from the relay's and the trainer's
        pushed, _ = feed.wait(lambda e: e.get("run_id") == run_id and e.get("event") == "status"
                              and e["time"] >= sent and e["data"].get("text", "") not in ACK.values()
                              and e["data"].get("text") != "training", start=mark)
        entry = {"command": name, "sent": sent, "api_answered_s": answered - sent, "accepted": answer.get("accepted"),
                 "ack_event_time": ack["time"], "ack_received": ack["received"], "web_pushed_s": pushed["time"] - sent}
        if name == "stop":
            end, _ = feed.wait(is_end(run_id), start=index)
            entry.update(final_state=end["data"]["state"], final_event_time=end["time"], final_received=end["received"])
        else:  # back to training before the next command
            feed.wait(lambda e: is_status(run_id, "training")(e), start=index)
        commands.append(entry)
    steps = step_times(bench, run_id)
    gaps = [b[1] - a[1] for a, b in zip(steps, steps[1:])]
    median = statistics.median(gaps)
    step_s = statistics.median([g for g in gaps if g < 5 * median])  # pauses (sampling, saving) left out
    for entry in commands:
        entry["latency_s"] = entry["ack_event_time"] - entry["sent"]
        entry["delivered_s"] = entry["ack_received"] - entry["sent"]
        entry["latency_steps"] = entry["latency_s"] / step_s
        entry["steps_between"] = sum(1 for _, t in steps if entry["sent"] < t <= entry["ack_event_time"])
        pushed = entry["sent"] + entry["web_pushed_s"]
        entry["steps_after_push"] = sum(1 for _, t in steps if pushed < t <= entry["ack_event_time"])
    return {"run_id": run_id, "step_s": step_s, "steps": len(steps), "commands": commands,
            "first_progress_step": first["data"].get("global_step")}


def stop_while(bench: Bench, url: str, feed: Feed, config: dict, phase: str) -> dict:
    mark = feed.mark()
    run_id = api(url, "POST", "/api/training/start", {"config": config})["run_id"]
    if phase == "starting":
        def match(e):
            return e.get("run_id") == run_id and e.get("event") == "run" and e["data"].get("state") == "running"
    elif phase == "loading model":
        match = is_status(run_id, "loading model")
    else:
        match = is_status(run_id, "caching", prefix=True)
    trigger, index = feed.wait(match, timeout=120, start=mark)
    sent = time.time()
    api(url, "POST", "/api/training/stop", {"run_id": run_id})
    end, end_index = feed.wait(is_end(run_id), timeout=60, start=index)
    with feed.cond:
        seen = feed.events[index:end_index + 1]
    statuses = [(e["data"].get("text"), e["time"]) for e in seen
                if e.get("event") == "status" and e.get("run_id") == run_id]
    before = [text for text, at in statuses if at <= sent]
    # the trainer's last word (finished, a status...) after the stop: what follows is the worker's share
    # (noticing the process has ended, draining its queue, the final event)
    def from_trainer(e):
        text = (e.get("data") or {}).get("text") or ""
        return (e.get("run_id") == run_id and e.get("event") != "run" and e["time"] > sent
                and "requested" not in text and not text.startswith("stopping"))
    said = [e for e in seen if from_trainer(e)]
    trainer_said = [text for text, at in statuses
                    if at > sent and "requested" not in text and not text.startswith("stopping")]
    return {"phase": phase, "run_id": run_id, "trigger_delivered_s": sent - trigger["received"],
            "status_at_request": before[-1] if before else ("starting" if phase == "starting" else None),
            "trainer_statuses_after": trainer_said, "final_state": end["data"]["state"],
            "reason": (end["data"].get("reason") or "").split("\n")[0],
            "to_final_s": end["time"] - sent, "to_final_received_s": end["received"] - sent,
            "trainer_last_event_to_final_s": (end["time"] - said[-1]["time"]) if said else None,
            "progress_seen": any(e.get("event") == "progress" for e in seen)}


def wait_idle(url: str, timeout: float = 30) -> None:
    def idle() -> bool:
        run = api(url, "GET", "/api/training/status")["run"]
        return run is None or run["state"] not in ("queued", "running")
    wait_for(idle, timeout, "the worker to finish the previous run")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=8, help="sample and save commands each (default 8)")
    parser.add_argument("--stops", type=int, default=1, help="stop runs per phase (default 1)")
    args = parser.parse_args()
    rng = random.Random(1)
    started = time.monotonic()
    with Bench() as bench:
        demo_build = build_demo(bench)
        bench.redis()
        bench.worker()
        web, url = bench.web()
        wait_http(url + "/api/health", proc=web)
        wait_demo(bench, demo_build)
        demo = json.loads((bench.config_dir / "demo.json").read_text())
        feed = Feed(url)
        if not feed.ready.wait(30):
            raise RuntimeError("the SSE feed did not start")
        try:
            training = during_training(bench, url, feed, demo, args.repeat, rng)
            wait_idle(url)
            caching = {**demo, "clear_cache_before_training": True, "tensorboard": False,
                       "concepts": [{**c, "image_variations": 200} for c in demo["concepts"]],
                       "sample_after_unit": "NEVER"}
            stops = []
            for _ in range(args.stops):
                for phase in ("starting", "loading model", "caching"):
                    stops.append(stop_while(bench, url, feed, caching, phase))
                    wait_idle(url)
        finally:
            feed.close()
    report(training, stops, time.monotonic() - started)


def report(training: dict, stops: list[dict], elapsed: float) -> None:
    step_ms = training["step_s"] * 1000
    rows = [[c["command"], f"{c['api_answered_s'] * 1000:.1f}", f"{c['web_pushed_s'] * 1000:.1f}",
             f"{(c['latency_s'] - c['web_pushed_s']) * 1000:.1f}", f"{c['latency_s'] * 1000:.1f}",
             f"{c['delivered_s'] * 1000:.1f}", f"{c['latency_steps']:.2f}", c["steps_between"], c["steps_after_push"],
             "✓" if c["steps_after_push"] <= 1 else "✗"] for c in training["commands"]]
    print(f"\n## {NAME}\n\n1. Commands during training (demo, batch 1): step duration {step_ms:.1f} ms "
          f"(median of {training['steps']} steps, same run: the baseline)\n")
    print(table(["command", "API answered ms", "request -> web pushed ms", "pushed -> trainer acts ms",
                 "request -> trainer acts ms", "-> SSE client ms", "latency / step",
                 "steps completed: request -> ack", "steps completed: pushed -> ack", "≤ 1 step"], rows))
    stop_entry = training["commands"][-1]
    print(f"\nstop -> run's final state ({stop_entry['final_state']}): "
          f"{(stop_entry['final_event_time'] - stop_entry['sent']):.2f} s (includes the final save)")
    print("\n2. Stop before training: request -> the run's final state\n")
    print(table(["phase", "trainer status at the request", "trainer said after", "final state", "reason",
                 "trainer's last event -> final state s", "to final state s", "-> SSE client s", "< 2 s"],
                [[s["phase"], s["status_at_request"], ", ".join(s["trainer_statuses_after"]) or "–",
                  s["final_state"], s["reason"] or "–",
                  "–" if s["trainer_last_event_to_final_s"] is None else f"{s['trainer_last_event_to_final_s']:.2f}",
                  f"{s['to_final_s']:.2f}", f"{s['to_final_received_s']:.2f}",
                  "✓" if s["to_final_received_s"] < 2 else "✗"] for s in stops]))
    commands = training["commands"]
    met_steps = all(c["steps_after_push"] <= 1 for c in commands)
    met_stop = all(s["to_final_received_s"] < 2 for s in stops)
    within = sum(c["steps_between"] <= 1 for c in commands)
    after_push = sum(c["steps_after_push"] <= 1 for c in commands)
    ratios = sorted(c["latency_steps"] for c in commands)
    print(f"\nlatency in step durations: median {statistics.median(ratios):.2f}, max {ratios[-1]:.2f} "
          f"({len(commands)} commands); within one step: {after_push}/{len(commands)} once pushed, "
          f"{within}/{len(commands)} from the HTTP request")
    print(f"\ngoals: commands acknowledged within one step once the web has pushed them (relay + trainer): "
          f"{'met' if met_steps else 'MISSED'} (at most {max(c['steps_after_push'] for c in commands)} step); "
          f"from the HTTP request: {within}/{len(commands)} within one step, worst "
          f"{max(c['steps_between'] for c in commands)} steps, {max(c['latency_steps'] for c in commands):.2f} "
          f"step durations (the web's share: {statistics.median(c['web_pushed_s'] for c in commands) * 1000:.1f} ms "
          f"median); stop before training < 2 s: "
          f"{'met' if met_stop else 'MISSED'} (worst {max(s['to_final_received_s'] for s in stops):.2f} s); "
          f"load average {os.getloadavg()[0]:.1f}; took {elapsed:.0f} s")
    path = write_results(NAME, {"benchmark": NAME, "machine": machine(), "training": training, "stops": stops,
                                "goals": {"ack_within_one_step_after_push": met_steps,
                                          "ack_within_one_step_from_request": within == len(commands),
                                          "stop_before_training_under_2s": met_stop},
                                "loadavg_at_end": os.getloadavg(), "elapsed_s": elapsed})
    print(f"results: {path}")


if __name__ == "__main__":
    main()

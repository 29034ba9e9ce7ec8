"""The notifier: run events from the record to each user's subscribed destinations.

It runs in a thread of its own beside the control loop (only while that process leads), so neither a
request nor the recorder ever waits on a webhook. Each turn it reads the events after its cursor
(a run's end by state, a sample, a save or backup written; the queue emptied when a run's end leaves
nothing queued or running), matches them against the subscriptions and inserts their deliveries
together with the new cursor in one transaction: a restart neither repeats nor skips one, and the
UNIQUE (subscription, event, kind) key makes a second insert a no-op. Then it sends what is due, in
order per destination, one at a time: a failure is retried after a back-off that doubles (at most
BACKOFF_MAX_S), later deliveries to that destination wait behind it, and after PAUSE_AFTER failures in
a row the destination is paused (nothing is dropped) and its owner sees why on the Notifications page.
A browser subscription's deliveries are only recorded (READY): the user's open pages ask for them.
"""
from __future__ import annotations

import json
import logging
import time

from webapp import store
from webapp.control import notify_messages
from webapp.protocol import SAMPLE_EVENTS, Event, dumps
from webapp.settings import public_url, webhook_backoff_s
from webapp.store import notifications as subs

log = logging.getLogger(__name__)
BACKOFF_MAX_S = 300.0
PAUSE_AFTER = 8
SCAN_LIMIT = 500
TURN_S = 0.2  # how often an idle notifier looks: a run's end reaches its webhook well within a second
ENDED = {"completed": "run_completed", "failed": "run_failed", "stopped": "run_stopped",
         "interrupted": "run_interrupted"}
WATCHED = (Event.RUN.value, Event.LOG.value, *(e.value for e in SAMPLE_EVENTS))


def kinds_of(name: str, data: dict) -> list[str]:
    """The notification kinds one recorded event stands for."""
    if name == Event.RUN:
        return [ENDED[data["state"]]] if data.get("state") in ENDED else []
    if name in SAMPLE_EVENTS:
        return ["sample"]
    if name == Event.LOG and (data.get("artifact") or {}).get("kind") in ("save", "backup"):
        return ["saved"]
    return []


def matches(sub, kind: str, run: dict | None) -> bool:
    if kind not in sub["events"].split(","):
        return False
    if kind == "queue_empty" or sub["scope"] == "all":
        return True
    if run is None:
        return False
    if sub["scope"] == "config":
        return run["config_name"] == sub["config_name"]
    return (run.get("started_by") or "local") == sub["user"]


class Notifier:
    def __init__(self, conn, sender=None, base_url: str | None = None, backoff_s: float | None = None):
        """sender(url, body, headers) -> webhook_http.Answer: the guarded POST (webhook_http.post)."""
        self.conn, self.sender = conn, sender
        self.base_url = public_url() if base_url is None else base_url
        self.backoff_s = webhook_backoff_s() if backoff_s is None else backoff_s
        self.sent = self.failed = 0

    def step(self) -> None:
        self.scan()
        self.send_due()

    def scan(self) -> int:
        """Deliveries for the events after the cursor; returns how many events it looked at."""
        after = subs.start_cursor(self.conn)
        with store.transaction(self.conn, "DEFERRED"):  # one snapshot: the rows and the newest seq agree
            newest = self.conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
            marks = ",".join("?" * len(WATCHED))
            rows = self.conn.execute(f"SELECT seq, run_id, name, data FROM events WHERE seq > ? AND seq <= ?"
                                     f" AND name IN ({marks}) ORDER BY seq LIMIT ?",
                                     (after, newest, *WATCHED, SCAN_LIMIT)).fetchall()
        if newest <= after:
            return 0
        upto = rows[-1]["seq"] if len(rows) == SCAN_LIMIT else newest
        subscriptions = subs.all_subscriptions(self.conn)
        inserts = [row for event in rows for row in self._deliveries(event, subscriptions)] if subscriptions else []
        subs.add_deliveries(self.conn, inserts, upto)
        return len(rows)

    def _deliveries(self, event, subscriptions) -> list[tuple]:
        data = json.loads(event["data"])
        kinds = kinds_of(event["name"], data)
        if not kinds:
            return []
        run = store.get_run(self.conn, event["run_id"])
        if run is None or store.samples.is_playground(run):
            return []
        if kinds[0] in ENDED.values() and not store.active_runs(self.conn):
            kinds.append("queue_empty")
        sample_id = self._sample_id(event["run_id"], data) if kinds == ["sample"] else None
        rows = []
        for kind in kinds:
            message = dumps(notify_messages.describe(kind, run, event["seq"], data, sample_id))
            for sub in subscriptions:
                if matches(sub, kind, run):
                    status = subs.READY if sub["channel"] == "browser" else subs.PENDING
                    rows.append((sub["id"], event["seq"], kind, run["id"], message, status, time.time()))
        return rows

    def _sample_id(self, run_id: int, data: dict) -> int | None:
        row = self.conn.execute("SELECT id FROM samples WHERE run_id = ? AND path = ? ORDER BY id DESC LIMIT 1",
                                (run_id, data.get("path"))).fetchone()
        return row[0] if row else None

    def send_due(self) -> None:
        for sub_id in subs.waiting_subscriptions(self.conn):
            self._send_to(sub_id)

    def _send_to(self, sub_id: int) -> None:
        """Send this destination's due deliveries in order, stopping at the first that fails."""
        while True:
            sub = subs.subscription(self.conn, sub_id)
            delivery = subs.first_pending(self.conn, sub_id)
            if sub is None or sub["paused"] or delivery is None or delivery["next_attempt_at"] > time.time():
                return
            code, error = notify_messages.send(sub, json.loads(delivery["payload"]), self.base_url, self.sender)
            wait = min(BACKOFF_MAX_S, self.backoff_s * 2 ** delivery["attempts"])
            failures = subs.mark_attempt(self.conn, delivery["id"], sub_id, error is None, code, error,
                                         0 if error is None else time.time() + wait)
            if error is None:
                self.sent += 1
                continue
            self.failed += 1
            log.info("notifier: delivery %s to subscription %s failed (%s); next try in %.1f s",
                     delivery["id"], sub_id, error, wait)
            if failures >= PAUSE_AFTER:
                subs.set_paused(self.conn, sub_id, f"paused after {failures} failed attempts in a row: {error}")
            return


def run_notifier(conn, stopping, leading) -> None:
    """The notifier's thread: a turn every TURN_S while ``leading()``, until ``stopping`` is set."""
    notifier = Notifier(conn)
    while not stopping.is_set():
        try:
            if leading():
                notifier.step()
        except Exception:  # noqa: BLE001 - a bad turn must not end notifications; the cursor holds
            log.exception("notifier failed; going on")
            stopping.wait(1.0)
        stopping.wait(TURN_S)

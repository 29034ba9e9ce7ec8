"""One Redis subscription per web process, fanned out to its SSE clients' queues.

flask-sse opens one subscription per client and ignores Last-Event-ID; here each web process holds
ONE subscription (the ``EventBroker``) and fans events out to its clients' queues; ``stream``
replays what a reconnecting client missed from SQLite (the record) before going live. The wire
format is ``webapp.eventlog``'s; the HTML a browser gets is rendered by the function the factory
hands in (``fragments.render_event_fragments``), so this module knows no templates.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
from contextlib import closing
from typing import Callable, Iterator

import redis
from flask import Flask, current_app, has_request_context, request

from webapp import store
from webapp.settings import EVENTS_CHANNEL
from webapp.eventlog import decode_event, split_events
from webapp.protocol import dumps

log = logging.getLogger(__name__)
OPEN_FILES_WANTED = 65536  # soft RLIMIT_NOFILE a web process asks for: SSE streams are sockets
OPEN_FILES_LOW = 2048      # below this (gunicorn's worker_connections here: 2,000) it says so


# -- the broker: one subscription per process, fanned out to client queues ---------------------

class LiveEvent:
    """One numbered event as this process hands it out; its frames are made once, not per client."""

    def __init__(self, event: dict, wire: str | None = None, replayed: bool = False):
        self.event, self.wire, self.replayed = event, wire or dumps(event), replayed
        self.seq, self.run_id, self.name = event["seq"], event["run_id"], event["event"]
        self._frames: dict = {}
        self._lock = threading.RLock()  # re-entered: the framed bytes are made from the rendered frames

    def frames(self, key: str, render: Callable[[dict], list]) -> list:
        return self.cached(key, lambda: render(self.event))

    def cached(self, key, make: Callable[[], object]):
        """make() once per key for this event, whichever client asks first; the rest share it."""
        with self._lock:
            if key not in self._frames:
                self._frames[key] = make()
            return self._frames[key]


class Client:
    def __init__(self, run_id: int | None, maxsize: int):
        self.run_id, self.queue, self.dropped = run_id, queue.Queue(maxsize=maxsize), False


class EventBroker:
    def __init__(self, app: Flask, render: Callable[..., Iterator[tuple[str, str]]] | None = None,
                 channel: str = EVENTS_CHANNEL, queue_size: int = 1000,
                 backoff_s: tuple[float, float] = (0.5, 10.0)):
        """render(event, replayed=False): the (name, html) fragments of one event for htmx."""
        self.app, self.channel, self.queue_size, self.backoff_s = app, channel, queue_size, backoff_s
        self.render_fragments = render or (lambda event, replayed=False: iter(()))
        self._clients: set[Client] = set()
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._backoff = backoff_s[0]
        self.last_seq: int | None = None  # the newest seq fanned out; later ones are checked for gaps
        self.renders = 0  # HTML renders of events (once per event and sub-path, however many clients)
        self.framings = 0  # live events framed and encoded (once per event and stream key, likewise)

    client_count = property(lambda self: len(self._clients))

    def stats(self) -> dict:
        return {"pid": os.getpid(), "clients": self.client_count, "subscribed": self._subscribed.is_set(),
                "last_seq": self.last_seq, "renders": self.renders, "framings": self.framings}

    def register(self, run_id: int | None = None, wait_s: float = 5.0) -> Client:
        client = Client(run_id, self.queue_size)
        with self._lock:
            self._clients.add(client)
            if self._thread is None or not self._thread.is_alive():
                self._stopping.clear()
                self._thread = threading.Thread(target=self._run, name="sse-broker", daemon=True)
                self._thread.start()
        # a replay must start after the subscription is live, else an event could fall between
        self._subscribed.wait(wait_s)
        return client

    def unregister(self, client: Client) -> None:
        with self._lock:
            self._clients.discard(client)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def html_frames(self, live: LiveEvent) -> list[tuple[str, str]]:
        # keyed by the sub-path: frames hold url_for URLs, and two proxies may mount us differently
        return live.frames(request.script_root if has_request_context() else "",
                           lambda event: self._render(event, live.replayed))

    def _render(self, event: dict, replayed: bool = False) -> list[tuple[str, str]]:
        self.renders += 1
        # replayed: the client may have missed live frames (e.g. an unchanged chart is left out live)
        render = (lambda e: self.render_fragments(e, replayed=True)) if replayed else self.render_fragments
        try:
            if has_request_context():
                return list(render(event))
            with self.app.app_context():
                return list(render(event))
        except Exception:  # one bad event must not end every stream that carries it
            self.app.logger.exception("rendering SSE fragments for event %s failed", event.get("seq"))
            return []

    def log_head(self) -> int:
        with closing(store.connect(self.app.config["DATABASE"])) as conn:
            return store.last_seq(conn)

    def replay(self, after: int, run_id: int | None = None, page: int = 1000) -> Iterator[LiveEvent]:
        with closing(store.connect(self.app.config["DATABASE"])) as conn:
            while events := store.events_since(conn, after, run_id, limit=page):
                for event in events:
                    yield LiveEvent(event, replayed=True)
                after = events[-1]["seq"]

    def _run(self) -> None:
        with closing(store.connect(self.app.config["DATABASE"])) as conn:
            if self.last_seq is None:
                self.last_seq = store.last_seq(conn)
            while not self._stopping.is_set():
                try:
                    self._listen(conn)
                except (redis.RedisError, OSError) as exc:
                    log.warning("SSE broker lost Redis (%s); retrying in %.1f s", exc, self._backoff)
                except Exception:  # keep serving: a dead broker would silence every open stream
                    log.exception("SSE broker failed; retrying in %.1f s", self._backoff)
                finally:
                    self._subscribed.clear()
                self._stopping.wait(self._backoff)
                self._backoff = min(self._backoff * 2, self.backoff_s[1])

    def _listen(self, conn) -> None:
        pubsub = self.app.extensions["redis"].pubsub()
        with closing(pubsub):
            pubsub.subscribe(self.channel)
            while not self._stopping.is_set():
                message = pubsub.get_message(timeout=1.0)
                if message is None:
                    continue
                if message["type"] == "subscribe":
                    # events published while we were not subscribed are in SQLite: fetch them now
                    self._fill_gap(conn, None)
                    self._subscribed.set()
                    self._backoff = self.backoff_s[0]
                elif message["type"] == "message":
                    for wire in split_events(message["data"]):  # the recorder publishes a batch at once
                        self._accept(conn, wire)

    def _accept(self, conn, wire: str) -> None:
        try:
            event = decode_event(wire)
        except ValueError:
            log.warning("SSE broker ignored a malformed message: %.200r", wire)
            return
        if event["seq"] <= self.last_seq:
            return  # already handed out, from SQLite when it came late
        if event["seq"] > self.last_seq + 1:
            # two workers may publish out of order; SQLite already holds the lower seqs
            self._fill_gap(conn, event["seq"])
        self._fan_out(LiveEvent(event, wire))

    def _fill_gap(self, conn, before: int | None) -> None:
        while events := store.events_since(conn, self.last_seq, limit=1000):
            for event in events:
                if before is not None and event["seq"] >= before:
                    return
                self._fan_out(LiveEvent(event))

    def _fan_out(self, live: LiveEvent) -> None:
        self.last_seq = live.seq
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            if client.run_id is not None and client.run_id != live.run_id:
                continue
            try:
                client.queue.put_nowait(live)
            except queue.Full:
                # a client this far behind reconnects with Last-Event-ID and replays from SQLite
                client.dropped = True
                self.unregister(client)


def init_app(app: Flask, render=None) -> EventBroker:
    raise_open_file_limit()
    return app.extensions.setdefault("sse_broker", EventBroker(app, render))


def raise_open_file_limit(wanted: int = OPEN_FILES_WANTED) -> int | None:
    """Every open stream holds a socket. At the usual soft limit of 1,024 open files (systemd's
    default too) one process stops near 1,000 viewers: accept() fails with EMFILE and new
    connections hang. So raise the soft limit toward the hard one (which any process may do).
    Returns the soft limit now in force (None where there is no such limit)."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %s to %s: %s", soft, target, exc)
    if soft != resource.RLIM_INFINITY and soft < OPEN_FILES_LOW:
        log.warning("open-file limit %s: this process can hold fewer than ~%s SSE streams; raise the hard "
                    "limit (systemd: LimitNOFILE=)", soft, soft - 64)
    return soft


def get_broker() -> EventBroker:
    return current_app.extensions["sse_broker"]



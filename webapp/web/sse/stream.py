"""One client's stream: replay what it missed from the record, then live events, each seq once."""
from __future__ import annotations

import logging
import queue
import time
from typing import Callable, Iterator

from webapp.web.sse.broker import Client, EventBroker, LiveEvent
from webapp.web.sse.framing import HEARTBEAT, Message

log = logging.getLogger(__name__)
BATCH_MAX, BATCH_BYTES = 64, 64 * 1024  # what one client's write may carry when it fell behind


def stream(broker: EventBroker, to_messages: Callable[[LiveEvent], list[Message]], *,
           after: int | None = None, run_id: int | None = None,
           heartbeat_s: float = 15, retry_ms: int = 2000, key=None) -> Iterator[str | bytes]:
    """Replay after ``after`` (None: live only), then live events: each seq once, in order.

    ``key`` (e.g. the stream's kind and sub-path: whatever ``to_messages`` depends on besides the
    event): the framed, encoded bytes of each live event are made once under that key and shared by
    every client of this process (a frame of a 20 kB partial, split into ``data:`` lines and encoded
    per client, cost more than rendering it: 1,000 clients spent 60 % of the worker there), and the
    stream yields bytes. Without a key it yields str, framed per client."""
    encode = (lambda text: text.encode()) if key is not None else (lambda text: text)
    client = broker.register(run_id)  # first: anything published from now on reaches the queue
    try:
        yield encode(str(Message(None, retry=retry_ms)))
        # a Last-Event-ID beyond the log (a reset workspace) would hide every new event
        last = None if after is None else min(after, broker.log_head())
        if last is not None:
            for live in broker.replay(last, run_id):  # fresh LiveEvents: nothing shared to cache
                yield encode(_frames_text(to_messages, live))
                last = live.seq
        if key is not None:
            def frame(live: LiveEvent) -> bytes:
                broker.framings += 1
                return _frames_text(to_messages, live).encode()

            def framed(live: LiveEvent) -> bytes:
                return live.cached(("sse", key), lambda: frame(live))
        else:
            def framed(live: LiveEvent) -> str:
                return _frames_text(to_messages, live)
        yield from _live(client, framed, last, heartbeat_s, encode(HEARTBEAT))
    finally:
        broker.unregister(client)


def _live(client: Client, framed, last: int | None, heartbeat_s: float, heartbeat) -> Iterator[str | bytes]:
    sent_at = time.monotonic()
    while not client.dropped:  # dropped: end the response; the browser reconnects and replays
        try:
            live = client.queue.get(timeout=max(0.0, sent_at + heartbeat_s - time.monotonic()))
        except queue.Empty:
            live = None
        # what queued up while this client waited for the CPU goes out in one write, not one each
        # (one wake-up, one socket write); bounded, as each batch is a copy of its frames
        parts, size = [], 0
        while live is not None:
            if last is None or live.seq > last:
                parts.append(framed(live))
                size, last = size + len(parts[-1]), live.seq
            if len(parts) >= BATCH_MAX or size >= BATCH_BYTES:
                break
            try:
                live = client.queue.get_nowait()
            except queue.Empty:
                live = None
        if parts:
            yield parts[0] if len(parts) == 1 else parts[0][:0].join(parts)
            sent_at = time.monotonic()
        elif time.monotonic() - sent_at >= heartbeat_s:
            yield heartbeat  # keeps proxies (nginx: 60 s) from closing, and finds gone clients
            sent_at = time.monotonic()


def _frames_text(to_messages, live: LiveEvent) -> str:
    try:
        return "".join(str(m) for m in to_messages(live))
    except ValueError:  # e.g. an event name with a line break: skip it, but move the client past it
        log.warning("SSE event %s cannot be framed; sent as id only", live.seq, exc_info=True)
        return str(Message(None, id=live.seq))

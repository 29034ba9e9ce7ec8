"""The one seam every event passes: append numbered to the record, then publish on Redis.

``EventSink.emit`` appends to SQLite (durable, numbered by ``seq``) and publishes the numbered
event; ``encode_event`` / ``decode_event`` are its wire format, read by each web process's SSE
broker. Neither the trainer nor the web's templates know which side of it they are on. A worker
on another GPU host can swap the sink for one that ships events to the host that keeps the record.
"""
from __future__ import annotations

import json
import logging

import redis

from webapp import store
from webapp.protocol import dumps
from webapp.settings import EVENTS_CHANNEL

log = logging.getLogger(__name__)


def encode_event(event: dict) -> str:
    if not isinstance(event.get("seq"), int):
        raise ValueError(f"a published event needs an int seq: {event!r}")
    if any(c in str(event["event"]) for c in "\r\n\0"):  # it becomes an SSE ``event:`` line
        raise ValueError(f"an event name must not contain CR, LF or NUL: {event['event']!r}")
    return dumps(event)


def decode_event(text: str) -> dict:
    event = json.loads(text)
    if not isinstance(event, dict) or not isinstance(event.get("seq"), int):
        raise ValueError(f"not a numbered event: {text[:200]!r}")
    return event


def publish_event(redis_client: redis.Redis, event: dict) -> int:
    """Publish one numbered event (already appended to SQLite). Returns how many processes got it."""
    return redis_client.publish(EVENTS_CHANNEL, encode_event(event))


class EventSink:
    def __init__(self, conn, redis_client):
        self.conn, self.redis = conn, redis_client

    def emit(self, run_id: int, event: dict) -> dict:
        numbered = store.append_event(self.conn, run_id, event)
        try:
            publish_event(self.redis, numbered)
        except redis.RedisError as exc:
            # the record has it; browsers catch up from SQLite when they reconnect
            log.warning("could not publish event %s: %s", numbered["seq"], exc)
        return numbered

    def metrics(self, run_id: int, rows: list[tuple]) -> None:
        store.append_metrics(self.conn, run_id, rows)

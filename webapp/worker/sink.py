"""The one seam every event passes: append to SQLite (durable, numbered), then publish on Redis.

A worker on another GPU host could later swap this for a sink that ships events to the host
that keeps the record, without touching the trainer or the web.
"""
from __future__ import annotations

import logging

import redis

from .. import store
from ..web.sse import publish_event  # the live feed's wire format, in one place

log = logging.getLogger(__name__)


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

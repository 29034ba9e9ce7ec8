"""The live feed: Server-Sent Events from the numbered event log.

- ``framing``: one SSE message (flask-sse's format, made safe);
- ``broker``: one Redis subscription per web process, fanned out to its clients;
- ``stream``: one client's stream (replay from SQLite after Last-Event-ID, then live);
- ``fragments``: the HTML partials an event becomes for htmx.
"""
from webapp.web.sse.broker import EventBroker, LiveEvent, get_broker, init_app, raise_open_file_limit  # noqa: F401
from webapp.web.sse.framing import Message  # noqa: F401
from webapp.web.sse.stream import stream  # noqa: F401

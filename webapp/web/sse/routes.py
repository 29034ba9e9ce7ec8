"""The live stream: /events (HTML partials for htmx-ext-sse) and /api/events (JSON for scripts).

Both are the same numbered events from one broker; only the framing differs. ``id:`` is the
event's seq, so a browser that reconnects sends Last-Event-ID and replays what it missed.
"""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request, stream_with_context

from webapp.protocol import dumps
from webapp.web import caps, sse
from webapp.web.auth.identity import can, redacted_data
from webapp.web.api_input import MAX_ID
from webapp.web.errors import ApiError

bp = Blueprint("events", __name__)


@bp.get("/events")
def html_events():
    broker = sse.get_broker()
    # frames hold url_for URLs: shared by the clients of one sub-path (as broker.html_frames is)
    return _event_stream(lambda live: html_messages(broker, live), ("html", request.script_root))


@bp.get("/api/events")
def json_events():
    if can("admin"):
        return _event_stream(json_messages, "json")
    return _event_stream(viewer_json_messages, "json-viewer")  # framed once for every non-admin


@bp.get("/api/events/stats")
def stats():
    """This process's broker: its client count and whether its one subscription is live."""
    return jsonify(sse.get_broker().stats())


def html_messages(broker: sse.EventBroker, live: sse.LiveEvent) -> list[sse.Message]:
    frames = broker.html_frames(live)
    if not frames:  # nothing to swap, but the browser's Last-Event-ID still moves past it
        return [sse.Message(None, id=live.seq)]
    messages = [sse.Message(html, type=name) for name, html in frames]
    messages[-1].id = live.seq  # on the last frame: a reconnect mid-event replays the whole event
    return messages


def json_messages(live: sse.LiveEvent) -> list[sse.Message]:
    return [sse.Message(live.wire, type=live.name, id=live.seq)]


def viewer_json_messages(live: sse.LiveEvent) -> list[sse.Message]:
    """Without tracebacks and log tails: an error's first line and its run for anyone but an admin."""
    data = live.event.get("data")
    safe = redacted_data(data, live.run_id)
    wire = live.wire if safe is data else dumps({**live.event, "data": safe})
    return [sse.Message(wire, type=live.name, id=live.seq)]


def _event_stream(to_messages, key):
    """key: what the framing depends on besides the event; each event is framed once per key."""
    after, run_id = stream_position()
    config = current_app.config
    release = caps.stream_slot()  # 429/503 past the caps; given back when the server closes the stream
    body = sse.stream(sse.get_broker(), to_messages, after=after, run_id=run_id,
                      heartbeat_s=float(config["SSE_HEARTBEAT_S"]), retry_ms=int(config["SSE_RETRY_MS"]), key=key)
    response = current_app.response_class(
        stream_with_context(body), content_type="text/event-stream",
        # no-cache: never a stored stream; X-Accel-Buffering: nginx passes frames on as they come
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    response.call_on_close(release)
    return response


def stream_position() -> tuple[int | None, int | None]:
    """(after, run_id): Last-Event-ID, else ?after= (neither: live only); and ?run=."""
    raw_after = request.headers.get("Last-Event-ID") or request.args.get("after")
    raw_run = request.args.get("run")
    try:
        after = None if raw_after in (None, "") else int(raw_after)
        run_id = None if raw_run in (None, "") else int(raw_run)
    except ValueError:
        raise ApiError(400, "invalid stream position", "Last-Event-ID, after and run must be whole numbers")
    if (after is not None and not 0 <= after <= MAX_ID) or (run_id is not None and not 1 <= run_id <= MAX_ID):
        raise ApiError(400, "invalid stream position", f"after must be 0 to {MAX_ID}, run 1 to {MAX_ID}")
    return after, run_id

"""The Notifications section's work, shared by its page and its API: a subscription checked from a
form or a JSON body, the caller's own subscriptions (another user's answer 404), a test sent now,
and the browser's notices with links under this app's address."""
from __future__ import annotations

import json
import secrets
import sqlite3

from flask import request, url_for

from webapp.control import notify_messages, webhook_http
from webapp.protocol import dumps
from webapp.store import notifications as subs
from webapp.web.auth.identity import current_principal
from webapp.web.errors import ApiError
from webapp.web.extensions import get_db
from webapp.web.runs.actions import started_by

MAX_PER_USER = 20
MAX_URL = 2000
MAX_NAME = 200


def me() -> str:
    """Who subscribes: the same name a run records as who started it, so "mine" matches."""
    return started_by()


def _invalid(field: str, message: str):
    return ApiError(400, "invalid field", [{"field": field, "message": message}])


def checked(fields: dict) -> dict:
    """A new subscription's fields from a form or a JSON body, or a 400 saying what is wrong."""
    events = fields.get("events")
    events = [events] if isinstance(events, str) else events
    if not isinstance(events, list) or not events or any(e not in subs.KINDS for e in events):
        raise _invalid("events", f"pick one or more of: {', '.join(subs.KINDS)}")
    choice = {name: fields.get(name) or default for name, default in
              (("channel", "browser"), ("scope", "mine"), ("format", "generic"))}
    for name, allowed in (("channel", subs.CHANNELS), ("scope", subs.SCOPES), ("format", subs.FORMATS)):
        if choice[name] not in allowed:
            raise _invalid(name, f"must be one of: {', '.join(allowed)}")
    config_name = fields.get("config_name") or None
    if choice["scope"] == "config" and (not isinstance(config_name, str) or len(config_name) > MAX_NAME):
        raise _invalid("config_name", "name the config (scope: config)")
    url = fields.get("url") or None
    if choice["channel"] == "webhook":
        if not isinstance(url, str) or len(url) > MAX_URL:
            raise _invalid("url", f"a webhook needs a URL (at most {MAX_URL} characters)")
        try:
            webhook_http.check_url(url)
        except webhook_http.Refused as exc:
            raise _invalid("url", str(exc)) from None
    return {"events": list(dict.fromkeys(events)), "channel": choice["channel"], "scope": choice["scope"],
            "config_name": config_name if choice["scope"] == "config" else None,
            "url": url if choice["channel"] == "webhook" else None, "fmt": choice["format"]}


def create(fields: dict) -> tuple[int, str | None]:
    """(id, secret): a generic webhook's signing secret, shown this once and never again."""
    wanted = checked(fields)
    conn, user = get_db(), me()
    if subs.count_of(conn, user) >= MAX_PER_USER:
        raise ApiError(409, "too many subscriptions", f"at most {MAX_PER_USER} per user: remove one first")
    secret = secrets.token_urlsafe(24) if wanted["channel"] == "webhook" and wanted["fmt"] == "generic" else None
    return subs.add_subscription(conn, user, secret=secret, **wanted), secret


def owned(sub_id: int):
    row = subs.subscription(get_db(), sub_id, me())
    if row is None:
        raise ApiError(404, "not found", f"you have no subscription {sub_id}")
    return row


def mine() -> list[dict]:
    conn = get_db()
    return [dict(sub, deliveries=subs.deliveries(conn, sub["id"], 20)) for sub in subs.subscriptions_of(conn, me())]


def remove(sub_id: int) -> None:
    owned(sub_id)
    subs.remove_subscription(get_db(), sub_id)


def resume(sub_id: int) -> None:
    owned(sub_id)
    subs.set_paused(get_db(), sub_id, None)


def send_test(sub_id: int) -> dict:
    """A webhook's test goes out now (its answer is the result); a browser's shows on open pages."""
    row = owned(sub_id)
    message = notify_messages.describe("test", None, None, {})
    if row["channel"] == "browser":
        subs.log_test(get_db(), sub_id, dumps(message), None, None, status=subs.READY)
        return {"id": sub_id, "sent": True, "code": None, "error": None}
    code, error = notify_messages.send(row, message, _base_url())
    subs.log_test(get_db(), sub_id, dumps(message), code, error)
    return {"id": sub_id, "sent": error is None, "code": code, "error": error}


def _base_url() -> str:
    from webapp.settings import public_url
    return public_url() or url_for("dashboard.index", _external=True).rstrip("/")


def browser_notices(after: int | None) -> dict:
    """The caller's notices after a delivery id (none: only where to start, no backlog)."""
    conn = get_db()
    if after is None:
        return {"notices": [], "last": subs.last_delivery_id(conn)}
    found = subs.browser_notices(conn, me(), after)
    notices = []
    for row in found:
        message = json.loads(row["payload"])
        notices.append({"id": row["id"], "kind": row["kind"], "title": message["title"], "body": message["text"],
                        "run_id": row["run_id"],
                        "link": url_for("runs.page", run_id=row["run_id"]) if row["run_id"] else url_for("notifications.page"),
                        "image": url_for("samples_api.sample_image", sample_id=message["sample_id"])
                        if message.get("sample_id") else None})
    return {"notices": notices, "last": found[-1]["id"] if found else after}


def paused_banner() -> int:
    """For base.html: how many of the caller's destinations are paused (their owner is told on every
    page until they resume or remove them); 0 on a fragment, for nobody, and on the page that says it."""
    if request.headers.get("HX-Request") or current_principal() is None or request.blueprint == "notifications":
        return 0
    try:
        return len(subs.paused_of(get_db(), me()))
    except sqlite3.Error:  # an error page about the database must still render
        return 0

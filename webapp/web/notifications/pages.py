"""The Notifications page: subscribe, each destination's delivery log, send a test, resume, remove
(the JSON twins: ``api``). Forms answer the list partial; errors go to the flash area."""
from __future__ import annotations

from flask import Blueprint, render_template, request

from webapp.settings import webhook_hosts
from webapp.store import notifications as subs
from webapp.web.errors import ApiError
from webapp.web.notifications import services

bp = Blueprint("notifications", __name__)


def _list(notice: str | None = None, secret: str | None = None, error: ApiError | None = None):
    return render_template("notifications/_list.html", subscriptions=services.mine(), notice=notice, secret=secret,
                           error=error, paused=[s for s in services.mine() if s["paused"]])


@bp.get("/notifications")
def page():
    subscriptions = services.mine()
    return render_template("notifications/index.html", subscriptions=subscriptions, kinds=subs.KINDS,
                           formats=subs.FORMATS, hosts=webhook_hosts(), notice=None, secret=None, error=None,
                           paused=[s for s in subscriptions if s["paused"]])


@bp.post("/notifications")
def add_form():
    fields = {key: request.form.get(key) for key in ("channel", "scope", "config_name", "url", "format")}
    fields["events"] = request.form.getlist("events")
    try:
        _, secret = services.create(fields)
    except ApiError as exc:  # said above the list, which stays
        return _list(error=exc), exc.status
    return _list("Subscribed.", secret)


@bp.post("/notifications/<int:sub_id>/delete")
def delete_form(sub_id: int):
    services.remove(sub_id)
    return _list("Removed.")


@bp.post("/notifications/<int:sub_id>/resume")
def resume_form(sub_id: int):
    services.resume(sub_id)
    return _list("Resumed: waiting deliveries go out now.")


@bp.post("/notifications/<int:sub_id>/test")
def test_form(sub_id: int):
    result = services.send_test(sub_id)
    if result["error"]:
        return _list(f"The test failed: {result['error']}")
    return _list("Test sent." if result["code"] is None else f"Test sent: the destination answered {result['code']}.")

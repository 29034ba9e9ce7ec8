"""/api/notifications: the caller's subscriptions, their delivery logs, a test, and the browser's notices."""
from __future__ import annotations

from flask import Blueprint, jsonify

from webapp.settings import webhook_hosts
from webapp.store import notifications as subs
from webapp.web.api_input import int_arg, json_body
from webapp.web.notifications import services

bp = Blueprint("notifications_api", __name__, url_prefix="/api/notifications")


@bp.get("")
def list_subscriptions():
    return jsonify(subscriptions=services.mine(), kinds=list(subs.KINDS), formats=list(subs.FORMATS),
                   webhook_hosts=list(webhook_hosts()))


@bp.post("")
def add_subscription():
    sub_id, secret = services.create(json_body())
    return jsonify(id=sub_id, secret=secret), 201


@bp.delete("/<int:sub_id>")
def delete_subscription(sub_id: int):
    services.remove(sub_id)
    return jsonify(id=sub_id, deleted=True)


@bp.post("/<int:sub_id>/resume")
def resume(sub_id: int):
    services.resume(sub_id)
    return jsonify(id=sub_id, paused=False)


@bp.post("/<int:sub_id>/test")
def send_test(sub_id: int):
    return jsonify(services.send_test(sub_id))


@bp.get("/<int:sub_id>/deliveries")
def deliveries(sub_id: int):
    services.owned(sub_id)
    return jsonify(id=sub_id, deliveries=services.subs.deliveries(services.get_db(), sub_id, 200))


@bp.get("/browser")
def browser():
    return jsonify(services.browser_notices(int_arg("after", None, minimum=0)))

"""Webhooks on the whole product: a demo run ends while the receiver answers 500; the web is
restarted (gunicorn stopped and started on the same record) and the receiver recovers: each event
is accepted exactly once, in order, signed; a further restart sends nothing again."""
from __future__ import annotations

import json
import time

import pytest
import requests

from support.demo import short_run
from support.polling import wait_for
from support.receiver import Receiver
from support.servers import serve_web
from support.stack import demo_stack
from webapp.control import webhook_http

pytestmark = pytest.mark.slow
HOOK_ENV = {"OTWEB_WEBHOOK_HOSTS": "127.0.0.1", "OTWEB_WEBHOOK_ALLOW_LOOPBACK": "1", "OTWEB_WEBHOOK_BACKOFF_S": "0.2"}


def kinds(found: list[dict]) -> list[tuple]:
    return [(json.loads(r["body"])["kind"], json.loads(r["body"])["run_id"]) for r in found]


def test_webhooks_are_delivered_once_across_a_web_restart(demo_workspace, demo_config, redis_url, redis_server):
    with Receiver(statuses=(500,)) as receiver:
        with demo_stack(demo_workspace, redis_url, redis_server, **HOOK_ENV) as stack:
            answer = stack.api("POST", "/api/notifications", json={
                "events": ["run_completed", "run_failed", "queue_empty"], "channel": "webhook", "url": receiver.url()})
            assert answer.status_code == 201, answer.text
            secret = answer.json()["secret"]
            run_id = stack.start(short_run(demo_config))
            assert stack.wait_until_ended(run_id)["state"] == "completed"
            wait_for(lambda: len(receiver.requests) >= 2, 30, "the notifier to retry the failing receiver")
            env = stack.env
        failed_tries = len(receiver.requests)
        receiver.statuses = [200]
        with serve_web(env) as url:  # the web again, on the same record
            wait_for(lambda: len(receiver.accepted()) >= 2, 60, "the deliveries after the restart")
            time.sleep(1.5)
            log = requests.get(f"{url}/api/notifications", timeout=30).json()["subscriptions"][0]["deliveries"]
        accepted = receiver.accepted()
        assert kinds(accepted) == [("run_completed", run_id), ("queue_empty", run_id)]
        assert all(webhook_http.verify(secret, r["headers"][webhook_http.SIGNATURE_HEADER], r["body"]) for r in accepted)
        assert sorted((d["kind"], d["status"]) for d in log) == [("queue_empty", "sent"), ("run_completed", "sent")]
        assert max(d["attempts"] for d in log) >= 2
        seen = len(receiver.requests)
        with serve_web(env) as url:  # and once more: nothing is sent twice
            time.sleep(3)
            # the demo workspace is the session's: the next test's stack must not find this subscription
            sub_id = requests.get(f"{url}/api/notifications", timeout=30).json()["subscriptions"][0]["id"]
            requests.delete(f"{url}/api/notifications/{sub_id}", timeout=30)
        assert len(receiver.requests) == seen and failed_tries >= 2

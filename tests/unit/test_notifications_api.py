"""The Notifications section: subscriptions through the API and the page (a secret shown once, bad
input answered 400, another user's subscriptions out of reach), a test sent to a real receiver, and
the browser's notices of a finished run."""
from __future__ import annotations

import pytest

from support.accounts import login
from support.paths import database
from support.receiver import Receiver
from webapp import store
from webapp.control.notifier import Notifier
from webapp.protocol import make_event


@pytest.fixture
def hooks_allowed(monkeypatch):
    monkeypatch.setenv("OTWEB_WEBHOOK_HOSTS", "127.0.0.1,hooks.example.com")
    monkeypatch.setenv("OTWEB_WEBHOOK_ALLOW_LOOPBACK", "1")


def test_a_webhook_secret_is_shown_once(client, hooks_allowed):
    answer = client.post("/api/notifications", json={"events": ["run_completed"], "channel": "webhook",
                                                     "url": "https://hooks.example.com/otweb"})
    assert answer.status_code == 201
    secret = answer.get_json()["secret"]
    assert secret and len(secret) >= 24
    listed = client.get("/api/notifications")
    assert secret not in listed.get_data(as_text=True)
    assert listed.get_json()["subscriptions"][0]["signed"] is True
    assert secret not in client.get("/notifications").get_data(as_text=True)


@pytest.mark.parametrize("body, field", [
    ({"events": ["run_completed"], "channel": "webhook", "url": "https://elsewhere.example.org/x"}, "url"),
    ({"events": ["run_completed"], "channel": "webhook", "url": "file:///etc/passwd"}, "url"),
    ({"events": ["run_completed"], "channel": "webhook"}, "url"),
    ({"events": ["nothing"], "channel": "browser"}, "events"),
    ({"events": [], "channel": "browser"}, "events"),
    ({"events": ["sample"], "channel": "pigeon"}, "channel"),
    ({"events": ["sample"], "channel": "browser", "scope": "config"}, "config_name"),
])
def test_bad_subscriptions_are_refused_with_the_field(client, hooks_allowed, body, field):
    answer = client.post("/api/notifications", json=body)
    assert answer.status_code == 400
    assert answer.get_json()["detail"][0]["field"] == field


def test_the_page_subscribes_and_says_what_is_wrong(client, hooks_allowed):
    page = client.get("/notifications")
    assert page.status_code == 200 and b"Allow browser notifications" in page.data
    bad = client.post("/notifications", data={"events": "sample", "channel": "webhook", "url": "http://10.0.0.1/"},
                      headers={"HX-Request": "true"})
    assert bad.status_code == 400 and b"not an approved webhook host" in bad.data
    good = client.post("/notifications", data={"events": ["sample", "saved"], "channel": "browser"},
                       headers={"HX-Request": "true"})
    assert good.status_code == 200 and b'data-testid="subscription"' in good.data


def test_send_a_test_reaches_the_receiver_and_is_logged(client, hooks_allowed):
    with Receiver(statuses=(204,)) as receiver:
        sub_id = client.post("/api/notifications", json={"events": ["sample"], "channel": "webhook",
                                                         "format": "discord", "url": receiver.url()}).get_json()["id"]
        answer = client.post(f"/api/notifications/{sub_id}/test").get_json()
    assert answer == {"id": sub_id, "sent": True, "code": 204, "error": None}
    assert b'"content"' in receiver.requests[0]["body"]
    log = client.get(f"/api/notifications/{sub_id}/deliveries").get_json()["deliveries"]
    assert [(d["kind"], d["status"], d["last_code"]) for d in log] == [("test", "test", 204)]


def test_browser_notices_of_a_finished_run(client, app):
    assert client.post("/api/notifications", json={"events": ["run_completed"], "channel": "browser"}).status_code == 201
    start = client.get("/api/notifications/browser").get_json()
    assert start["notices"] == []
    conn = store.connect(app.config["DATABASE"])
    Notifier(conn).step()  # its cursor starts here
    run_id = store.create_run(conn, "demo", {})
    store.set_started_by(conn, run_id, "local")
    store.append_event(conn, run_id, make_event("run", state="completed"))
    Notifier(conn).step()
    conn.close()
    answer = client.get(f"/api/notifications/browser?after={start['last']}").get_json()
    assert [(n["kind"], n["run_id"], n["link"]) for n in answer["notices"]] == [("run_completed", run_id, f"/runs/{run_id}")]
    assert client.get(f"/api/notifications/browser?after={answer['last']}").get_json()["notices"] == []
    assert client.get("/api/notifications/browser?after=-1").status_code == 400


def test_another_user_cannot_see_or_change_my_subscription(auth_app, workspace):
    mine, theirs = auth_app.test_client(), auth_app.test_client()
    token = login(mine, "vera")  # a viewer may subscribe
    sub_id = mine.post("/api/notifications", json={"events": ["sample"]}, headers={"X-CSRF-Token": token}).get_json()["id"]
    other = login(theirs, "otto")
    assert theirs.get("/api/notifications").get_json()["subscriptions"] == []
    assert theirs.delete(f"/api/notifications/{sub_id}", headers={"X-CSRF-Token": other}).status_code == 404
    assert theirs.get(f"/api/notifications/{sub_id}/deliveries").status_code == 404
    assert mine.delete(f"/api/notifications/{sub_id}", headers={"X-CSRF-Token": token}).status_code == 200
    assert database(workspace).exists()


def test_a_paused_destination_is_told_on_every_page(client, app, hooks_allowed):
    sub_id = client.post("/api/notifications", json={"events": ["sample"], "channel": "webhook",
                                                     "url": "https://hooks.example.com/x"}).get_json()["id"]
    assert b"notify-paused-banner" not in client.get("/runs").data
    conn = store.connect(app.config["DATABASE"])
    store.notifications.set_paused(conn, sub_id, "paused after 8 failed attempts in a row: HTTP 500")
    conn.close()
    assert b"1 of your notification destinations is paused" in client.get("/runs").data
    page = client.get("/notifications").get_data(as_text=True)
    assert "HTTP 500" in page and 'data-action="resume"' in page
    assert client.post(f"/api/notifications/{sub_id}/resume").get_json() == {"id": sub_id, "paused": False}
    assert b"notify-paused-banner" not in client.get("/runs").data


def test_a_sample_notice_carries_its_image(client, app):
    assert client.post("/api/notifications", json={"events": ["sample"], "channel": "browser"}).status_code == 201
    start = client.get("/api/notifications/browser").get_json()["last"]
    conn = store.connect(app.config["DATABASE"])
    Notifier(conn).step()
    run_id = store.create_run(conn, "demo", {})
    store.set_started_by(conn, run_id, "local")
    store.append_event(conn, run_id, make_event("sample_default", path="samples/0-a.png", prompt="a cat"))
    Notifier(conn).step()
    sample_id = store.samples.list_for_run(conn, run_id)[0]["id"]
    conn.close()
    notice = client.get(f"/api/notifications/browser?after={start}").get_json()["notices"][0]
    assert notice["image"] == f"/api/samples/{sample_id}/image" and notice["link"] == f"/runs/{run_id}"
    assert "a cat" in notice["body"]

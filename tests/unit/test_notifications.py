"""Notifications: the webhook's guard (SSRF) and signature, and the notifier's deliveries (matched,
once, in order, retried with back-off, paused), against a real local HTTP receiver and SQLite."""
from __future__ import annotations

import json
import time

import pytest

from support.receiver import Receiver
from webapp import store
from webapp.control import notify_messages, webhook_http
from webapp.control.notifier import PAUSE_AFTER, Notifier, kinds_of
from webapp.protocol import make_event
from webapp.store import notifications as subs

SECRET = "s3cret"


@pytest.fixture
def conn(tmp_path):
    connection = store.connect(tmp_path / "otweb.db")
    store.init_schema(connection)
    yield connection
    connection.close()


@pytest.fixture
def loopback_ok(monkeypatch):
    """The receiver listens on 127.0.0.1: listed, and loopback allowed as tests (only) may."""
    monkeypatch.setenv("OTWEB_WEBHOOK_HOSTS", "127.0.0.1,localhost")
    monkeypatch.setenv("OTWEB_WEBHOOK_ALLOW_LOOPBACK", "1")


def end_run(conn, run_id: int, state: str = "completed") -> None:
    store.append_event(conn, run_id, make_event("run", state="running"))
    store.append_event(conn, run_id, make_event("run", state=state))


def new_run(conn, user: str = "local") -> int:
    run_id = store.create_run(conn, "demo", {})
    store.set_started_by(conn, run_id, user)
    return run_id


# -- the guard ---------------------------------------------------------------------------------

def test_signature_verifies_at_the_receiver(loopback_ok):
    with Receiver() as receiver:
        sub = {"format": "generic", "secret": SECRET, "url": receiver.url()}
        code, error = notify_messages.send(sub, notify_messages.describe("test", None, None, {}), "")
    assert (code, error) == (200, None)
    got = receiver.requests[0]
    header = got["headers"][webhook_http.SIGNATURE_HEADER]
    assert webhook_http.verify(SECRET, header, got["body"])
    assert not webhook_http.verify("other", header, got["body"])
    assert not webhook_http.verify(SECRET, header, got["body"] + b" ")
    assert not webhook_http.verify(SECRET, header, got["body"], now=time.time() + webhook_http.REPLAY_WINDOW_S + 5)
    assert json.loads(got["body"])["kind"] == "test"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_loopback_is_refused_without_the_test_setting(monkeypatch, host):
    """Listed, and resolving to loopback (localhost: a name that resolves to 127.0.0.1): refused."""
    monkeypatch.setenv("OTWEB_WEBHOOK_HOSTS", "127.0.0.1,localhost")
    monkeypatch.delenv("OTWEB_WEBHOOK_ALLOW_LOOPBACK", raising=False)
    with Receiver() as receiver:
        with pytest.raises(webhook_http.Refused, match="loopback"):
            webhook_http.post(receiver.url(host), b"{}", {})
    assert receiver.requests == []


def test_metadata_and_unlisted_hosts_are_refused(monkeypatch):
    monkeypatch.setenv("OTWEB_WEBHOOK_HOSTS", "169.254.169.254,0.0.0.0,224.0.0.1")
    for url in ("http://169.254.169.254/latest/meta-data/", "http://0.0.0.0:80/", "http://224.0.0.1/"):
        with pytest.raises(webhook_http.Refused):
            webhook_http.post(url, b"{}", {})
    for url in ("http://example.org/hook", "ftp://169.254.169.254/", "http://user:pw@169.254.169.254/"):
        with pytest.raises(webhook_http.Refused):
            webhook_http.check_url(url)


def test_a_listed_name_is_resolved_once_and_the_checked_address_is_the_one_reached(monkeypatch):
    """DNS stands in for the offline machine: the first answer for a listed name is loopback, every
    later one an outside address (a rebinding). Without the test setting: refused; with it, the
    request reaches the receiver at the address checked, with the name kept as its Host."""
    import socket
    real, asked = socket.getaddrinfo, []

    def rebinding(host, port, *args, **kwargs):
        if host != "hooks.example.com":
            return real(host, port, *args, **kwargs)
        asked.append(host)
        address = "127.0.0.1" if len(asked) == 1 else "93.184.216.34"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    monkeypatch.setenv("OTWEB_WEBHOOK_HOSTS", "hooks.example.com")
    with Receiver() as receiver:
        with pytest.raises(webhook_http.Refused, match="loopback"):
            webhook_http.post(receiver.url("hooks.example.com"), b"{}", {})
        asked.clear()
        monkeypatch.setenv("OTWEB_WEBHOOK_ALLOW_LOOPBACK", "1")
        assert webhook_http.post(receiver.url("hooks.example.com"), b"{}", {}).status == 200
    assert asked == ["hooks.example.com"]  # one lookup: the connection went to its checked answer
    assert receiver.requests[0]["headers"]["Host"] == f"hooks.example.com:{receiver.port}"


def test_a_redirect_is_not_followed(loopback_ok):
    with Receiver() as target, Receiver(redirect_to=target.url(path="/inside")) as first:
        sub = {"format": "slack", "secret": None, "url": first.url()}
        code, error = notify_messages.send(sub, notify_messages.describe("test", None, None, {}), "")
    assert code == 302 and error == "HTTP 302"
    assert len(first.requests) == 1 and target.requests == []


def test_formats():
    message = notify_messages.describe("run_completed", {"id": 3, "config_name": "demo", "state": "completed"}, 9, {})
    slack, _ = notify_messages.request_for("slack", message, None, "https://ot.example")
    discord, _ = notify_messages.request_for("discord", message, None, "")
    ntfy, headers = notify_messages.request_for("ntfy", message, None, "https://ot.example")
    assert json.loads(slack)["text"].endswith("https://ot.example/runs/3")
    assert json.loads(discord)["content"] == "demo: finished"
    assert ntfy == b"demo: finished" and headers["Title"] == "Run #3 finished"
    assert headers["Click"] == "https://ot.example/runs/3"


# -- the notifier ------------------------------------------------------------------------------

def test_kinds_of_events():
    assert kinds_of("run", {"state": "completed"}) == ["run_completed"]
    assert kinds_of("run", {"state": "running"}) == []
    assert kinds_of("sample_default", {"path": "x.png"}) == ["sample"]
    assert kinds_of("log", {"text": "saved", "artifact": {"kind": "backup", "path": "b"}}) == ["saved"]
    assert kinds_of("progress", {}) == []


def test_history_is_not_notified_and_a_run_end_is_once(conn, loopback_ok):
    old = new_run(conn)
    end_run(conn, old)
    with Receiver() as receiver:
        subs.add_subscription(conn, "local", ["run_completed", "queue_empty"], "webhook", url=receiver.url(),
                              secret=SECRET)
        notifier = Notifier(conn, backoff_s=0.01)
        notifier.step()
        assert receiver.requests == []  # the run that ended before the notifier first looked
        run_id = new_run(conn)
        end_run(conn, run_id)
        notifier.step()
        Notifier(conn, backoff_s=0.01).step()  # a web restart: a new notifier on the same record
        notifier.step()
    kinds = [json.loads(r["body"])["kind"] for r in receiver.requests]
    assert kinds == ["run_completed", "queue_empty"]
    assert json.loads(receiver.requests[0]["body"])["run_id"] == run_id


def test_scope_mine_all_and_config(conn):
    subs.start_cursor(conn)
    mine = subs.add_subscription(conn, "ann", ["run_failed"], "browser")
    everyone = subs.add_subscription(conn, "bob", ["run_failed"], "browser", scope="all")
    other_config = subs.add_subscription(conn, "bob", ["run_failed"], "browser", scope="config", config_name="x")
    end_run(conn, new_run(conn, "ann"), "failed")
    end_run(conn, new_run(conn, "bob"), "completed")
    Notifier(conn).step()
    assert [n["kind"] for n in subs.browser_notices(conn, "ann", 0)] == ["run_failed"]
    assert len(subs.browser_notices(conn, "bob", 0)) == 1
    assert subs.deliveries(conn, other_config) == [] and len(subs.deliveries(conn, everyone)) == 1
    assert len(subs.deliveries(conn, mine)) == 1


def test_failures_are_retried_with_back_off_in_order(conn, loopback_ok):
    subs.start_cursor(conn)
    with Receiver(statuses=(500, 500, 500, 200)) as receiver:
        sub_id = subs.add_subscription(conn, "local", ["run_completed", "run_failed"], "webhook",
                                       url=receiver.url(), secret=SECRET)
        first, second = new_run(conn), new_run(conn)
        end_run(conn, first)
        end_run(conn, second, "failed")
        notifier = Notifier(conn, backoff_s=0.05)
        deadline = time.time() + 20
        while len(receiver.requests) < 5 and time.time() < deadline:
            notifier.step()
            time.sleep(0.01)
        time.sleep(0.3)
        notifier.step()
    bodies = [json.loads(r["body"]) for r in receiver.requests]
    assert [b["run_id"] for b in bodies] == [first] * 4 + [second]  # the second waited behind the first
    gaps = [b["at"] - a["at"] for a, b in zip(receiver.requests, receiver.requests[1:4])]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1 and gaps[2] >= 0.2  # doubling
    log = subs.deliveries(conn, sub_id)
    assert sorted((d["kind"], d["status"], d["attempts"]) for d in log) == [
        ("run_completed", "sent", 4), ("run_failed", "sent", 1)]


def test_a_failing_destination_is_paused_then_resumed_without_loss(conn, loopback_ok):
    subs.start_cursor(conn)
    with Receiver(statuses=(500,)) as receiver:
        sub_id = subs.add_subscription(conn, "local", ["run_completed"], "webhook", url=receiver.url())
        end_run(conn, new_run(conn))
        notifier = Notifier(conn, backoff_s=0.0)
        for _ in range(PAUSE_AFTER + 3):
            notifier.step()
        assert len(receiver.requests) == PAUSE_AFTER
        row = subs.subscription(conn, sub_id)
        assert row["paused"] and "HTTP 500" in row["paused_reason"]
        receiver.statuses = [200]
        subs.set_paused(conn, sub_id, None)
        notifier.step()
    assert len(receiver.requests) == PAUSE_AFTER + 1
    assert subs.deliveries(conn, sub_id)[0]["status"] == "sent"


def test_the_secret_is_never_shown(conn):
    sub_id = subs.add_subscription(conn, "ann", ["sample"], "webhook", url="https://h.example/x", secret=SECRET)
    shown = subs.subscriptions_of(conn, "ann")
    assert shown[0]["id"] == sub_id and shown[0]["signed"] and SECRET not in json.dumps(shown)


def test_the_readme_verification_snippet_accepts_a_real_signature():
    from support.paths import ROOT
    readme = (ROOT / "README.md").read_text()
    code = readme.split("## Notifications", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    scope: dict = {}
    exec(code, scope)  # noqa: S102 - the README's own snippet, as a receiver would paste it
    body = b'{"kind":"test"}'
    header = webhook_http.sign(SECRET, body)
    assert scope["verified"](SECRET, header, body)
    assert not scope["verified"](SECRET, header, body + b"x")
    assert not scope["verified"](SECRET, webhook_http.sign(SECRET, body, int(time.time()) - 3600), body)

"""Issue 16, point 3: sessions, hosts and proxies."""
from __future__ import annotations

import os
import subprocess
import sys

from support.accounts import USERS, login
from webapp import ROOT, create_app
from webapp.eventlog import EventSink
from webapp.protocol import Event, make_event
from webapp.store import accounts
from webapp.web.auth.routes import safe_next


def test_accounts_off_answers_only_to_loopback_host_names(client, app):
    assert client.get("/api/health", headers={"Host": "127.0.0.1:8000"}).status_code in (200, 503)
    assert client.get("/", headers={"Host": "localhost:8000"}).status_code == 200
    # a DNS-rebinding page reaches 127.0.0.1 under its own name: refused, reads and writes alike
    for method, url in (("GET", "/"), ("POST", "/api/training/start"), ("PUT", "/api/config/x")):
        answer = client.open(url, method=method, headers={"Host": "rebind.attacker.example:8000"}, json={})
        assert answer.status_code == 403 and "unknown host" in answer.get_data(as_text=True), (method, url)
    named = create_app({**{k: app.config[k] for k in ("WORKSPACE", "CONFIG_DIR", "REDIS_URL")}, "TESTING": True,
                        "ALLOWED_HOSTS": "trainer.lan"})
    assert named.test_client().get("/", headers={"Host": "trainer.lan"}).status_code == 200


def test_loopback_is_parsed_not_prefix_matched(workspace, monkeypatch):
    assert accounts.is_loopback("127.0.0.1") and accounts.is_loopback("127.3.4.5") and accounts.is_loopback("::1")
    assert accounts.is_loopback("localhost") and accounts.is_loopback("[::1]")
    assert not accounts.is_loopback("127.0.0.1.nip.io") and not accounts.is_loopback("0.0.0.0")
    monkeypatch.setenv("OTWEB_AUTH", "off")
    assert accounts.refuse_open_bind("127.0.0.1.nip.io", workspace / "otweb.sqlite3")


def test_the_systemd_bind_goes_through_the_same_check(workspace):
    env = {**os.environ, "OTWEB_BIND": "127.0.0.1.nip.io:8000", "OTWEB_AUTH": "off", "OTWEB_WORKSPACE": str(workspace)}
    load = [sys.executable, "-c", "import runpy; runpy.run_path('deploy/gunicorn.conf.py')"]
    refused = subprocess.run(load, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "refusing to listen" in refused.stderr
    allowed = subprocess.run(load, cwd=ROOT, env={**env, "OTWEB_BIND": "127.0.0.1:8000"}, capture_output=True, timeout=60)
    assert allowed.returncode == 0, allowed.stderr


def test_logout_and_a_new_password_end_the_session_on_the_server(auth_app):
    client = auth_app.test_client()
    token = login(client, "vera")
    stolen = client.get_cookie("session").value
    thief = auth_app.test_client()
    thief.set_cookie("session", stolen)
    assert thief.get("/api/auth/whoami").status_code == 200
    client.post("/logout", headers={"X-CSRF-Token": token})
    assert thief.get("/api/auth/whoami").status_code == 401  # the copied cookie stopped working
    login(client, "vera")
    thief.set_cookie("session", client.get_cookie("session").value)
    conn = accounts.connect(auth_app.config["DATABASE"])
    accounts.set_password(conn, "vera", "a brand new password")
    conn.close()
    assert thief.get("/api/auth/whoami").status_code == 401


def test_next_accepts_only_a_path_on_this_site(auth_app):
    for hostile in ("/\t/evil.com", "/%09/evil.com", "//evil.com", "/\\evil.com", "https://evil.com", "/\n/evil.com",
                    " //evil.com", "/ /evil.com"):
        assert safe_next(hostile if "%" not in hostile else "/\t/evil.com") == "/", hostile
    assert safe_next("/runs/3?tab=log") == "/runs/3?tab=log"
    client = auth_app.test_client()
    page = client.get("/login?next=/%09/evil.com").get_data(as_text=True)
    token = page.split('name="csrf-token" content="')[1].split('"')[0]
    answer = client.post("/login?next=/%09/evil.com", data={"username": "vera", "password": "correct horse battery",
                                                            "csrf_token": token})
    assert answer.status_code == 302 and answer.headers["Location"] == "/"


def test_forwarded_headers_only_from_trusted_proxies(workspace, config_dir, redis_url, redis_server):
    redis_server.flushall()
    app = create_app({"TESTING": True, "WORKSPACE": workspace, "CONFIG_DIR": config_dir, "REDIS_URL": redis_url,
                      "PROXY_HOPS": 1, "TRUSTED_PROXIES": "10.0.0.1"})
    client = app.test_client()

    def token_tries(remote: str) -> list[int]:
        # a name per try: the per-account limit (10 a minute, whatever the address) is not what is tested here
        return [client.post("/api/auth/token", json={"username": f"x{n}", "password": "y"},
                            headers={"X-Forwarded-For": f"203.0.113.{n}"},
                            environ_base={"REMOTE_ADDR": remote}).status_code for n in range(12)]
    # a direct client cannot pick a new address per request to dodge the login limit (10/min)
    assert token_tries("198.51.100.7")[-1] == 429
    # through the trusted proxy each forwarded address is its own client
    assert 429 not in token_tries("10.0.0.1")
    whoami = client.get("/api/auth/whoami", headers={"X-Forwarded-Prefix": "/trainer", "X-Forwarded-Proto": "https"},
                        environ_base={"REMOTE_ADDR": "198.51.100.7"})
    assert "Strict-Transport-Security" not in whoami.headers  # not believed: plain http


def test_cookie_path_hsts_and_htmx_config_behind_the_proxy(auth_app):
    auth_app.wsgi_app  # noqa: B018 - auth_app has no proxy hops; build one that has
    app = create_app({k: auth_app.config[k] for k in ("TESTING", "WORKSPACE", "CONFIG_DIR", "REDIS_URL")}
                     | {"PROXY_HOPS": 1})
    client = app.test_client()
    proxy = {"X-Forwarded-Prefix": "/trainer", "X-Forwarded-Proto": "https", "X-Forwarded-For": "192.0.2.9"}
    page = client.get("/login", headers=proxy)
    assert page.headers["Strict-Transport-Security"].startswith("max-age=")
    assert '"allowEval":false' in page.get_data(as_text=True) and '"allowScriptTags":false' in page.get_data(as_text=True)
    token = page.get_data(as_text=True).split('name="csrf-token" content="')[1].split('"')[0]
    answer = client.post("/login", data={"username": "vera", "password": "correct horse battery", "csrf_token": token},
                         headers=proxy)
    cookie = answer.headers["Set-Cookie"]
    assert "Path=/trainer" in cookie and "Secure" in cookie and "HttpOnly" in cookie


def failed_run(app, reason: str) -> int:
    from webapp import store
    conn = store.connect(app.config["DATABASE"])
    run_id = store.create_run(conn, "demo", {})
    import redis
    EventSink(conn, redis.Redis.from_url(app.config["REDIS_URL"])).emit(
        run_id, make_event(Event.RUN, state="failed", reason=reason))
    conn.close()
    return run_id


def test_viewers_see_an_error_message_and_an_id_admins_the_whole_text(auth_app):
    reason = "the trainer failed: out of memory\n--- last lines of trainer.log ---\n  File \"/srv/secret/path.py\""
    run_id = failed_run(auth_app, reason)
    for name, sees_paths in (("vera", False), ("otto", False), ("ada", True)):
        client = auth_app.test_client()
        login(client, name)
        page = client.get(f"/runs/{run_id}").get_data(as_text=True)
        api = client.get(f"/api/runs/{run_id}").get_json()["run"]["reason"]
        events = client.get(f"/api/runs/{run_id}/events").get_data(as_text=True)
        assert "out of memory" in page and "out of memory" in api
        streamed = first_frames(client, "/api/events?after=0", "failed")
        for text in (page, api, events, streamed):
            assert ("/srv/secret/path.py" in text) is sees_paths, name
        if not sees_paths:
            assert f"run {run_id}" in api and "out of memory" in streamed
    auth_app.extensions["sse_broker"].stop()  # its Redis subscription would outlive the test


def first_frames(client, url: str, until: str) -> str:
    """The stream's text up to the first frame that holds ``until`` (a replay: it comes at once)."""
    response = client.get(url, buffered=False)
    text = ""
    for chunk in response.response:
        text += chunk.decode() if isinstance(chunk, bytes) else chunk
        if until in text:
            break
    response.close()
    return text


def test_buttons_a_role_cannot_use_are_not_shown(auth_app):
    run_id = failed_run(auth_app, "stopped")
    pages = {}
    for name in USERS:
        client = auth_app.test_client()
        login(client, name)
        pages[name] = {url: client.get(url).get_data(as_text=True)
                       for url in ("/", f"/runs/{run_id}", "/configs/", "/configs/presets/demo/edit")}
    viewer, operator, admin = pages["vera"], pages["otto"], pages["ada"]
    assert 'id="start-form"' not in viewer["/"] and 'id="queue-form"' not in viewer["/"]
    assert 'data-command="resume"' not in viewer["/"]  # an ended run's dashboard: Resume, no greyed steering
    assert 'data-action="resume"' not in viewer[f"/runs/{run_id}"] and 'data-action="delete"' not in viewer[f"/runs/{run_id}"]
    assert 'data-action="start"' not in viewer["/configs/presets/demo/edit"] and "Import a OneTrainer" not in viewer["/configs/"]
    assert 'id="start-form"' in operator["/"] and 'data-command="resume"' in operator["/"]
    assert 'data-action="resume"' in operator[f"/runs/{run_id}"] and 'data-action="delete"' not in operator[f"/runs/{run_id}"]
    assert 'data-action="start"' in operator["/configs/presets/demo/edit"]
    assert 'data-action="delete"' in admin[f"/runs/{run_id}"]

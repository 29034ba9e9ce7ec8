"""Issue 27, point 3: a new password ends the tokens traded for the old one; a viewer's run log
folds tracebacks and shortens server paths (admins see all); login attempts are limited per
account as well as per address."""
from __future__ import annotations

import re

from support.accounts import PASSWORD, login
from webapp import store
from webapp.settings import LOG_NAME
from webapp.store import accounts

RAW = (
    "loading /srv/otweb/workspace/models/tiny-sd15\n"
    "Traceback (most recent call last):\n"
    "  File \"/home/otweb/app/webapp/trainer/process.py\", line 3, in <module>\n"
    "    backend.train()\n"
    "RuntimeError: cannot open /srv/otweb/secret/place/model.safetensors\n"
    "run ended\n"
)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_a_new_password_revokes_the_tokens_traded_for_a_password(auth_app):
    client = auth_app.test_client()
    traded = client.post("/api/auth/token", json={"username": "otto", "password": PASSWORD, "name": "ci"}).json["token"]
    conn = accounts.connect(auth_app.config["DATABASE"])
    _, made = accounts.create_token(conn, "made-by-admin", user="otto")
    assert client.get("/api/auth/whoami", headers=bearer(traded)).json["name"] == "otto"
    accounts.set_password(conn, "otto", "another password")
    conn.close()
    assert client.get("/api/auth/whoami", headers=bearer(traded)).status_code == 401
    assert client.get("/api/auth/whoami", headers=bearer(made)).json["name"] == "otto"  # an admin's: stays
    assert client.post("/api/auth/token", json={"username": "otto", "password": "another password"}).status_code == 201


def logged_run(app) -> int:
    conn = store.connect(app.config["DATABASE"])
    run_id = store.create_run(conn, "logged", {"model_type": "STABLE_DIFFUSION_15"})
    conn.commit()
    conn.close()
    folder = app.config["SETTINGS"].run_dir(run_id)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOG_NAME).write_text(RAW)
    return run_id


def test_a_viewer_sees_the_log_folded_and_an_admin_sees_all(auth_app):
    run_id = logged_run(auth_app)
    viewer, admin = auth_app.test_client(), auth_app.test_client()
    login(viewer, "vera")
    login(admin, "ada")
    for page in (viewer.get(f"/runs/{run_id}/log").text, viewer.get(f"/runs/{run_id}").text):
        assert "Traceback" not in page and "process.py" not in page and "/srv/otweb" not in page
        assert "RuntimeError: cannot open …/model.safetensors" in page and "loading …/tiny-sd15" in page
    full = admin.get(f"/runs/{run_id}/log").text
    assert "Traceback" in full and "/home/otweb/app/webapp/trainer/process.py" in full
    assert "/srv/otweb/secret/place/model.safetensors" in full


def test_login_attempts_are_limited_per_account_across_addresses(auth_app):
    auth_app.config["RATE_LIMIT_LOGIN"] = "100 per minute"  # the per-address limit out of the way
    client = auth_app.test_client()
    answers = [client.post("/api/auth/token", json={"username": "vera", "password": f"guess {n}"},
                           environ_overrides={"REMOTE_ADDR": f"127.0.0.{n % 3 + 1}"}) for n in range(12)]
    assert [a.status_code for a in answers[:10]] == [401] * 10
    assert answers[-1].status_code == 429 and set(answers[-1].json) == {"error", "detail"}
    page = client.get("/login").text
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', page)[1]
    form = client.post("/login", data={"username": "VERA", "password": "x", "csrf_token": csrf},
                       environ_overrides={"REMOTE_ADDR": "127.0.0.9"})
    assert form.status_code == 429  # the form counts against the same account, whatever its case
    other = client.post("/api/auth/token", json={"username": "otto", "password": PASSWORD})
    assert other.status_code == 201  # another account is not held up


def test_a_viewer_sees_log_events_with_server_paths_shortened(auth_app):
    """The dashboard's live log and the events API carry the trainer's log lines: a viewer gets
    them with each server path shortened, an admin whole."""
    conn = store.connect(auth_app.config["DATABASE"])
    run_id = store.create_run(conn, "logged", {"model_type": "STABLE_DIFFUSION_15"})
    store.append_event(conn, run_id, {"event": "log", "data": {"level": "warning",
                       "text": "skipped /srv/otweb/secret/place/cat.png: the file is empty"}})
    conn.commit()
    conn.close()
    viewer, admin = auth_app.test_client(), auth_app.test_client()
    login(viewer, "vera")
    login(admin, "ada")
    events = viewer.get(f"/api/runs/{run_id}/events").json["events"]
    assert [e["data"]["text"] for e in events if e["event"] == "log"] == ["skipped …/cat.png: the file is empty"]
    page = viewer.get("/").text
    assert "skipped …/cat.png" in page and "/srv/otweb" not in page
    assert "/srv/otweb/secret/place/cat.png" in admin.get("/").text
    assert "/srv/otweb/secret/place/cat.png" in str(admin.get(f"/api/runs/{run_id}/events").json)

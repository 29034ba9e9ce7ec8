"""Accounts on: the policy over the whole URL map, roles, tokens, CSRF, headers, rate limits."""
from __future__ import annotations

import re


from support.accounts import PASSWORD, login
from webapp.web.auth import policy
from webapp.store.accounts import refuse_open_bind
from webapp.store import accounts

DUMMY = {"integer": "1", "path": "x", "unicode": "x"}


def _url(rule) -> str:
    url = rule.rule
    for name in rule.arguments:
        converter = type(rule._converters[name]).__name__.lower().replace("converter", "")
        url = re.sub(rf"<(?:[^:>]+:)?{name}>", DUMMY.get(converter, "x"), url)
    return url


def test_every_route_but_the_public_ones_refuses_an_anonymous_request(auth_app):
    client = auth_app.test_client()
    checked = 0
    for rule in auth_app.url_map.iter_rules():
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            if policy.required_role(rule.endpoint, method) is None:
                continue
            answer = client.open(_url(rule), method=method)
            assert answer.status_code in (401, 302), (rule.rule, method, answer.status_code)
            if answer.status_code == 302:
                assert "/login" in answer.headers["Location"] and method == "GET"
            checked += 1
    assert checked > 50
    assert client.get("/api/health").status_code == 200
    assert client.get("/static/app.css").status_code == 200


def test_the_policy_table_covers_the_admin_routes(auth_app):
    endpoints = {rule.endpoint for rule in auth_app.url_map.iter_rules()}
    admin = {e for e in endpoints if e.startswith(("runs.delete", "runs_api.delete", "auth.user"))}
    assert {"runs.delete_page", "runs_api.delete_run", "auth.users_add", "auth.user_delete"} <= admin
    assert all(policy.required_role(e, "POST") == "admin" and policy.required_role(e, "GET") == "admin"
               for e in admin)
    assert policy.required_role("someone.new_route", "GET") == "viewer"
    assert policy.required_role("someone.new_route", "PATCH") == "operator"


def bearer(auth_app, role: str) -> dict:
    conn = accounts.connect(auth_app.config["DATABASE"])
    _, token = accounts.create_token(conn, f"test-{role}", role=role)
    conn.close()
    return {"Authorization": f"Bearer {token}"}


def test_a_viewer_sees_but_cannot_start_a_run(auth_app):
    client = auth_app.test_client()
    login(client, "vera")
    assert client.get("/").status_code == 200
    assert client.get("/api/training/status").status_code == 200
    headers = bearer(auth_app, "viewer")
    answer = client.post("/api/training/start", json={"config_name": "x"}, headers=headers)
    assert answer.status_code == 403 and answer.json["error"] == "forbidden"


def test_an_operator_trains_but_cannot_manage_users_or_delete_runs(auth_app):
    client = auth_app.test_client()
    headers = bearer(auth_app, "operator")
    answer = client.post("/api/training/start", json={"config_name": "nope"}, headers=headers)
    assert answer.status_code == 404  # past the policy: the config does not exist
    assert client.get("/api/auth/users", headers=headers).status_code == 403
    assert client.post("/api/auth/users", json={"name": "x", "password": PASSWORD}, headers=headers).status_code == 403
    assert client.delete("/api/runs/1", headers=headers).status_code == 403
    admin = bearer(auth_app, "admin")
    assert client.post("/api/auth/users", json={"name": "eve", "password": PASSWORD}, headers=admin).status_code == 201
    assert client.delete("/api/runs/1", headers=admin).status_code == 404


def test_tokens_are_stored_hashed_and_revocable_and_the_env_admin_token_works(auth_app, monkeypatch):
    client = auth_app.test_client()
    conn = accounts.connect(auth_app.config["DATABASE"])
    token_id, token = accounts.create_token(conn, "script", user="otto")
    assert token not in str([tuple(r) for r in conn.execute("SELECT * FROM api_tokens")])
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/auth/whoami", headers=headers).json == {
        "name": "otto", "role": "operator", "via": "token", "accounts": "on"}
    accounts.revoke_token(conn, token_id)
    conn.close()
    assert client.get("/api/auth/whoami", headers=headers).status_code == 401
    assert client.get("/api/auth/whoami", headers={"Authorization": "Bearer wrong"}).status_code == 401
    auth_app.config["ADMIN_TOKEN"] = "a" * 32
    assert client.get("/api/auth/whoami", headers={"Authorization": "Bearer " + "a" * 32}).json["role"] == "admin"


def test_a_password_buys_a_token_and_a_run_records_who_started_it(auth_app, config_dir, workspace):
    from test_api import write_config
    write_config(config_dir, workspace)
    client = auth_app.test_client()
    assert client.post("/api/auth/token", json={"username": "otto", "password": "wrong"}).status_code == 401
    answer = client.post("/api/auth/token", json={"username": "otto", "password": PASSWORD, "name": "ci"})
    assert answer.status_code == 201 and answer.json["role"] == "operator"
    headers = {"Authorization": f"Bearer {answer.json['token']}"}
    queued = client.post("/api/queue", json={"config_name": "tiny"}, headers=headers)
    assert queued.status_code in (201, 202), queued.json
    run = client.get(f"/api/runs/{queued.json['run_ids'][0]}", headers=headers).json["run"]
    assert run["started_by"] == "otto"


def test_csrf_a_form_post_needs_the_token(auth_app, config_dir):
    (config_dir / "a.json").write_text('{"__version": 6}')
    client = auth_app.test_client()
    token = login(client, "otto")
    refused = client.post("/configs/a/duplicate", data={})
    assert refused.status_code == 403 and "CSRF" in refused.get_data(as_text=True)
    assert client.post("/configs/a/duplicate", data={"csrf_token": "forged"}).status_code == 403
    accepted = client.post("/configs/a/duplicate", data={"csrf_token": token})
    assert accepted.status_code in (200, 302, 303)
    htmx = client.post("/configs/a/duplicate", headers={"X-CSRF-Token": token, "HX-Request": "true"})
    assert htmx.status_code in (200, 302, 303)


def test_login_logout_and_next(auth_app):
    client = auth_app.test_client()
    first = client.get("/runs")
    assert first.status_code == 302 and "/login?next=/runs" in first.headers["Location"]
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf-token" content="([^"]+)"', page)[1]
    wrong = client.post("/login", data={"username": "otto", "password": "nope", "csrf_token": token})
    assert wrong.status_code == 401 and "Wrong user name or password" in wrong.get_data(as_text=True)
    evil = client.post("/login", data={"username": "otto", "password": PASSWORD, "csrf_token": token,
                                       "next": "//evil.example/"})
    assert evil.headers["Location"] == "/"
    page = client.get("/").get_data(as_text=True)
    assert "otto" in page and "Log out" in page
    token = re.search(r'name="csrf-token" content="([^"]+)"', page)[1]
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/").status_code == 302


def test_a_new_password_ends_old_sessions(auth_app):
    client = auth_app.test_client()
    login(client, "vera")
    conn = accounts.connect(auth_app.config["DATABASE"])
    accounts.set_password(conn, "vera", "another password")
    conn.close()
    assert client.get("/").status_code == 302


def test_trusted_header_only_from_the_proxy(auth_app):
    from webapp.web.auth.identity import parse_networks
    auth_app.config["TRUSTED_PROXY_NETWORKS"] = parse_networks("127.0.0.1/32")
    client = auth_app.test_client()
    # off until an admin names the header (OTWEB_REMOTE_USER_HEADER): trusting a proxy for its
    # X-Forwarded-* must not also let every local process log in as anyone
    assert client.get("/api/auth/whoami", headers={"X-Remote-User": "ada"}).status_code == 401
    auth_app.config["REMOTE_USER_HEADER"] = "X-Remote-User"
    me = client.get("/api/auth/whoami", headers={"X-Remote-User": "ada"})
    assert me.status_code == 200 and me.json["via"] == "header" and me.json["role"] == "admin"
    other = client.get("/api/auth/whoami", headers={"X-Remote-User": "ada"}, environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert other.status_code == 401
    assert client.get("/api/auth/whoami", headers={"X-Remote-User": "nobody"}).status_code == 401


def test_security_headers_and_cookie_flags(auth_app):
    client = auth_app.test_client()
    answer = client.get("/login")
    csp = answer.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert answer.headers["X-Content-Type-Options"] == "nosniff" and answer.headers["Referrer-Policy"]
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    secure = auth_app.test_client().get("/login", base_url="https://localhost")
    assert "Secure" in secure.headers["Set-Cookie"]
    assert "<script>" not in answer.get_data(as_text=True) and " style=" not in answer.get_data(as_text=True)


def test_login_and_token_endpoints_are_rate_limited(auth_app):
    client = auth_app.test_client()
    answers = [client.post("/api/auth/token", json={"username": "x", "password": "y"}) for _ in range(12)]
    assert answers[0].status_code == 401 and answers[-1].status_code == 429
    assert set(answers[-1].json) == {"error", "detail"}


def test_accounts_off_is_the_local_admin_but_refuses_cross_site_posts(client, config_dir):
    (config_dir / "a.json").write_text('{"__version": 6}')
    assert client.get("/api/auth/whoami").json == {"name": "local", "role": "admin", "via": "local",
                                                    "accounts": "off"}
    cross = client.post("/configs/a/duplicate", headers={"Origin": "http://evil.example"})
    assert cross.status_code == 403
    same = client.post("/configs/a/duplicate", headers={"Origin": "http://localhost"})
    assert same.status_code in (200, 302, 303)


def test_serve_refuses_a_public_address_without_accounts(tmp_path, monkeypatch):
    monkeypatch.delenv("OTWEB_AUTH", raising=False)
    monkeypatch.delenv("OTWEB_ADMIN_TOKEN", raising=False)
    database = tmp_path / "otweb.sqlite3"
    assert refuse_open_bind("127.0.0.1", database) is None
    message = refuse_open_bind("0.0.0.0", database)
    assert message and "otweb user add" in message
    conn = accounts.connect(database)
    accounts.add_user(conn, "ada", PASSWORD, "admin")
    conn.close()
    assert refuse_open_bind("0.0.0.0", database) is None


def test_user_and_token_commands(runner, workspace):
    args = ["--workspace", str(workspace)]
    from webapp.cli import main
    result = runner.invoke(main, ["user", "add", "bob", "--role", "operator", *args], input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert "bob\toperator" in runner.invoke(main, ["user", "list", *args]).output
    assert runner.invoke(main, ["user", "add", "bob", *args], input="short\nshort\n").exit_code != 0
    result = runner.invoke(main, ["user", "passwd", "bob", *args], input="new password!\nnew password!\n")
    assert result.exit_code == 0, result.output
    created = runner.invoke(main, ["token", "create", "ci", "--user", "bob", *args])
    assert created.exit_code == 0 and "otw_" in created.output
    assert runner.invoke(main, ["token", "create", "x", "--user", "bob", "--role", "admin", *args]).exit_code != 0
    assert runner.invoke(main, ["token", "revoke", "1", *args]).exit_code == 0
    assert "revoked" in runner.invoke(main, ["token", "list", *args]).output
    assert runner.invoke(main, ["user", "remove", "bob", *args]).exit_code == 0

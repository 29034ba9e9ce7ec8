"""Malformed input to the login form and the JSON API: never a 500, never a traceback or a path."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from support.apps import make_app
from webapp.store import accounts

ENDPOINTS = [("POST", "/api/training/start"), ("POST", "/api/queue"), ("POST", "/api/samples/custom"),
             ("POST", "/api/config/validate"), ("POST", "/api/queue/order"), ("POST", "/api/training/stop"),
             ("POST", "/api/auth/token"), ("POST", "/api/auth/users"), ("PUT", "/api/config/fuzz"),
             ("POST", "/api/queue/pause"), ("POST", "/api/runs/1/resume")]
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
                           max_leaves=12)
bodies = st.one_of(json_values.map(lambda v: ("json", v)), st.binary(max_size=200).map(lambda b: ("raw", b)),
                   st.dictionaries(st.sampled_from(["config_name", "config", "prompt", "name", "password", "username",
                                                    "role", "order", "paused", "run_id", "seed", "width"]),
                                   json_values, max_size=4).map(lambda v: ("json", v)))
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def fuzz_app(workspace, config_dir, redis_url, redis_server):
    redis_server.flushall()
    conn = accounts.connect(workspace / "otweb.sqlite3")
    accounts.add_user(conn, "ada", "correct horse battery", "admin")
    conn.close()
    return make_app(workspace, config_dir, redis_url, ADMIN_TOKEN="f" * 32, RATELIMIT_ENABLED=False)


def assert_clean(answer, workspace) -> None:
    body = answer.get_data(as_text=True)
    assert answer.status_code < 500, body
    assert "Traceback" not in body and str(workspace) not in body and "/site-packages/" not in body


@FUZZ
@given(endpoint=st.sampled_from(ENDPOINTS), body=bodies)
def test_the_json_api_answers_malformed_input_with_a_4xx(fuzz_app, workspace, endpoint, body):
    method, path = endpoint
    kind, value = body
    headers = {"Authorization": "Bearer " + "f" * 32}
    if kind == "json":
        answer = fuzz_app.test_client().open(path, method=method, json=value, headers=headers)
    else:
        answer = fuzz_app.test_client().open(path, method=method, data=value, headers=headers,
                                             content_type="application/json")
    assert_clean(answer, workspace)


@FUZZ
@given(form=st.dictionaries(st.sampled_from(["username", "password", "next", "csrf_token"]),
                            st.text(max_size=300), max_size=4),
       query=st.text(max_size=40))
def test_the_login_form_answers_malformed_input_without_a_500(fuzz_app, workspace, form, query):
    client = fuzz_app.test_client()
    client.get("/login")
    answer = client.post("/login", query_string={"next": query}, data=form)
    assert_clean(answer, workspace)
    if answer.status_code == 302:
        assert answer.headers["Location"].startswith("/") and not answer.headers["Location"].startswith("//")

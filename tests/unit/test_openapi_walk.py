"""Issue 27, point 4: the JSON API answers as its OpenAPI document says. Every operation of
/api/openapi.json is called with valid values at its documented limits, values just past them,
wrong types and wrong methods, with and without a token; every answer's status must be documented
for that operation (a method an operation does not offer: 405 with Allow), every error's body is
{"error", "detail"}, and no answer is a 5xx."""
from __future__ import annotations

import json
import re

import pytest

from webapp import create_app
from webapp.store import accounts

METHODS = ("get", "post", "put", "delete", "patch")
HUGE_ID = str(2 ** 64 * 8)  # beyond 64 bits: SQLite cannot hold it
WRONG_TYPE = {"integer": "x", "number": "x", "boolean": "x", "string": 7, "object": 1, "array": 1}


@pytest.fixture
def walked(workspace, config_dir, redis_url, redis_server, demo_config):
    redis_server.flushall()
    (config_dir / "demo.json").write_text(json.dumps(demo_config))
    conn = accounts.connect(workspace / "otweb.sqlite3")
    accounts.add_user(conn, "ada", "correct horse battery", "admin")
    _, token = accounts.create_token(conn, "walker", role="admin")
    conn.close()
    app = create_app({"TESTING": True, "WORKSPACE": workspace, "CONFIG_DIR": config_dir,
                      "REDIS_URL": redis_url, "RATELIMIT_ENABLED": False})
    assert app.config["AUTH"] == "on"
    return app, {"Authorization": f"Bearer {token}"}


def path_values(parameters) -> list[tuple[dict, bool]]:
    """(path values, whether they are valid): 1 or "demo", then each integer id past 64 bits."""
    valid = {p["name"]: "1" if p["schema"].get("type") == "integer" else "demo"
             for p in parameters if p["in"] == "path"}
    past = [({**valid, p["name"]: HUGE_ID}, False) for p in parameters
            if p["in"] == "path" and p["schema"].get("type") == "integer"]
    return [(valid, True), *past]


def query_values(parameters) -> list[dict]:
    """One query per documented limit: at it, just past it, a wrong type, each enum value and one
    that is none of them."""
    queries = [{}]
    for p in (p for p in parameters if p["in"] == "query"):
        schema, name = p["schema"], p["name"]
        if "enum" in schema:
            queries += [{name: value} for value in [*schema["enum"], "none-of-them"]]
        elif schema.get("type") == "integer":
            for bound, step in (("minimum", -1), ("maximum", 1)):
                if bound in schema:
                    queries += [{name: schema[bound]}, {name: schema[bound] + step}]
            queries += [{name: "abc"}, {name: HUGE_ID}]
        else:
            queries.append({name: "x" * 5})
    return queries


def bodies(operation) -> list:
    body = operation.get("requestBody")
    if body is None:
        return [None]
    schema = body["content"]["application/json"]["schema"]
    found = [{}, [], "text"]
    for name, prop in (schema.get("properties") or {}).items():
        kind = prop.get("type")
        if kind in WRONG_TYPE:
            found.append({name: WRONG_TYPE[kind]})
        if kind == "string" and "maxLength" in prop:
            found += [{name: "x" * prop["maxLength"]}, {name: "x" * (prop["maxLength"] + 1)}]
    return found


def matches(template: str, url: str) -> bool:
    """Whether ``url`` is one of ``template``'s: {name} as any text (a config's name holds '/')."""
    return re.fullmatch(re.sub(r"\\\{\w+\\\}", ".+", re.escape(template)), url) is not None


def fill(path: str, values: dict) -> str:
    for name, value in values.items():
        path = path.replace("{" + name + "}", str(value))
    return path


def call(client, method: str, url: str, query: dict, body, headers: dict):
    kwargs = {"query_string": query, "headers": headers}
    if body is not None:
        kwargs["json"] = body
    response = client.open(url, method=method.upper(), buffered=False, **kwargs)
    if response.mimetype == "text/event-stream":
        response.close()  # a live stream: its status and headers are the answer
        return response, None
    data = response.get_data()
    response.close()
    return response, data


def check(failures: list, where: str, operation: dict | None, response, data) -> None:
    status = response.status_code
    if status >= 500:
        failures.append(f"{where}: {status} {data[:200] if data else ''}")
    elif operation is not None and str(status) not in operation["responses"]:
        failures.append(f"{where}: {status} is not documented ({sorted(operation['responses'])}) {data[:200]}")
    elif status >= 400 and data is not None and response.mimetype == "application/json":
        if set(json.loads(data)) != {"error", "detail"}:
            failures.append(f"{where}: {status} body {data[:200]}")


def test_every_operation_answers_as_documented(walked):
    app, token = walked
    client = app.test_client()
    document = client.get("/api/openapi.json", headers=token).get_json()
    failures, calls = [], 0
    for path, item in sorted(document["paths"].items()):
        for method in sorted(m for m in METHODS if m not in item):  # methods it does not offer
            url = fill(path, path_values(next(iter(item.values()))["parameters"])[0][0])
            if any(method in other and matches(template, url) for template, other in document["paths"].items()):
                continue  # /api/config/list is also /api/config/{name}, which PUT and DELETE take
            response, data = call(client, method, url, {}, None, token)
            allowed = {m.strip().lower() for m in response.headers.get("Allow", "").split(",")}
            if response.status_code != 405 or not set(item) <= allowed:
                failures.append(f"{method} {path}: {response.status_code}, Allow {response.headers.get('Allow')}")
        for method, operation in sorted(item.items()):
            parameters = operation.get("parameters", [])
            for values, valid in path_values(parameters):
                url = fill(path, values)
                for query in query_values(parameters):
                    for body in bodies(operation):
                        response, data = call(client, method, url, query, body, token)
                        check(failures, f"{method.upper()} {url} ?{query} {str(body)[:60]}", operation, response, data)
                        calls += 1
                response, data = call(client, method, url, {}, None, {})  # no token
                check(failures, f"{method.upper()} {url} without a token", operation, response, data)
                if valid and operation.get("security") != [] and response.status_code != 401:
                    failures.append(f"{method.upper()} {url} without a token: {response.status_code}")
    assert not failures, "\n".join(failures[:60]) + f"\n({len(failures)} in all)"
    assert calls > 250


def test_one_shape_for_a_config_across_the_api(client, config_dir, demo_config):
    """What GET /api/config/load answers ({"config": {...}}, as /api/training/start takes it) is
    saved as the config it holds, not as OneTrainer's defaults plus a key named "config"."""
    (config_dir / "demo.json").write_text(json.dumps(demo_config))
    loaded = client.get("/api/config/load/demo").json
    saved = client.put("/api/config/copy", json=loaded)
    assert saved.status_code == 201, saved.json
    stored = json.loads((config_dir / "copy.json").read_text())
    assert "config" not in stored and stored["concepts"] == loaded["config"]["concepts"]
    assert client.post("/api/config/validate", json={"config": loaded["config"]}).json["valid"]
    mixed = client.put("/api/config/mixed", json={"config": loaded["config"], "learning_rate": 1})
    assert mixed.status_code == 400 and mixed.json["detail"][0]["field"] == "config"
    assert "GET /api/config/load" in mixed.json["detail"][0]["message"]
    assert not (config_dir / "mixed.json").exists()


def test_ids_past_64_bits_are_unknown_and_limits_are_as_documented(client):
    for method, url in (("POST", f"/api/runs/{HUGE_ID}/resume"), ("GET", f"/api/runs/{HUGE_ID}"),
                        ("DELETE", f"/api/queue/{HUGE_ID}"), ("GET", f"/api/samples/{HUGE_ID}/thumbnail")):
        answer = client.open(url, method=method)
        assert answer.status_code == 404 and set(answer.json) == {"error", "detail"}, (method, url, answer.status_code)
    document = client.get("/api/openapi.json").json
    limit = next(p for p in document["paths"]["/api/runs"]["get"]["parameters"] if p["name"] == "limit")
    assert limit["schema"]["minimum"] == 1 and client.get("/api/runs?limit=0").status_code == 400
    assert client.get("/api/runs?limit=1").status_code == 200
    wrong = client.put("/api/runs")
    assert wrong.status_code == 405 and wrong.headers["Allow"] and set(wrong.json) == {"error", "detail"}
    thumbnail = document["paths"]["/api/samples/{sample_id}/thumbnail"]["get"]["responses"]["200"]
    assert list(thumbnail["content"]) == ["image/png"]

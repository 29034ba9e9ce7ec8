"""Issue 16, point 4: hostile JSON never answers 500. Every route of the URL map that takes a body
gets deeply nested JSON, lone surrogates, 1e999, NaN and wrong types, and answers a 4xx (or its
normal 2xx) with {"error", "detail"} on a refusal."""
from __future__ import annotations

import json

import pytest

from support.apps import make_app

DEEP = "[" * 10_000 + "]" * 10_000
DEEP_OBJECT = '{"a":' * 10_000 + "1" + "}" * 10_000
RAW_BODIES = [DEEP, DEEP_OBJECT, '"\\ud800"', '{"x": "\\ud800"}', '{"\\udfff": 1}', "1e999", '{"x": 1e999}',
              "NaN", '{"x": NaN}', '{"x": -Infinity}', "[]", '"text"', "123", "null", "true", "{", "\xff\xfe"]
FIELDS = ("config_name", "config", "count", "overrides", "order", "paused", "run_id", "prompt", "negative_prompt",
          "seed", "steps", "cfg_scale", "width", "height", "noise_scheduler", "playground", "lora_scale", "source",
          "idle_s", "username", "password", "name", "role", "items", "random_seed")
WRONG = ([], {}, "\\ud800", "1e999", None, True, -1, 10 ** 30, "x" * 5000, {"a": {"b": []}})


PER_FIELD = ([], 10 ** 30, "\\ud800")  # alone in a body, so that no other field's refusal hides it


def encode(value) -> str:
    return f'"{value}"' if value == "\\ud800" else value if value == "1e999" else json.dumps(value)


def typed_bodies():
    """Bodies with every field wrong at once (each wrong value in turn), and for every field a
    body with it alone wrong."""
    for value in WRONG:
        yield "{" + ", ".join(f'"{field}": {encode(value)}' for field in FIELDS) + "}"
    for value in PER_FIELD:
        for field in FIELDS:
            yield "{" + f'"{field}": {encode(value)}' + "}"


def url_of(rule) -> str:
    values = {name: 1 if conv.__class__.__name__ in ("IntegerConverter", "FloatConverter") else "demo"
              for name, conv in rule._converters.items()}
    return rule.build(values, append_unknown=False)[1]


@pytest.fixture
def walk_app(workspace, config_dir, redis_url, redis_server, demo_config):
    redis_server.flushall()
    (config_dir / "demo.json").write_text(json.dumps(demo_config))  # routes naming a config find one
    return make_app(workspace, config_dir, redis_url, RATELIMIT_ENABLED=False)


def test_every_route_answers_hostile_json_without_a_5xx(walk_app):
    client = walk_app.test_client()
    bodies = RAW_BODIES + list(typed_bodies())
    failures, checked = [], 0
    for rule in walk_app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) - {"GET", "HEAD", "OPTIONS"}):
            url = url_of(rule)
            for body in bodies:
                answer = client.open(url, method=method, data=body.encode("utf-8", "surrogatepass"),
                                     content_type="application/json")
                checked += 1
                if answer.status_code >= 500:
                    failures.append((method, url, body[:60], answer.status_code))
                elif answer.status_code >= 400 and answer.is_json:
                    assert set(answer.get_json()) >= {"error", "detail"}, (method, url, body[:60])
    assert checked > 1000 and not failures, failures[:20]


def test_queue_moves_and_pause_answer_409_and_400(client):
    answer = client.post("/api/queue/order", json={"order": [424242]})
    assert answer.status_code == 409 and answer.get_json()["error"] == "run is not queued"
    answer = client.post("/api/queue/pause", json={})
    assert answer.status_code == 400 and answer.get_json()["detail"][0]["field"] == "paused"
    assert client.post("/api/queue/pause", json={"paused": True}).status_code == 200

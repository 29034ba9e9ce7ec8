"""The OpenAPI document: valid OpenAPI 3.1 (openapi-spec-validator), and every JSON route of the
URL map is in it with each of its methods, so the docs cannot drift; the docs page uses vendored
files only (browser/test_openapi_browser.py renders it in a real browser under the CSP)."""
from __future__ import annotations

import re

from openapi_spec_validator import OpenAPIV31SpecValidator

from webapp.web.openapi.operations import NOT_JSON


def _json_routes(app) -> set[tuple[str, str]]:
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/") and rule.endpoint not in NOT_JSON:
            path = re.sub(r"<(?:[a-z]+(?:\([^)]*\))?:)?(\w+)>", r"{\1}", rule.rule)
            found |= {(path, method.lower()) for method in rule.methods - {"HEAD", "OPTIONS"}}
    return found


def test_the_document_is_valid_openapi_31(client):
    document = client.get("/api/openapi.json").get_json()
    assert document["openapi"] == "3.1.0"
    OpenAPIV31SpecValidator(document).validate()  # raises, naming what is wrong
    broken = {**document, "paths": {"/api/x": {"get": {"responses": {"200": {"description": "OK"}}, "parameters": [{"in": "path"}]}}}}
    assert not OpenAPIV31SpecValidator(broken).is_valid()  # the validator does refuse a broken one


def test_every_json_route_is_documented_with_its_errors_and_auth(app, client):
    document = client.get("/api/openapi.json").get_json()
    documented = {(path, method) for path, item in document["paths"].items() for method in item
                  if method in ("get", "post", "put", "delete", "patch")}
    routes = _json_routes(app)
    assert len(routes) > 40 and routes <= documented, f"undocumented: {sorted(routes - documented)}"
    assert documented <= routes, f"documented but not routed: {sorted(documented - routes)}"
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"]["scheme"] == "bearer" and schemes["session"]["in"] == "cookie"
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if operation.get("security") == []:  # public: health and the token exchange
                continue
            assert {"401", "403"} <= set(operation["responses"]), (method, path)
            assert operation["responses"]["401"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    start = document["paths"]["/api/training/start"]["post"]
    assert start["requestBody"]["content"]["application/json"]["schema"]["properties"]["config"] == {
        "$ref": "#/components/schemas/TrainConfig"}
    assert "learning_rate" in document["components"]["schemas"]["TrainConfig"]["properties"]
    download = document["paths"]["/api/models/{version_id}/download"]["get"]
    assert download["parameters"][0] == {"name": "version_id", "in": "path", "required": True, "schema": {"type": "integer", "maximum": 2 ** 63 - 1}}
    assert "410" in download["responses"]


def test_the_document_follows_a_proxy_sub_path(client):
    document = client.get("/api/openapi.json", environ_overrides={"SCRIPT_NAME": "/trainer"}).get_json()
    assert document["servers"] == [{"url": "/trainer"}]


def test_the_docs_page_uses_vendored_files_and_no_inline_script(client):
    page = client.get("/api/docs").get_data(as_text=True)
    scripts = re.findall(r"<script([^>]*)>", page)
    assert scripts and all("src=" in attrs for attrs in scripts)
    for url in re.findall(r'(?:src|href)="(/static/[^"]+)"', page):
        assert client.get(url).status_code == 200, url
    assert "api-docs" in client.get("/system").get_data(as_text=True)

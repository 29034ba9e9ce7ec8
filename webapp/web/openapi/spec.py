"""The OpenAPI 3.1 document, built with apispec from the app's URL map (paths, path parameters,
methods) and ``openapi_operations`` (what each endpoint takes and answers). The config's own JSON
schema (``config.train_config.json_schema``) is its TrainConfig component. Built once per process."""
from __future__ import annotations

import re
from functools import cache

from apispec import APISpec
from flask import current_app, request

from webapp.config import train_config
from webapp.web.api_input import MAX_ID
from webapp.web.openapi.operations import NOT_JSON, OPERATIONS, STR, array, obj, ref
from webapp.web.openapi.schemas import SCHEMAS

CONVERTER = re.compile(r"<(?:(?P<conv>[a-z]+)(?:\([^)]*\))?:)?(?P<name>\w+)>")
PARAM_TYPES = {"int": {"type": "integer", "maximum": MAX_ID}, "float": {"type": "number"}}  # a larger id: 404
ERRORS = {400: "bad input: detail names the fields ([{field, message}])", 401: "not logged in: send a session cookie or Authorization: Bearer <token>",
          403: "your role may not do this", 404: "unknown id or name", 409: "the state does not allow it now",
          410: "the file is gone", 413: "the request body is larger than 1 MiB",
          429: "a limit per user or address: see Retry-After", 503: "degraded, or a server-wide cap: try again soon",
          507: "not enough disk space for it"}
DESCRIPTION = """The JSON API of OneTrainer Web, for scripts.

Authenticate with `Authorization: Bearer <token>` (`otweb token create`, or `POST /api/auth/token`) or
the browser's session cookie (then also send `X-CSRF-Token` on writes). Roles: viewers read and download,
operators start, steer, tag; admins manage accounts and delete. Every error is `{"error", "detail"}`."""


def api_rules(app) -> list:
    """The URL map's JSON routes: under /api, less the HTML docs page."""
    return [rule for rule in app.url_map.iter_rules()
            if rule.rule.startswith("/api/") and rule.endpoint not in NOT_JSON]


def openapi_path(rule: str) -> tuple[str, list[dict]]:
    params = []
    for match in CONVERTER.finditer(rule):
        params.append({"name": match["name"], "in": "path", "required": True,
                       "schema": PARAM_TYPES.get(match["conv"] or "", {"type": "string"})})
    return CONVERTER.sub(lambda m: "{" + m["name"] + "}", rule), params


def openapi_document() -> dict:
    # the server is where this request came in: right under a proxy's sub-path too
    return {**_document(current_app._get_current_object()), "servers": [{"url": request.script_root or "/"}]}


@cache
def _document(app) -> dict:
    spec = APISpec(title="OneTrainer Web API", version="1", openapi_version="3.1.0",
                   info={"description": DESCRIPTION})
    _components(spec)
    for rule in sorted(api_rules(app), key=lambda r: r.rule):
        entry = OPERATIONS.get(rule.endpoint)
        if entry is None:
            continue  # tests/unit/test_openapi.py names it
        path, params = openapi_path(rule.rule)
        methods = sorted(rule.methods - {"HEAD", "OPTIONS"})
        spec.path(path=path, operations={m.lower(): _operation(rule.endpoint, m, entry, params) for m in methods})
    document = spec.to_dict()
    document["security"] = [{"bearer": []}, {"session": []}]
    return document


def _components(spec: APISpec) -> None:
    config_schema = train_config.json_schema()
    for name, schema in config_schema.pop("$defs", {}).items():
        spec.components.schema(name, _rebase(schema))
    config_schema.pop("$schema", None)
    spec.components.schema("TrainConfig", _rebase(config_schema))
    spec.components.schema("Error", obj(("error",), error=STR, detail={"anyOf": [STR, array(ref("FieldError")), {"type": "null"}]}))
    spec.components.schema("FieldError", obj(field=STR, message=STR))
    for name, schema in SCHEMAS.items():
        spec.components.schema(name, schema)
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer",
                                               "description": "an API token (otweb token create)"})
    spec.components.security_scheme("session", {"type": "apiKey", "in": "cookie", "name": "session",
                                                "description": "the browser's login; writes also need X-CSRF-Token"})


def _rebase(schema):
    """The config schema's own references (#/$defs/X) as the document's (#/components/schemas/X)."""
    if isinstance(schema, dict):
        return {k: (v.replace("#/$defs/", "#/components/schemas/") if k == "$ref" and isinstance(v, str) else _rebase(v))
                for k, v in schema.items()}
    if isinstance(schema, list):
        return [_rebase(item) for item in schema]
    return schema


def _operation(endpoint: str, method: str, entry: dict, params: list[dict]) -> dict:
    operation = {"operationId": endpoint.replace(".", "_") + ("" if method in ("GET", "POST") else f"_{method.lower()}"),
                 "summary": entry["summary"], "tags": [entry["tag"]],
                 "parameters": params + entry["query"], "responses": {}}
    if entry["description"]:
        operation["description"] = entry["description"]
    if entry["body"] is not None:
        operation["requestBody"] = {"required": method == "PUT", "content": {"application/json": {"schema": entry["body"]}}}
    ok = {"description": "OK", "content": {entry["media"]: {"schema": entry["ok"]}}}
    if entry["headers"]:
        ok["headers"] = {name: {"schema": STR} for name in entry["headers"]}
    operation["responses"][str(entry["status"])] = ok if entry["status"] != 204 else {"description": "No Content"}
    for status, description in entry["also"].items():
        operation["responses"][str(status)] = {**ok, "description": description}
    codes = set(entry["errors"])
    codes |= {400, 413} if entry["body"] is not None else {400} if entry["query"] else set()
    codes |= {404} if params else set()
    codes |= {429} if method not in ("GET",) else set()
    if endpoint == "api.health":
        operation["security"] = []
    elif endpoint == "auth.token_login":
        operation["security"], codes = [], codes | {429}
    else:
        codes |= {401, 403}
    for code in sorted(codes):
        operation["responses"][str(code)] = {"description": ERRORS[code],
                                             "content": {"application/json": {"schema": ref("Error")}}}
    return operation

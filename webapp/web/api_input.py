"""Reading a JSON API request: the body as an object, typed fields and query arguments; each
refusal a 400 naming the field."""
from __future__ import annotations

from flask import request
from flask.json.provider import DefaultJSONProvider

from webapp.config.loading import parse_json
from webapp.web.errors import ApiError


class StrictJSONProvider(DefaultJSONProvider):
    """Request bodies read as configs are: no NaN/Infinity/1e999, no lone surrogates, no junk
    nested 10,000 deep (json's RecursionError is no ValueError, so Flask would answer 500).
    Each refusal is a ValueError, which request.get_json turns into a 400."""

    def loads(self, s, **kwargs):
        return parse_json(s)


def json_body() -> dict:
    body = request.get_json(silent=True)
    if body is None:
        if request.get_data():
            raise ApiError(400, "malformed JSON", "the request body is not valid JSON")
        return {}
    if not isinstance(body, dict):
        raise ApiError(400, "malformed JSON", "the request body must be a JSON object")
    return body


def optional_run_id(body: dict) -> int | None:
    run_id = body.get("run_id")
    if run_id is not None and (isinstance(run_id, bool) or not isinstance(run_id, int) or not 0 < run_id < 2 ** 63):
        raise ApiError(400, "invalid field", [{"field": "run_id", "message": "must be a whole number"}])
    return run_id


def int_arg(name: str, default: int | None = None, required: bool = False,
             minimum: int | None = None, maximum: int | None = None) -> int:
    raw = request.args.get(name, "")
    if raw == "":
        if required:
            raise ApiError(400, "missing parameter", [{"field": name, "message": "is required"}])
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "invalid parameter", [{"field": name, "message": "must be a whole number"}]) from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ApiError(400, "invalid parameter", [{"field": name, "message":
                       f"must be between {minimum} and {maximum}" if maximum else f"must be at least {minimum}"}])
    return value

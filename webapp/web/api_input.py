"""Reading a JSON API request: the body as an object, typed fields and query arguments; each
refusal a 400 naming the field."""
from __future__ import annotations

from flask import request
from flask.json.provider import DefaultJSONProvider

from webapp.config.loading import parse_json
from webapp.web.errors import ApiError


MAX_ID = 2 ** 63 - 1
MAX_BODY_ITEMS = 20_000  # entries in one list of a JSON body (or an answer a test client reads: 20,000 loss points)


class StrictJSONProvider(DefaultJSONProvider):
    """Request bodies read as configs are: no NaN/Infinity/1e999, no lone surrogates, no junk
    nested 10,000 deep (json's RecursionError is no ValueError, so Flask would answer 500).
    Each refusal is a ValueError, which request.get_json turns into a 400."""

    def loads(self, s, **kwargs):
        # a config in it is counted where it is read (normalise); the body's own lists are bounded
        # too, so that a megabyte of {} is refused before it is walked
        return parse_json(s, max_items=MAX_BODY_ITEMS)


def refuse_huge_ids(_endpoint, values) -> None:
    """A url_value_preprocessor: an ``<int:...>`` beyond what SQLite holds (64 bits) is an unknown
    id (404), where SQLite's OverflowError answered 500. Not a converter's ``max``: werkzeug then
    answers 405 for a URL whose other methods match, 404 for the rest."""
    if any(isinstance(value, int) and value > MAX_ID for value in (values or {}).values()):
        raise ApiError(404, "not found", "no such id: ids are whole numbers below 2**63")


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
    # never beyond what SQLite holds (64 bits): a larger one would reach it and answer 500
    minimum, maximum = -MAX_ID - 1 if minimum is None else minimum, MAX_ID if maximum is None else maximum
    if not minimum <= value <= maximum:
        raise ApiError(400, "invalid parameter", [{"field": name, "message": f"must be between {minimum} and {maximum}"}])
    return value


def before_arg() -> int | None:
    """A list's keyset cursor, ``before=<id>``: the rows older than that id (the last page's
    ``next_before``); rows added meanwhile never shift a page. None: the first page."""
    raw = request.args.get("before", "")
    if raw == "":
        return None
    if not (raw.isascii() and raw.isdigit() and 0 < int(raw) <= MAX_ID):
        raise ApiError(400, "invalid cursor",
                       [{"field": "before", "message": "a cursor is a whole number: the last page's next_before"}])
    return int(raw)


def page_of(rows: list, limit: int, key: str = "id") -> tuple[list, int | None]:
    """(a page's rows, the next page's cursor, None on the last page), from ``limit + 1`` rows read."""
    return rows[:limit], (rows[limit - 1][key] if len(rows) > limit else None)

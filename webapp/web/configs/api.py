"""The config JSON API (the seed's names): list, load, validate, schema, defaults, save, delete.

Invalid configs answer 400 with ``detail`` = [{field, message}]. Saving sends the version the
caller loaded as ``If-Match`` (the ETag of ``load``); a config changed since answers 409.
"""
from __future__ import annotations

from functools import cache

from flask import Blueprint, jsonify, request

from webapp import store
from webapp.config import train_config
from webapp.config.checks import validate
from webapp.config.loading import ConfigFormatError, pack, parse_json
from webapp.web.configs.files import MAX_BODY, library, library_errors, read_roots, workspace
from webapp.web.extensions import get_db
from webapp.web.errors import ApiError

bp = Blueprint("config_api", __name__, url_prefix="/api/config")
LOAD_KEYS = {"name", "read_only", "version", "errors", "warnings", "notes", "backend"}  # load's answer
SHAPE = ('send the config object itself, or {"config": {...}} as GET /api/config/load answers it '
         '(not both: "config" is no key of a config)')


@bp.before_request
def limit_body():
    request.max_content_length = MAX_BODY  # larger bodies answer 413


def config_body():
    data = request.get_data(cache=False)
    if not data.strip():
        raise ApiError(400, "missing body", [{"field": "", "message": "send the config as a JSON object"}])
    try:
        return unwrapped(parse_json(data))
    except ConfigFormatError as exc:
        raise ApiError(400, "malformed JSON", exc.errors) from None


def unwrapped(body):
    """One shape for a config across the API: the config itself, or ``{"config": {...}}`` as
    ``load`` answers it and ``/api/training/start`` takes it (load's other keys are ignored).
    Saved as it came, the wrapper was OneTrainer's defaults plus an unknown key holding the config."""
    if not isinstance(body, dict) or "config" not in body:
        return body
    if isinstance(body["config"], dict) and set(body) - {"config"} <= LOAD_KEYS:
        return body["config"]
    raise ApiError(400, "invalid config", [{"field": "config", "message": SHAPE}])


def checked_config(raw) -> tuple[dict, dict]:
    """The whole config and the validation report, or 400 naming each bad field."""
    report = validate(raw, workspace(), roots=read_roots())
    if not report.valid:
        raise ApiError(400, "invalid config", report.errors)
    return report.config, report.as_json()


@bp.get("/current")
def current():
    run = store.latest_run(get_db())
    if run is None:
        raise ApiError(404, "no runs yet", "the current config is the one of the latest run; start a run first")
    return jsonify(run_id=run["id"], config_name=run["config_name"], config=store.run_config(run))


@bp.get("/list")
def list_configs():
    return jsonify(configs=library().entries())


@bp.get("/load/<path:name>")
def load(name: str):
    with library_errors():
        stored = library().read(name)
    report = validate(stored.raw, workspace(), roots=read_roots())
    config = report.config
    if request.args.get("packed") and config is not None:
        config, _ = pack(config, workspace(), read_roots())
    response = jsonify(name=name, read_only=stored.read_only, version=stored.version, config=config,
                       **{key: value for key, value in report.as_json().items() if key != "valid"})
    response.set_etag(stored.version)
    return response


@bp.post("/validate")
def validate_config():
    _, report = checked_config(config_body())
    return jsonify(report)


@bp.get("/schema")
def schema():
    return jsonify(_schema())


@cache
def _schema() -> dict:
    return train_config.json_schema()


@bp.get("/defaults")
def defaults():
    return jsonify(train_config.defaults())


@bp.put("/<path:name>")
def save(name: str):
    with library_errors():
        target = library()
        target.path(name)  # a bad name is refused before the body is read
        config, report = checked_config(config_body())
        created = target.version(name) is None
        version = target.save(name, config, expected_version=_if_match())
    response = jsonify(name=name, version=version, warnings=report["warnings"], notes=report["notes"])
    response.set_etag(version)
    return response, 201 if created else 200


@bp.delete("/<path:name>")
def delete(name: str):
    with library_errors():
        library().delete(name, expected_version=_if_match())
    return "", 204


def _if_match() -> str | None:
    tags = request.if_match
    if not tags or tags.star_tag:
        return None
    return next(iter(tags.as_set(include_weak=True)), None)

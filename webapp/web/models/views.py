"""What the Models pages and the models API show and change: a version as a dict (its lineage, file
state, samples), versions grouped into models, two versions compared, tags and notes checked, and
a version opened in the playground. Routes live in ``models`` and ``models_api``."""
from __future__ import annotations

import json

from flask import url_for

from webapp import store
from webapp.web.models import files as model_files
from webapp.web.runs.dataset_changes import dataset_changes
from webapp.config.diff import differing
from webapp.web.api_input import MAX_ID
from webapp.web.errors import ApiError
from webapp.web.extensions import get_db

MAX_TAG = 40
MAX_NOTE = 2000
FILTER_ARGS = ("model", "tag", "base_model", "method", "kind", "run")


def get_version(version_id: int) -> dict:
    version = store.model_versions.get_version(get_db(), version_id)
    if version is None:
        raise ApiError(404, "unknown model version", f"no model version with id {version_id}")
    return version


def filters_from(args) -> tuple[dict, str]:
    filters = {key: args.get(key, "").strip() for key in FILTER_ARGS if args.get(key, "").strip()}
    if "run" in filters and not (filters["run"].isascii() and filters["run"].isdigit() and int(filters["run"]) <= MAX_ID):
        raise ApiError(400, "invalid field", [{"field": "run", "message": "a run id is a whole number"}])
    if args.get("picked") in ("1", "true"):
        filters["picked"] = True
    order = args.get("order", "newest")
    if order not in store.model_versions.ORDERS:
        raise ApiError(400, "invalid field", [{"field": "order", "message": f"one of {', '.join(store.model_versions.ORDERS)}"}])
    return filters, order


def version_view(version: dict, checksum: bool = False, samples: bool = True) -> dict:
    """The version for a page or the API: the record plus the file's state and its samples."""
    conn = get_db()
    view = {k: version[k] for k in ("id", "run_id", "kind", "path", "base_model", "model_type", "method", "format",
                                    "global_step", "epoch", "loss", "note", "tags", "picked", "created_at")}
    view.update(model=version["config_name"], backup=version["kind"] == "backup", started_by=version["created_by"],
                run_state=version["run_state"], **model_files.file_facts(version, checksum=checksum),
                download_url=url_for("models_api.download", version_id=version["id"]),
                page_url=url_for("models.version_page", version_id=version["id"]))
    if samples:
        view["samples"] = [{"id": s["id"], "prompt": s["prompt"], "global_step": s["global_step"],
                            "image_url": url_for("samples_api.sample_image", sample_id=s["id"]),
                            "thumbnail_url": url_for("samples_api.sample_thumbnail", sample_id=s["id"], size=128)}
                           for s in store.model_versions.samples_near(conn, version["run_id"], version["global_step"])]
    return view


def version_detail(version: dict) -> dict:
    """Everything: the config as it ran, the dataset's fingerprint, the checksum."""
    view = version_view(version, checksum=True)
    run = store.get_run(get_db(), version["run_id"])
    view["config"] = json.loads(run["config_json"]) if run else None
    view["dataset"] = store.model_versions.dataset_fingerprint(get_db(), version["run_id"])
    view["dataset_changes"] = dataset_changes(version["run_id"], view["config"])
    return view


def grouped(versions: list[dict]) -> list[dict]:
    """Versions by model (config name), newest model first, each model's versions newest first."""
    models: dict[str, dict] = {}
    for version in versions:
        model = models.setdefault(version["model"], {"name": version["model"], "versions": [], "pick": None})
        model["versions"].append(version)
        if version["picked"]:
            model["pick"] = version
    return list(models.values())


def compare(a: dict, b: dict) -> dict:
    """Two versions side by side: their config's differences (dotted keys), loss and samples."""
    first, second = version_detail(a), version_detail(b)
    rows = differing([first.pop("config") or {}, second.pop("config") or {}])
    return {"a": first, "b": second, "config_diff": [{"key": r["key"], "a": r["values"][0], "b": r["values"][1]}
                                                      for r in rows]}


# -- changes ----------------------------------------------------------------------------------

def check_tag(tag) -> str:
    if not isinstance(tag, str) or not tag.strip():
        raise ApiError(400, "invalid field", [{"field": "tag", "message": "a tag is some text, such as candidate"}])
    tag = tag.strip()
    if len(tag) > MAX_TAG or any(ord(c) < 32 for c in tag):
        raise ApiError(400, "invalid field", [{"field": "tag", "message": f"at most {MAX_TAG} printable characters"}])
    return tag


def change_tags(version: dict, values: dict) -> None:
    """``{"tag": "shipped", "pick": true}`` adds (and picks); ``{"tag": ..., "remove": true}``
    takes it off; ``{"pick": false}`` clears the pick."""
    conn = get_db()
    if values.get("pick") is False and not values.get("tag"):
        store.model_versions.unpick(conn, version["id"])
        return
    tag = check_tag(values.get("tag"))
    if _truthy(values.get("remove")):
        store.model_versions.remove_tag(conn, version["id"], tag)
    else:
        store.model_versions.add_tag(conn, version["id"], tag, pick=_truthy(values.get("pick")))


def _truthy(value) -> bool:
    return value is True or value in ("1", "true", "on")


def set_note(version: dict, note) -> None:
    if not isinstance(note, str) or len(note) > MAX_NOTE:
        raise ApiError(400, "invalid field", [{"field": "note", "message": f"text of at most {MAX_NOTE} characters"}])
    store.model_versions.set_note(get_db(), version["id"], note.strip())


def delete(version: dict) -> dict:
    """The file (or backup folder) and the record."""
    removed = model_files.delete_file(version)
    store.model_versions.delete_version(get_db(), version["id"])
    return {"deleted": version["id"], "file_removed": removed}


def playground_key(version: dict) -> str:
    """The playground's key for this version's file: only LoRA files it can open."""
    from webapp.web.playground.sessions import sources
    path = model_files.version_path(version)
    key = next((s["key"] for s in sources() if path is not None and s["path"] == str(path)), None) if path else None
    if key is None:
        raise ApiError(409, "not playable", "the playground opens a LoRA output or save of an ended run "
                                            "(not a backup, a fine-tune, or a file that is gone)")
    return key

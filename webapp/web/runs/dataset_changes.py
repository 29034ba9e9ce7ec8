"""What changed in a run's dataset since it trained on it, for the run and model version pages:
the manifest it recorded (store.dataset_manifests) against its folder now, hashed in a real thread
(web/configs/scans.Scanner.call), with the sha256s cached by (path, size, mtime) so an unchanged
dataset costs a listing, not a read."""
from __future__ import annotations

from flask import current_app

from webapp import store
from webapp.config.dataset_manifest import HashCache, changes_since
from webapp.web.configs.scans import scanner
from webapp.web.extensions import get_db


def hash_cache(app) -> HashCache:
    found = app.extensions.get("otweb_dataset_hashes")
    if found is None:
        found = app.extensions["otweb_dataset_hashes"] = HashCache(
            app.config["WORKSPACE"] / "cache" / "dataset-hashes.json")
    return found


def dataset_changes(run_id: int, config: dict | None) -> list[dict]:
    """Per concept the run recorded: path, count, bytes, fingerprint, change, summary ([]: none recorded)."""
    recorded = store.dataset_manifests.of_run(get_db(), run_id)
    if not recorded:
        return []
    try:
        return scanner(current_app).call(changes_since, recorded, config or {}, current_app.config["WORKSPACE"],
                                         hash_cache(current_app))
    except OSError:
        return [{**entry, "change": None, "summary": "not readable here"} for entry in recorded]

"""The dataset services as the web reaches them: built from the app's settings, their refusals
answered as the 4xx they are, blocking work sent to a real thread (scans.Scanner.call)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from flask import current_app

from webapp import settings, store
from webapp.config import paths
from webapp.config.library import ConfigNotFound
from webapp.web.configs.files import library as config_library, read_roots
from webapp.web.configs.scans import gevent_pool, scanner
from webapp.web.datasets.index import IndexCache
from webapp.web.datasets.library import Dataset, DatasetError, Library, uses
from webapp.web.datasets.uploads import Uploads
from webapp.web.errors import ApiError
from webapp.web.extensions import get_db

MAX_RUNS_LOOKED_AT = 200  # "which runs use it": the newest ones and every active one


def workspace():
    return current_app.config["WORKSPACE"]


def data_roots() -> list:
    extra = current_app.config.get("DATA_ROOTS")
    if extra is None:
        extra = settings.env_text(settings.DATA_ROOTS_ENV)
    return paths.split_roots(extra) if isinstance(extra, str) else list(extra)


def library() -> Library:
    return Library(workspace(), data_roots())


def uploads() -> Uploads:
    config = current_app.config
    return Uploads(workspace(), config.get("DATASET_MAX_BYTES") or settings.dataset_max_bytes(),
                   config.get("DATASETS_TOTAL_MAX_BYTES") or settings.datasets_total_max_bytes(),
                   config.get("ARCHIVE_MAX_RATIO") or settings.archive_max_ratio())


def in_thread(function, *args):
    """Waited for, without blocking gevent's event loop."""
    return scanner(current_app).call(function, *args)


def in_background(function, *args) -> None:
    _in_background(current_app, function, *args)


def _in_background(app, function, *args) -> None:
    """Started in a real thread, not waited for (gevent's pool under gunicorn)."""
    pool = gevent_pool()
    if pool is not None:
        pool.spawn(function, *args)
        return
    executor = app.extensions.get("otweb_dataset_checks")
    if executor is None:
        executor = app.extensions["otweb_dataset_checks"] = ThreadPoolExecutor(2, thread_name_prefix="otweb-dataset")
    executor.submit(function, *args)


def _indexes() -> IndexCache:
    cache = current_app.extensions.get("otweb_dataset_index")
    if cache is None:
        app = current_app._get_current_object()
        # the background build runs outside any request: it gets the app to find its pool
        cache = app.extensions["otweb_dataset_index"] = IndexCache(scanner(app), lambda *a: _in_background(app, *a))
    return cache


def index_of(dataset: Dataset):
    """The dataset's index, up to date (waited for, in a real thread): for one dataset's page."""
    return _indexes().get(dataset.folder)


def peek_index(dataset: Dataset):
    """The index as last built (a rebuild starts when the folder changed); None while the first
    build runs. For the library's list and the editor's picker, which never wait."""
    return _indexes().peek(dataset.folder)


def image_of(dataset: Dataset, rel: str):
    found = index_of(dataset).by_rel().get(rel)
    if found is None:
        raise ApiError(404, "unknown image", f"{dataset.key!r} has no image {rel[:200]!r}")
    return found


def users(dataset: Dataset) -> dict:
    """Which configs of the library and which runs (active, and the newest) read the dataset."""
    configs = []
    for entry in config_library().entries():
        try:
            configs.append((entry["name"], config_library().read(entry["name"]).raw))
        except (ConfigNotFound, ValueError, OSError):
            continue
    conn = get_db()
    runs = {run["id"]: run for run in store.active_runs(conn) + store.history(conn, {}, MAX_RUNS_LOOKED_AT)}
    listed = [{"id": run["id"], "state": run["state"], "config_name": run.get("config_name"),
               "config": store.run_config(run)} for run in runs.values()]
    roots = read_roots()
    found = uses(dataset, configs, listed, lambda text: paths.readable(text, workspace(), roots))
    found["runs"] = [{k: v for k, v in run.items() if k != "config"} for run in found["runs"]]
    return found


@contextmanager
def dataset_errors():
    try:
        yield
    except DatasetError as exc:
        raise ApiError(exc.status, exc.error, exc.detail) from None

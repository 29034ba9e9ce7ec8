"""The config library as the web reaches it: the folder from the app's settings, and the
library's refusals as the 4xx answers they are (for the config pages, their API and run starts)."""
from __future__ import annotations

from contextlib import contextmanager

from flask import current_app

from webapp.config import paths
from webapp.config.library import ConfigConflict, ConfigLibrary, ConfigNotFound, InvalidConfigName, ReadOnlyConfig
from webapp.config.loading import ConfigFormatError
from webapp.web.errors import ApiError

MAX_BODY = 1024 * 1024  # a config upload or save; larger bodies answer 413 (the app-wide cap: caps.py)


def library() -> ConfigLibrary:
    return ConfigLibrary(current_app.config["CONFIG_DIR"])


def workspace():
    return current_app.config["WORKSPACE"]


def read_roots() -> tuple:
    """The folders a config may read: the workspace, the config folder, OTWEB_DATA_ROOTS."""
    return paths.read_roots(current_app.config["WORKSPACE"], current_app.config["CONFIG_DIR"],
                            current_app.config.get("DATA_ROOTS"))


@contextmanager
def library_errors():
    """The library's refusals as the 4xx answers they are."""
    try:
        yield
    except InvalidConfigName as exc:
        raise ApiError(400, "invalid config name", [{"field": "name", "message": str(exc)}]) from None
    except ConfigNotFound as exc:
        raise ApiError(404, "unknown config", str(exc)) from None
    except ReadOnlyConfig as exc:
        raise ApiError(403, "read-only config", str(exc)) from None
    except ConfigConflict as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    except ConfigFormatError as exc:
        raise ApiError(400, "unreadable config", exc.errors) from None
